import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

/** Writes a file under `path + '.tmp'`, fsyncs, then renames: a crash never leaves a file that looks complete. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
  } finally { closeSync(fd); }
  renameSync(tmp, path);
}

/** Reads and parses a JSON file. @throws Error naming the file when it is missing or not JSON. */
export function readJson<T>(path: string, what = 'file'): T {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch { throw new Error(`${path}: ${what} not found`); }
  try { return JSON.parse(text) as T; } catch (e) { throw new Error(`${path}: not valid JSON (${(e as Error).message})`); }
}

/** sha256 hex digest of bytes. */
export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
