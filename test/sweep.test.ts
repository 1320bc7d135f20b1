// kd sweep: grid expansion, ranking/table helpers, and a real 2×1 sweep (two `kd train` processes
// in parallel) on a tiny logit dataset from a random-weight teacher.
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { saveCheckpoint } from '../lib/model/checkpoint.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { expandGrid, resolveSweepConfig } from '../lib/sweep/grid.js';
import { rankRuns, resultsCsv, RunResult } from '../lib/sweep/results.js';
import { run as precompute } from '../stages/precompute.js';
import { run as prep } from '../stages/prep.js';
import { run as sweep } from '../stages/sweep.js';
import { runExport } from '../stages/teacher.js';

describe('sweep grid', () => {
  it('is the cartesian product in key order; α = 0 runs drop the distillation keys and collapse into one baseline', () => {
    const runs = expandGrid({ alpha: [0, 0.5, 0.8], temperature: [2, 4], loss: ['forward_kl'], temperature_schedule: ['constant', 'cosine'] });
    expect(runs.map((r) => r.name)).toEqual([
      'baseline',
      'a0.5_t2_constant', 'a0.5_t2_cosine', 'a0.5_t4_constant', 'a0.5_t4_cosine',
      'a0.8_t2_constant', 'a0.8_t2_cosine', 'a0.8_t4_constant', 'a0.8_t4_cosine',
    ]);
    expect(runs[0].values).toEqual({ alpha: 0 });
    expect(runs[4].values).toEqual({ alpha: 0.5, temperature: 4, loss: 'forward_kl', temperature_schedule: 'cosine' });
    expect(expandGrid({ alpha: [0, 0.5], lr: [1e-3, 3e-3] }).map((r) => r.name)).toEqual(['baseline_lr0.001', 'baseline_lr0.003', 'a0.5_lr0.001', 'a0.5_lr0.003']);
    expect(expandGrid({}).map((r) => r.name)).toEqual(['run']);
  });

  it('a list of grids runs the union of their products; a key set by only some runs is part of the names', () => {
    const runs = expandGrid([
      { alpha: [0, 0.5], temperature: [2, 4] },
      { alpha: [0.5], temperature: [4], temperature_schedule: ['cosine'] },
      { alpha: [0.5], temperature: [2], loss: ['reverse_kl', 'jsd'] },
    ]);
    expect(runs.map((r) => r.name)).toEqual(['baseline', 'a0.5_t2', 'a0.5_t4', 'a0.5_t4_cosine', 'a0.5_t2_reverse_kl', 'a0.5_t2_jsd']);
    expect(() => expandGrid({ alpha: [0.5], data: ['logits/a', 'logits:a'] })) // both sanitised to 'logits-a'
      .toThrow(`sweep grid: runs {"alpha":0.5,"data":"logits/a"} and {"alpha":0.5,"data":"logits:a"} would both be named 'logits-a'`);
  });

  it('refuses unknown keys in the grid, naming the valid ones', () => {
    expect(() => resolveSweepConfig({ grid: { alpah: [0] } }, 'sweep.json')).toThrow(/^sweep.json: grid = .* has unknown train config key 'alpah' \(valid: data, prep/);
    expect(() => resolveSweepConfig({ grid: { alpha: [] } }, 'sweep.json')).toThrow("'alpha' must be a non-empty list of values");
  });

  it('ranks finished runs by best validation perplexity and compares them with the baseline', () => {
    const r = (name: string, alpha: number, ppl: number, status: RunResult['status'] = 'ok'): RunResult => ({
      name, values: { alpha }, status, val: [],
      config: { alpha, temperature: 2, temperature_schedule: 'constant', loss: 'forward_kl', topk_mode: 'tail' } as RunResult['config'],
      summary: { best_val_ppl: ppl, best_val_loss: Math.log(ppl), best_step: 10, val_ppl: ppl, final_train_loss: 3, steps: 10, seconds: 60 } as RunResult['summary'],
    });
    const ranked = rankRuns([r('baseline', 0, 120), r('a0.5', 0.5, 100), r('a0.8', 0.8, 90), r('broken', 0.9, NaN, 'failed')]);
    expect(ranked.map((x) => x.name)).toEqual(['a0.8', 'a0.5', 'baseline', 'broken']);
    expect(ranked[0].vsBaseline).toBeCloseTo(90 / 120 - 1, 12);
    const csv = resultsCsv(ranked, ['alpha']).trim().split('\n');
    expect(csv[0].split(',').slice(0, 4)).toEqual(['rank', 'run', 'status', 'alpha']);
    expect(csv[1].split(',').slice(0, 4)).toEqual(['1', 'a0.8', 'ok', '0.8']);
    expect(csv[4].split(',').slice(0, 3)).toEqual(['', 'broken', 'failed']);
  });
});

describe('kd sweep on a tiny logit dataset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-sweep-'));
  const p = join(dir, 'prep'), data = join(dir, 'logits'), out = join(dir, 'sweep');
  const model = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  const train = { prep: p, data, model, max_steps: 4, batch_size: 8, eval_every: 2, eval_windows: 8, backend: 'wasm' };

  beforeAll(async () => {
    await prep({ out: p, max_documents: 20, vocab_size: 512, seq_len: 32, quiet: true });
    const teacher = join(dir, 'teacher');
    const cfg = resolveLlamaConfig({ vocab_size: 512, max_position_embeddings: 64, ...model });
    saveCheckpoint(teacher, cfg, initLlamaWeights(cfg, 5), { tokenizer: join(p, 'tokenizer.json') });
    runExport({ checkpoint: teacher, out: join(dir, 'teacher.onnx') });
    await precompute({ teacher: join(dir, 'teacher.onnx'), prep: p, out: data, k: 8, max_windows: 32, rows_per_shard: 32, quiet: true, device: 'cpu' });
  });

  it('trains a 2×1 grid in two processes, ranks it, writes CSV/markdown and a PNG plot; a re-run reuses the runs', async () => {
    const s = await sweep({ train, grid: { alpha: [0, 0.8], temperature: [2] }, out, parallel: 2, quiet: true });
    expect(s).toMatchObject({ runs: 2, ok: 2, failed: 0 });
    expect(s.ranked.map((r) => r.name).sort()).toEqual(['a0.8', 'baseline']); // τ takes one value: not in the names
    expect(s.ranked[0].best_val_ppl!).toBeLessThanOrEqual(s.ranked[1].best_val_ppl!);
    const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    expect(csv.length).toBe(3);
    const col = (name: string) => csv[0].indexOf(name);
    expect(csv.slice(1).map((r) => r[col('run')])).toEqual(s.ranked.map((r) => r.name));
    expect(csv.slice(1).map((r) => r[col('rank')])).toEqual(['1', '2']);
    expect(csv.slice(1).map((r) => Number(r[col('steps')]))).toEqual([4, 4]);
    expect(Number(csv[1][col('best_val_ppl')])).toBeCloseTo(s.ranked[0].best_val_ppl!, 6);
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    expect(md).toMatch(/\| 1 \| (a0\.8|baseline) \|/);
    expect(md).toContain('![validation loss per run](val_loss.png)');
    const png = readFileSync(join(out, 'val_loss.png'));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.length).toBeGreaterThan(10_000);
    for (const name of ['baseline', 'a0.8']) {
      for (const f of ['model.safetensors', 'train.json', 'metrics.jsonl', 'train.log', 'sweep-run.json', 'best/model.safetensors']) expect(existsSync(join(out, name, f))).toBe(true);
    }
    // Same init seed and data order: the distilled run differs from the baseline only through the loss.
    const logOf = (name: string) => statSync(join(out, name, 'train.log')).size;
    const before = logOf('baseline');
    const again = await sweep({ train, grid: { alpha: [0, 0.8], temperature: [2] }, out, parallel: 2, quiet: true });
    expect(again.ranked).toEqual(s.ranked);
    expect(logOf('baseline')).toBe(before); // reused, not retrained
  });

  it('a run that fails at run time is reported with its one-line error and the others still run', async () => {
    const bad = { ...model, hidden_size: 30, num_attention_heads: 4 }; // 30 does not split over 4 heads: kd train exits 1
    const s = await sweep({ train: { ...train, max_steps: 1 }, grid: { alpha: [0], model: [model, bad] }, out: join(dir, 'failing'), parallel: 2, quiet: true });
    expect(s).toMatchObject({ runs: 2, ok: 1, failed: 1 });
    expect(s.ranked[1]).toMatchObject({ status: 'failed', best_val_ppl: null });
    const md = readFileSync(join(dir, 'failing', 'results.md'), 'utf8');
    expect(md).toMatch(/\| failed: .*hidden_size 30 .*num_attention_heads 4/);
  });

  it('checks every run before starting any: an unstored temperature names the run', async () => {
    await expect(sweep({ train, grid: { alpha: [0.5], temperature: [2, 5] }, out: join(dir, 'bad'), quiet: true }))
      .rejects.toThrow(/run t5: temperature 5 was not stored by precompute \(stored: 1, 2, 4\)/);
    expect(existsSync(join(dir, 'bad', 't2'))).toBe(false);
  });
});
