/**
 * Quantization-aware training: the fake quantization against a float64 reference written here from
 * the definitions (ties and all-zero channels included), the straight-through gradient, training
 * with --qat from a step, and the exported int8 / int4 ONNX of a QAT student against the TF.js
 * fake-quant forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { LlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { NamedTensors } from '../lib/model/tensors.js';
import { exportLlamaOnnx, openOnnxSession, parameterCountOf, runLogits, teacherDtypeOf } from '../lib/onnx/index.js';
import { dequantizeInt4, quantizeInt4 } from '../lib/onnx/int4.js';
import { dequantizeInt8, quantizeInt8 } from '../lib/onnx/int8.js';
import { fakeQuantInt4Blocks, fakeQuantInt8PerChannel } from '../lib/quant/fake-quant.js';
import { QatMode, qatTransform } from '../lib/quant/qat.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, TrainControl } from '../lib/train/trainer.js';
import { mulberry32 } from '../lib/util/random.js';
import { kdCli, ParsedCommandLine } from '../pipelines/cli.js';
import { run as exportStudent } from '../stages/export.js';
import { randomIds, testWeights, tinyConfig } from './fixtures/llama.js';
import { fakeTokenizer, readMetrics, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

beforeAll(async () => { await initBackend('wasm'); });

const f32 = Math.fround;
/** Round half to even, from its definition. */
const rne = (x: number) => { const f = Math.floor(x); return x - f !== 0.5 ? Math.round(x) : f % 2 === 0 ? f : f + 1; };
/** C roundf: half away from zero. */
const roundf = (x: number) => (x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5));
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** int8 per column of w [K, N] (row-major): float32 scale max|w|/127, codes round-half-even, clamp ±127. */
function refInt8(w: Float32Array, K: number, N: number): Float64Array {
  const out = new Float64Array(K * N);
  for (let n = 0; n < N; n++) {
    let max = 0;
    for (let k = 0; k < K; k++) max = Math.max(max, Math.abs(w[k * N + n]));
    const scale = f32(max / 127);
    for (let k = 0; k < K; k++) out[k * N + n] = scale === 0 ? 0 : f32((clamp(rne(f32(w[k * N + n] / scale)), -127, 127) + 0) * scale); // + 0: an integer code has no −0
  }
  return out;
}

/** int4 asymmetric blocks of B rows per column of w [K, N] (MLAS's float32 steps). */
function refInt4(w: Float32Array, K: number, N: number, B: number): Float64Array {
  const out = new Float64Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b0 = 0; b0 < K; b0 += B) {
      let lo = 0, hi = 0;
      for (let k = b0; k < b0 + B; k++) { lo = Math.min(lo, w[k * N + n]); hi = Math.max(hi, w[k * N + n]); }
      const scale = f32(f32(hi - lo) / 15);
      const zp = scale === 0 ? 0 : clamp(roundf(f32(-lo / scale)), 0, 15);
      const recip = scale === 0 ? 0 : f32(1 / scale);
      for (let k = b0; k < b0 + B; k++) out[k * N + n] = f32((clamp(roundf(f32(f32(w[k * N + n] * recip) + zp)), 0, 15) - zp) * scale);
    }
  }
  return out;
}

/** A random [K, N] matrix with ties planted: column 0 all zero, column 1 on a grid of scale 1 with x.5 values. */
function matrix(K: number, N: number, seed: number): Float32Array {
  const u = mulberry32(seed), w = Float32Array.from({ length: K * N }, () => (u() - 0.4) * 0.2);
  for (let k = 0; k < K; k++) {
    w[k * N] = 0;
    w[k * N + 1] = [127, -126.5, 2.5, -2.5, 3.5, 0.5, -0.5, 1.5][k % 8]; // int8 scale exactly 1: ties at x.5
    w[k * N + 2] = [10.5, -4.5, 3.5, 2.5, -1.5, 0.5, 6, 7][k % 8]; // int4: scale 1, zero point −(−4.5) → 5 (roundf), codes at .5
  }
  return w;
}

