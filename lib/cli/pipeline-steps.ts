/**
 * The measuring pipelines' bookkeeping (pipelines/techniques.ts, sampled.ts, xtok.ts): steps that
 * record their wall time and stdout, cached for reruns, and a pool that runs thunks two at a time
 * (a TF.js wasm process uses one core).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** What a step ran: its wall seconds and its stdout. */
export interface StepResult {
  seconds: number;
  stdout: string;
}

/**
 * A step runner for pipeline `label` writing under `root`: `step(name, cmd)` runs `cmd` once and
 * records `<root>/steps/<name>.done.json`; with `reuse`, a step already recorded is not run again.
 */
export function stepRunner(root: string, label: string, reuse: boolean) {
  return async function step(name: string, cmd: () => Promise<{ stdout: string }>): Promise<StepResult> {
    const done = join(root, 'steps', `${name}.done.json`);
    if (reuse && existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as StepResult;
    const t0 = Date.now();
    console.error(`${label}: ${name} …`);
    const { stdout } = await cmd();
    const result = { seconds: (Date.now() - t0) / 1000, stdout };
    await mkdir(dirname(done), { recursive: true });
    await writeFile(done, JSON.stringify(result) + '\n');
    console.error(`${label}: ${name} done in ${result.seconds.toFixed(0)} s`);
    return result;
  };
}

/** Runs the thunks `width` at a time, in order; results in the thunks' order. */
export async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) { const i = next++; out[i] = await jobs[i](); }
  }));
  return out;
}

/** The JSON object a `--json` stage printed (anything before its first `{` skipped). */
export const stdoutJson = (s: string) => JSON.parse(s.slice(s.indexOf('{')));
