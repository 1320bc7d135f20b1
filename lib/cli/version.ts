import { readFileSync } from 'node:fs';

/** kd's version from package.json, recorded in every output. */
export const TOOL_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