const transposeTo = (w: Float32Array, K: number, N: number) => { // [K, N] → HF [N, K]
  const t = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) t[n * K + k] = w[k * N + n];
  return t;
};

describe('fake quantization = float64 reference, bit for bit', () => {
  const K = 64, N = 7, w = matrix(K, N, 3);

  it('int8 per output channel (ties round half to even, all-zero column stays 0)', () => {
    const got = tf.tidy(() => fakeQuantInt8PerChannel(tf.tensor2d(w, [K, N])).dataSync());
    const want = refInt8(w, K, N);
    expect([...got]).toEqual([...want]);
    expect([got[2 * N + 1], got[3 * N + 1], got[4 * N + 1], got[5 * N + 1], got[1 * N + 1]]).toEqual([2, -2, 4, 0, -126]); // 2.5→2, −2.5→−2, 3.5→4, 0.5→0, −126.5→−126
    expect(Array.from({ length: K }, (_, k) => got[k * N])).toEqual(Array(K).fill(0));
    // and equal to the export's codes · scales (lib/onnx/int8.ts, HF [N, K] layout)
    const deq = dequantizeInt8(quantizeInt8(transposeTo(w, K, N), N, K));
    expect([...transposeTo(deq, N, K)]).toEqual([...got]);
  });

  it.each([16, 32])('int4 asymmetric blocks of %i along the input axis (roundf ties away from zero)', (B) => {
    const got = tf.tidy(() => fakeQuantInt4Blocks(tf.tensor2d(w, [K, N]), B).dataSync());
    const want = refInt4(w, K, N, B);
    expect([...got]).toEqual([...want]);
    // column 2: scale 1, zp roundf(4.5) = 5 (half-even would say 4); 10.5 + 5 → 16 → 15 (clamped) → 10,
    // −4.5 + 5 = 0.5 → 1 → −4, 3.5 + 5 → 9 → 4, 2.5 + 5 → 8 → 3, −1.5 + 5 → 4 → −1, 0.5 + 5 → 6 → 1
    expect([0, 1, 2, 3, 4, 5].map((k) => got[k * N + 2])).toEqual([10, -4, 4, 3, -1, 1]);
    expect(Array.from({ length: K }, (_, k) => got[k * N])).toEqual(Array(K).fill(0));
    const deq = dequantizeInt4(quantizeInt4(transposeTo(w, K, N), N, K, B, false));
    expect([...transposeTo(deq, N, K)]).toEqual([...got]);
  });

  it('many random matrices: int8 and int4 equal the reference and the export quantizers exactly', () => {
    for (let seed = 10; seed < 20; seed++) {
      const Ks = 32 * (1 + (seed % 3)), Ns = 5 + seed, u = mulberry32(seed);
      const m = Float32Array.from({ length: Ks * Ns }, () => (u() - 0.5) * 10 ** (seed % 4 - 2));
      const [g8, g4] = tf.tidy(() => [fakeQuantInt8PerChannel(tf.tensor2d(m, [Ks, Ns])).dataSync(), fakeQuantInt4Blocks(tf.tensor2d(m, [Ks, Ns]), 32).dataSync()]);
      expect([...g8]).toEqual([...refInt8(m, Ks, Ns)]);
      expect([...g4]).toEqual([...refInt4(m, Ks, Ns, 32)]);
      expect([...transposeTo(dequantizeInt4(quantizeInt4(transposeTo(m, Ks, Ns), Ns, Ks, 32, false)), Ns, Ks)]).toEqual([...g4]);
    }
  });

  it('the straight-through gradient is the upstream gradient; no tensor leaks', () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor2d(w, [K, N]), c = tf.randomNormal([K, N], 0, 1, 'float32', 5);
    for (const fq of [fakeQuantInt8PerChannel, (t: tf.Tensor2D) => fakeQuantInt4Blocks(t, 32)]) {
      const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fq(t as tf.Tensor2D), c)))(x).dataSync());
      expect([...g]).toEqual([...c.dataSync()]);
    }
    tf.dispose([x, c]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('int4 with a block that does not divide the input dimension is refused', () => {
    expect(() => tf.tidy(() => fakeQuantInt4Blocks(tf.zeros([48, 4]) as tf.Tensor2D, 32))).toThrow('int4 fake quantization: block size 32 does not divide the input dimension 48');
  });
});

