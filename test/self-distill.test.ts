/** Self-distillation rounds: round r's student, exported, is round r + 1's teacher, and each manifest names it. */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { kdCli } from '../pipelines/cli.js';
import { checkRoundTeacher, parseRounds, runSelfDistillRounds, selfDistillRounds, type SelfDistillRound } from '../lib/selfdistill/rounds.js';
import { sha256File } from '../lib/shards/manifest.js';
import { makePrep, writeTeacher } from './precompute-fixture.js';

let dir = '', prep = '', first = '';
beforeAll(async () => {
  ({ dir, prep } = await makePrep('self-distill'));
  first = writeTeacher(join(dir, 'teacher.onnx'));
}, 120_000);

const model = JSON.stringify({ hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 });
const kd = async (args: string[]) => (await kdCli(args)).parseAsync();

describe('self-distillation rounds', () => {
  it('plans round r + 1 to read round r\'s exported student, and refuses a non-positive count', () => {
    const p = selfDistillRounds(3, 'runs/sd', 'runs/teacher/model.onnx');
    expect(p.map((r) => r.teacher)).toEqual(['runs/teacher/model.onnx', 'runs/sd/round-1/export/onnx/model.onnx', 'runs/sd/round-2/export/onnx/model.onnx']);
    expect(p[2]).toMatchObject({ round: 3, logits: 'runs/sd/round-3/logits', student: 'runs/sd/round-3/student' });
    expect(() => selfDistillRounds(0, 'r', 't')).toThrow(/ROUNDS must be a positive integer, got '0'/);
  });

  it.each([
    ['abc', 'abc'], ['0', '0'], ['-1', '-1'], ['1.5', '1.5'], ['', ' (empty)'], [undefined, ' (empty)'], ['1e1', '1e1'], [' 2', ' 2'],
  ])('ROUNDS=%j is refused in one line echoing it', (text, shown) => {
    expect(() => parseRounds(text)).toThrow(new Error(`self-distill: ROUNDS=${shown} is not a positive integer (e.g. make self-distill ROUNDS=3)`));
  });

  it('ROUNDS=3 and ROUNDS=12 are read as given', () => {
    expect([parseRounds('3'), parseRounds('12')]).toEqual([3, 12]);
  });

  it('make self-distill ROUNDS=abc: exit code 1, one stderr line, no stack trace, nothing done', async () => {
    const script = fileURLToPath(new URL('../pipelines/self-distill.ts', import.meta.url));
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href; // resolved here, not from the child's cwd
    const cwd = mkdtempSync(join(tmpdir(), 'kd-sd-rounds-')); // were the check to pass, the pipeline would work here
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', tsx, script, '--rounds', 'abc'], { cwd }, (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('self-distill: ROUNDS=abc is not a positive integer (e.g. make self-distill ROUNDS=3)\n');
    expect(existsSync(join(cwd, 'runs'))).toBe(false);
  }, 60_000);

  it('two rounds end to end: each round\'s manifest names its teacher by path and sha256', async () => {
    const plan = selfDistillRounds(2, join(dir, 'sd'), first);
    const seen: number[] = [];
    await runSelfDistillRounds(plan, kd,
      ['--prep', prep, '--k', '8', '--max-windows', '6', '--rows-per-shard', '4', '--batch-size', '2', '--device', 'cpu', '--quiet'],
      ['--prep', prep, '--model', model, '--max-steps', '2', '--batch-size', '2', '--eval-windows', '2', '--warmup-steps', '1', '--backend', 'cpu', '--quiet'],
      async (r) => { seen.push(r.round); });
    expect(seen).toEqual([1, 2]);
    const manifest = (r: SelfDistillRound) => JSON.parse(readFileSync(join(r.logits, 'manifest.json'), 'utf8')).teacher;
    expect(manifest(plan[0])).toMatchObject({ path: first, sha256: await sha256File(first) });
    expect(manifest(plan[1])).toMatchObject({ path: plan[0].onnx, sha256: await sha256File(plan[0].onnx) });
    expect(manifest(plan[1]).sha256).not.toBe(manifest(plan[0]).sha256);
    // A round whose teacher file changed after its precompute is refused, naming the manifest.
    copyFileSync(plan[1].onnx, plan[0].onnx);
    await expect(checkRoundTeacher(plan[1])).rejects.toThrow(new RegExp(`${plan[1].logits}/manifest.json: round 2 was precomputed by ${plan[0].onnx} \\(sha256 [0-9a-f]{12}…\\), not`));
  }, 180_000);
});
