/** `kd teacher export` options and `kd teacher compare`: the metrics' formulas and the stage end to end. */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeWindows } from '../lib/data/windows.js';
import { saveCheckpoint } from '../lib/model/checkpoint.js';
import { LogitComparison } from '../lib/metrics/compare.js';
import { evaluateOnnx } from '../lib/metrics/onnx-eval.js';
import { runCompare, runExport } from '../stages/teacher.js';
import { randomIds, testWeights, tinyConfig } from './fixtures/llama.js';

describe('LogitComparison', () => {
  it('hand-computed KL, top-1 (ties → lowest id) and NLL', () => {
    const c = new LogitComparison(2);
    c.add(Float32Array.of(0, 0), Float32Array.of(0, Math.log(3)), 1, [1]); // p_A = (½, ½), p_B = (¼, ¾)
    const r = c.result();
    expect(r.mean_kl).toBeCloseTo(0.5 * Math.log(4 / 3), 6); // ½·ln(½/¼) + ½·ln(½/¾)
    expect(r.top1_agreement).toBe(0);
    expect(r.ppl_a).toBeCloseTo(2, 5);
    expect(r.ppl_b).toBeCloseTo(4 / 3, 5);
  });

  it('padded vocab columns get no mass; identical logits give KL 0; NaN is refused', () => {
    const c = new LogitComparison(3, 2);
    c.add(Float32Array.of(1, 2, 50), Float32Array.of(1, 2, -50), 1, [0]);
    expect(c.result()).toMatchObject({ mean_kl: 0, top1_agreement: 1, scored_tokens: 1 });
    expect(c.result().ppl_a).toBeCloseTo(1 + Math.E, 5); // 1 / softmax(1, 2)[0]
    expect(() => c.add(Float32Array.of(NaN, 0, 0), Float32Array.of(0, 0, 0), 1)).toThrow('non-finite logits at position 1 (A)');
  });
});

describe('kd teacher export / compare', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-compare-')), cfg = tinyConfig(true), ckpt = join(dir, 'ckpt');
  saveCheckpoint(ckpt, cfg, testWeights(cfg, 9));
  const docs = [0, 1, 2, 3].map((i) => ({ id: `d${i}`, ids: randomIds(60, cfg.vocab_size, 40 + i), bytes: 200 }));
  writeWindows(dir, { seq_len: 12, eos_id: 0, vocab_size: cfg.vocab_size, tokenizer_sha256: 'x', source: 'test', seed: 1, val_fraction: 0.5 },
    { train: docs, validation: docs });
  // A prep always has its tokenizer.json; eval's bits per byte reads the bytes per token from it.
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordLevel', vocab: Object.fromEntries(Array.from({ length: cfg.vocab_size }, (_, i) => [`t${i}`, i])) } }));
  const exp = (name: string, extra: Record<string, unknown>) => runExport({ checkpoint: ckpt, out: join(dir, name, 'model.onnx'), overwrite: true, ...extra }); // tests re-export fp32
  const opts = { prep: dir, max_windows: 10, batch_size: 4, device: 'cpu', quiet: true };

  it('export validates its options and writes each variant', () => {
    expect(() => exp('x', { dtype: 'int3' })).toThrow("export config: dtype = \"int3\" must be one of fp32, fp16, int8, int4");
    expect(() => exp('x', { block_size: 48, dtype: 'int4' })).toThrow('int4 block size must be a power of two ≥ 16, got 48');
    expect(() => exp('x', { blocksize: 32 })).toThrow("export config: unknown key 'blocksize'");
    const r = exp('int4-genai', { dtype: 'int4', io: 'genai', external_data: true, symmetric: false, block_size: 16 });
    expect(r).toMatchObject({ dtype: 'int4', io: 'genai', block_size: 16, symmetric: false, external_data: true });
    expect(existsSync(join(dir, 'int4-genai', 'model.onnx.data'))).toBe(true);
  });

  it('compare: a model against itself agrees fully, and its perplexity is the scoring path\'s', async () => {
    exp('fp32', {});
    const a = join(dir, 'fp32', 'model.onnx');
    const r = await runCompare(a, a, opts);
    expect(r).toMatchObject({ positions: 10 * 12, scored_tokens: 120, top1_agreement: 1, mean_kl: 0, windows: 10, vocab_size: cfg.vocab_size });
    const ev = await evaluateOnnx(a, { prep: dir, batchSize: 3, maxWindows: 10, stride: 0, device: 'cpu' });
    expect(Math.abs(r.a.ppl / ev.ppl - 1)).toBeLessThan(1e-5);
    expect(r.a).toMatchObject({ execution_provider: 'cpu', logits_type: 'float32' });
  });

  it('compare: fp32 vs fp16 vs int4 (external data, genai IO) — small but nonzero KL', async () => {
    exp('fp32', {});
    exp('fp16', { dtype: 'fp16', io: 'merged' });
    const a = join(dir, 'fp32', 'model.onnx');
    const half = await runCompare(a, join(dir, 'fp16', 'model.onnx'), opts);
    expect(half.b.logits_type).toBe('float16');
    expect(half.mean_kl).toBeGreaterThan(0);
    expect(half.mean_kl).toBeLessThan(1e-3);
    const q = await runCompare(a, join(dir, 'int4-genai', 'model.onnx'), opts);
    expect(q.mean_kl).toBeGreaterThan(half.mean_kl);
    expect(q.top1_agreement).toBeGreaterThan(0.5);
  });

  it('compare refuses models with different vocabularies, naming both', async () => {
    const other = tinyConfig(true, { vocab_size: 101 }), ck2 = join(dir, 'ckpt101');
    saveCheckpoint(ck2, other, testWeights(other, 1));
    runExport({ checkpoint: ck2, out: join(dir, 'v101', 'model.onnx') });
    const a = join(dir, 'fp32', 'model.onnx'), b = join(dir, 'v101', 'model.onnx');
    await expect(runCompare(a, b, opts)).rejects.toThrow(`${a} has 97 logits per position but ${b} has 101: not the same vocabulary`);
  });
});