/** TF.js logits [B·L, V] of `weights` with the fake quantization of `mode` (none: plain float). */
function tfLogits(cfg: LlamaConfig, weights: NamedTensors, ids: Int32Array, B: number, L: number, mode: QatMode, block: number): Float32Array {
  const model = new LlamaModel(cfg, weights);
  model.linearWeights = qatTransform(mode, block);
  const out = tf.tidy(() => model.logits(tf.tensor2d(ids, [B, L], 'int32')).dataSync() as Float32Array);
  model.dispose();
  return out;
}

/** max |a − b| / max |b|: the tolerance is relative to the logits' scale. */
const relDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
};

const ortLogits = async (bytesOrPath: Uint8Array | string, ids: Int32Array, B: number, L: number) =>
  (await runLogits(await openOnnxSession(bytesOrPath, { device: 'cpu' }), ids, B, L)).logits;

describe('the int8 / int4 ONNX export equals the TF.js fake-quant forward', () => {
  const B = 2, L = 6;
  it.each([['int8', false], ['int4', false], ['int8', true], ['int4', true]] as const)('%s (tied embeddings %s): onnxruntime logits = TF.js fake-quant logits within 1e-5 of their scale', async (mode, tie) => {
    const cfg = tinyConfig(tie), w = testWeights(cfg, 41), ids = randomIds(B * L, cfg.vocab_size, 42);
    const bytes = exportLlamaOnnx(cfg, w, { dtype: mode, blockSize: 16 });
    expect(teacherDtypeOf(bytes)).toBe(mode);
    expect(parameterCountOf(bytes)).toBe(parameterCountOf(exportLlamaOnnx(cfg, w))); // codes count as the weights, scales not again
    const got = await ortLogits(bytes, ids, B, L);
    const fq = tfLogits(cfg, w, ids, B, L, mode, 16), float = tfLogits(cfg, w, ids, B, L, 'none', 16);
    expect(relDiff(got, fq)).toBeLessThan(1e-5);
    expect(relDiff(got, float)).toBeGreaterThan(mode === 'int8' ? 1e-4 : 1e-3); // the quantization is visible: far above the tolerance
  });
});

