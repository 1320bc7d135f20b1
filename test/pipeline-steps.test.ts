/** The pipelines' step cache and pool (lib/cli/pipeline-steps.ts). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pool, stepRunner, stdoutJson } from '../lib/cli/pipeline-steps.js';

describe('pipeline steps', () => {
  it('records a step and, when reusing, does not run it again', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kd-steps-'));
    let runs = 0;
    const cmd = async () => ({ stdout: `run ${++runs}` });
    expect((await stepRunner(root, 't', false)('a', cmd)).stdout).toBe('run 1');
    expect((await stepRunner(root, 't', true)('a', cmd)).stdout).toBe('run 1'); // cached
    expect((await stepRunner(root, 't', false)('a', cmd)).stdout).toBe('run 2'); // not reusing: runs
    expect(runs).toBe(2);
  });

  it('pool keeps the jobs\' order and runs at most `width` at once', async () => {
    let live = 0, peak = 0;
    const job = (i: number) => async () => { live++; peak = Math.max(peak, live); await new Promise((r) => setTimeout(r, 5 * (4 - i))); live--; return i; };
    expect(await pool([0, 1, 2, 3].map(job), 2)).toEqual([0, 1, 2, 3]);
    expect(peak).toBe(2);
    expect(stdoutJson('noise {"a": 1}')).toEqual({ a: 1 });
  });
});
