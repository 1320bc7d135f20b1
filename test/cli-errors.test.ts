/**
 * One-line errors of the kd command line that a fresh user meets first: bad numbers, misplaced
 * flags, --config given a directory, flag conflicts. Each is checked before any input is read, so
 * the inputs named here need not exist (were the check late, "not found" would be the error).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kdCli } from '../pipelines/cli.js';
import { resolveCascadeConfig } from '../stages/cascade.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-cli-errors-'));
const missing = (name: string) => join(dir, 'missing', name);

/** The error `kd <args>` stops with, run in process up to its stage's first check. */
async function kdError(args: string[]): Promise<string> {
  try { await kdCli(args).parseAsync(); } catch (e) { return (e as Error).message; }
  throw new Error(`kd ${args.join(' ')} did not fail`);
}

describe('kd cascade: numeric flags are validated up front', () => {
  const models = ['cascade', '--student', missing('s.onnx'), '--teacher', missing('t.onnx')];

  it.each([
    [['--max-windows', 'abc'], '--max-windows: not a number'],
    [['--max-windows', '-3'], `--max-windows = -3 must be an integer in [0, ${Number.MAX_SAFE_INTEGER}]`],
    [['--max-windows', '1.5'], `--max-windows = 1.5 must be an integer in [0, ${Number.MAX_SAFE_INTEGER}]`],
    [['--batch-size', 'abc'], '--batch-size: not a number'],
    [['--batch-size', '0'], '--batch-size = 0 must be an integer in [1, 4096]'],
  ])('%j → one line naming the flag', async (flags, message) => {
    expect(await kdError([...models, ...flags])).toBe(message);
  });

  it('student and teacher are required, naming the flag', () => {
    expect(() => resolveCascadeConfig({ teacher: 't.onnx' })).toThrow(new Error("cascade config: student is required (--student, the student's .onnx)"));
    expect(() => resolveCascadeConfig({ student: 's.onnx' })).toThrow(new Error("cascade config: teacher is required (--teacher, the teacher's .onnx)"));
  });

  it('the defaults hold when nothing is given', () => {
    const cfg = resolveCascadeConfig({ student: 's.onnx', teacher: 't.onnx' });
    expect([cfg.prep, cfg.out, cfg.confidence, cfg.max_windows, cfg.batch_size, cfg.device, cfg.overwrite]).toEqual(['runs/prep', 'runs/cascade', ['max_prob', 'entropy'], 0, 8, 'auto', false]);
  });
});

describe('--config given a directory', () => {
  it.each(['train', 'precompute', 'eval', 'cascade', 'plan', 'prep'])('kd %s says it is a directory and a JSON file is expected', async (stage) => {
    expect(await kdError([stage, '--config', dir])).toBe(`${dir}: is a directory, expected a JSON config file (or .yaml/.yml), e.g. pipelines/configs/student.json`);
  });
});
