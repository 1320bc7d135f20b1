import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/**
 * Runs `work` over `items` with at most `parallel` in flight, in order of the items; items not
 * started when `stopped()` turns true are skipped (their result is undefined).
 */
export async function runPool<T, R>(items: T[], parallel: number, work: (item: T, index: number) => Promise<R>, stopped: () => boolean = () => false): Promise<(R | undefined)[]> {
  const results: (R | undefined)[] = new Array(items.length).fill(undefined);
  let next = 0;
  const lane = async () => {
    while (next < items.length && !stopped()) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, items.length)) }, lane));
  return results;
}

/** How a child process ended. */
export interface ProcessOutcome {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** Last non-empty line of the log (the one-line error of a failed stage). */
  lastLogLine: string;
}

/**
 * Runs `node <args>` in its own process with stdout captured and stderr appended to `logPath`.
 * `children` holds the running process while it runs (to forward signals).
 */
export function runNode(args: string[], logPath: string, children: Set<ChildProcess>): Promise<ProcessOutcome> {
  const log = openSync(logPath, 'a');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', log], env: process.env });
    children.add(child);
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.on('error', (e) => { children.delete(child); closeSync(log); reject(e); });
    child.on('close', (code, signal) => {
      children.delete(child);
      closeSync(log);
      const lines = readFileSync(logPath, 'utf8').split('\n').filter((l) => l.trim());
      resolve({ code, signal, stdout, lastLogLine: lines[lines.length - 1] ?? '' });
    });
  });
}
