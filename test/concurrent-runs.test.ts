// Two kd processes on one output directory: the second is refused in one line naming the holder
// (kd train on one --out; kd precompute workers with the same index), and a lock left by a process
// that died is taken over. Through the CLI (each start takes ~3 s).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePrep, runKd, spawnKd, writeTeacher } from './precompute-fixture.js';

let dir: string, prep: string, teacher: string, data: string;
const children: ChildProcess[] = [];
afterAll(() => { for (const c of children) c.kill('SIGKILL'); });

const precomputeArgs = (out: string, ...more: string[]) => [
  'precompute', '--teacher', teacher, '--prep', prep, '--out', out, '--k', '8', '--max-windows', '64', '--rows-per-shard', '16', '--batch-size', '8', '--device', 'cpu', '--quiet', ...more,
];
const trainArgs = (out: string) => [
  'train', '--data', data, '--prep', prep, '--out', out, '--backend', 'wasm', '--batch-size', '2', '--epochs', '1000', '--eval-every', '0', '--save-every', '0', '--quiet',
  '--model', JSON.stringify({ hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }),
];

/** A lock file held by `pid` as kd would write it. */
function holdLock(path: string, pid: number, command: string): void {
  writeFileSync(path, JSON.stringify({ pid, host: hostname(), started: '2026-12-03T08:00:00.000Z', command, token: 'test' }));
}

async function until(cond: () => boolean, ms = 60_000): Promise<void> {
  for (const t0 = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 100))) if (Date.now() - t0 > ms) throw new Error('timed out');
}

beforeAll(async () => {
  ({ dir, prep } = await makePrep('concurrent'));
  teacher = writeTeacher(join(dir, 'teacher.onnx'));
  data = join(dir, 'logits');
  const r = await runKd(precomputeArgs(data));
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}, 120_000);

describe('kd train', () => {
  it('a second trainer on the same --out is refused naming the first; the first goes on undisturbed', async () => {
    const out = join(dir, 'student');
    const first = spawnKd(trainArgs(out));
    children.push(first);
    const exited = new Promise<number | null>((res) => first.on('exit', (code) => res(code)));
    await until(() => existsSync(join(out, 'metrics.jsonl')) && readFileSync(join(out, 'metrics.jsonl'), 'utf8').length > 0);
    const lock = JSON.parse(readFileSync(join(out, '.kd.lock'), 'utf8'));
    expect(lock).toMatchObject({ pid: first.pid, host: hostname(), command: 'kd train' });
    const second = await runKd(trainArgs(out));
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(`kd: ${out}: in use by pid ${first.pid} on host ${hostname()} since ${lock.started} (kd train); wait for it or stop it\n`);
    first.kill('SIGINT'); // saves a resumable state and exits 130 (interrupted)
    expect(await exited).toBe(130);
    expect(existsSync(join(out, '.kd.lock'))).toBe(false);
    const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number });
    const steps = records.filter((r) => r.loss !== undefined).map((r) => r.step);
    expect(steps).toEqual(steps.map((_, i) => i + 1)); // one writer: steps 1, 2, 3, … once each
  }, 120_000);

  it('a lock left by a trainer that died is taken over, saying so', async () => {
    const out = join(dir, 'after-crash');
    mkdirSync(out);
    const dead = Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim());
    holdLock(join(out, '.kd.lock'), dead, 'kd train');
    const r = await runKd([...trainArgs(out), '--max-steps', '1']);
    expect(r.stderr.split('\n')[0]).toBe(`kd: ${out}: taking over the lock of pid ${dead} on ${hostname()} since 2026-12-03T08:00:00.000Z (kd train): not running`);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(out, 'trainer_state.json'))).toBe(true);
    expect(existsSync(join(out, '.kd.lock'))).toBe(false);
  }, 60_000);
});

describe('kd precompute', () => {
  it('a second process with the same worker index on one directory is refused; another index is not', async () => {
    const out = join(dir, 'split');
    mkdirSync(out);
    const sleeper = spawn('sleep', ['120'], { stdio: 'ignore' });
    children.push(sleeper);
    holdLock(join(out, '.kd.precompute-00000.lock'), sleeper.pid!, 'kd precompute');
    const same = await runKd(precomputeArgs(out, '--shard-index', '0', '--num-shards', '2'));
    expect(same.code).toBe(1);
    expect(same.stderr).toBe(`kd: ${out}: in use by pid ${sleeper.pid} on host ${hostname()} since 2026-12-03T08:00:00.000Z (kd precompute); wait for it or stop it\n`);
    const other = await runKd(precomputeArgs(out, '--shard-index', '1', '--num-shards', '2'));
    expect(other.stderr).toBe('');
    expect(other.code).toBe(0);
    expect(existsSync(join(out, 'manifest.worker-00001-of-00002.json'))).toBe(true);
    expect(existsSync(join(out, '.kd.precompute-00001.lock'))).toBe(false); // released at the end
  }, 60_000);
});