describe('training with --qat', () => {
  const V = 40, L = 8;
  const model = { hidden_size: 32, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 };
  const root = mkdtempSync(join(tmpdir(), 'kd-qat-'));
  const tokenizer = fakeTokenizer(join(root, 'tok'));
  const trainData = syntheticData(24, L, V, 6, 1), validation = syntheticData(8, L, V, 6, 2, false);
  const run = async (over: Record<string, unknown>, control?: TrainControl) => {
    const cfg = resolveTrainConfig({ model, batch_size: 2, lr: 1e-2, warmup_steps: 2, eval_windows: 8, eval_every: 2, max_steps: 8, quiet: true, backend: 'wasm', ...over });
    return train(cfg, { train: trainData, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} }, control);
  };
  const metrics = (out: string) => readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8'));
  const losses = (out: string) => metrics(out).filter((r) => 'loss' in r).map((r) => r.loss);
  const vals = (out: string) => metrics(out).filter((r) => 'val_loss' in r);

  beforeAll(async () => {
    await run({ out: join(root, 'float') });
    await run({ out: join(root, 'int8'), qat: 'int8', qat_start: 4 });
    await run({ out: join(root, 'int4'), qat: 'int4', qat_start: 4, qat_block_size: 16 });
  });

  it('changes nothing before --qat-start and quantizes from it on (losses, evaluations)', () => {
    const float = losses(join(root, 'float'));
    for (const mode of ['int8', 'int4']) {
      const q = losses(join(root, mode));
      expect(q.slice(0, 4)).toEqual(float.slice(0, 4)); // steps 1–4: bit for bit
      for (let s = 4; s < 8; s++) expect(q[s]).not.toBe(float[s]);
      const [v2, v4] = vals(join(root, mode)), [f2, f4] = vals(join(root, 'float'));
      expect(v2).toEqual(f2); // after step 2: float
      expect(v4.val_loss).not.toBe(f4.val_loss); // after step 4: the same weights seen quantized
    }
    const cfg = JSON.parse(readFileSync(join(root, 'int4', 'train.json'), 'utf8')).config;
    expect([cfg.qat, cfg.qat_start, cfg.qat_block_size]).toEqual(['int4', 4, 16]);
  });

  it('resume across --qat-start is exact', async () => {
    const out = join(root, 'int8-resumed'), ctl = new AbortController();
    await run({ out, qat: 'int8', qat_start: 4 }, { signal: ctl.signal, onStep: (r) => { if (r.step === 3) ctl.abort(); } });
    await run({ out, qat: 'int8', qat_start: 4, resume: true });
    expect(losses(out)).toEqual(losses(join(root, 'int8')));
    expect(vals(out)).toEqual(vals(join(root, 'int8')));
    await expect(run({ out, qat: 'int8', qat_start: 5, resume: true, max_steps: 9 })).rejects.toThrow('qat_start: 4 → 5');
  });

  it.each(['int8', 'int4'] as const)('kd export --dtype %s of the QAT student: onnxruntime logits = the TF.js fake-quant forward of the checkpoint', async (mode) => {
    const exp = join(root, `export-${mode}`);
    const r = exportStudent({ checkpoint: join(root, mode), out: exp, dtype: mode, block_size: 16 });
    expect(r.qat).toEqual({ qat: mode, qat_block_size: mode === 'int4' ? 16 : 32 });
    const { cfg, weights } = loadCheckpoint(join(root, mode));
    const ids = Int32Array.from(validation.batch([0, 1]).inputIds);
    const got = await ortLogits(join(exp, 'onnx', 'model.onnx'), ids, 2, L);
    expect(relDiff(got, tfLogits(cfg, weights, ids, 2, L, mode, 16))).toBeLessThan(1e-5);
    // the checkpoint keeps the latent float weights: an fp32 export is another model
    const fp32 = await ortLogits(exportLlamaOnnx(cfg, weights), ids, 2, L);
    expect(relDiff(got, fp32)).toBeGreaterThan(1e-4);
  });

  it('an export that does not run what the student trained says so', () => {
    const r = exportStudent({ checkpoint: join(root, 'int4'), out: join(root, 'export-mismatch'), dtype: 'int4', block_size: 32 });
    expect(r.qat?.warning).toBe('the checkpoint was trained with --qat int4 --qat-block-size 16; this export (--dtype int4 --block-size 32) is not the model it trained: export with --dtype int4 --block-size 16 (asymmetric)');
  });

  it('bad values are refused in one line', async () => {
    const parseError = async (args: string[]) => {
      try { await (await kdCli(args, true)).parseAsync(); return 'the handler would have run'; } catch (e) {
        return e instanceof ParsedCommandLine ? undefined : (e as Error).message;
      }
    };
    expect(await parseError(['train', '--qat', 'int3'])).toBe('Invalid values: Argument: qat, Given: "int3", Choices: "none", "int8", "int4"');
    expect(await parseError(['train', '--qat', 'int8', '--qat-start', '3'])).toBeUndefined();
    expect(() => resolveTrainConfig({ qat: 'int3' })).toThrow(/^train config: qat = "?int3"? must be one of none, int8, int4$/);
    expect(() => resolveTrainConfig({ qat_block_size: 0 })).toThrow(/qat_block_size = 0 must be a power of two ≥ 16/);
    expect(() => resolveTrainConfig({ qat_start: -1 })).toThrow(/qat_start = -1/);
    await expect(run({ out: join(root, 'bad-block'), qat: 'int4', qat_block_size: 64 }))
      .rejects.toThrow("train config: model: qat_block_size = 64 does not divide the model's hidden_size = 32 (an input dimension of the quantized linears)");
  });
});
