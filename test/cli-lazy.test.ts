/**
 * kd imports only the stage it runs (pipelines/cli.ts): inspect, prep, plan, precompute, merge and eval never
 * load TF.js (whose import is most of kd's start-up), `kd train` does. TF.js announces itself with
 * the global engine it creates on import (`globalThis._tfengine`).
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

/** Parses `kd <stage> --help` in a fresh process; whether TF.js was imported. */
function loadsTfjs(stage: string): boolean {
  const code = `const { kdCli } = await import('./pipelines/cli.ts'); await kdCli(${JSON.stringify([stage, '--help'])});
    process.stdout.write(JSON.stringify(globalThis._tfengine !== undefined));`;
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' })) as boolean;
}

describe('kd loads the named stage only', () => {
  it.each(['inspect', 'prep', 'plan', 'precompute', 'merge', 'eval'])('kd %s does not import TF.js', (stage) => {
    expect(loadsTfjs(stage)).toBe(false);
  }, 60_000);
  it('kd train does', () => {
    expect(loadsTfjs('train')).toBe(true);
  }, 60_000);
});
