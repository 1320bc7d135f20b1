// Feature distillation: the distance math against float64 hand computations, W's gradient by finite
// differences, the trainer's errors for missing layers, and exact resume with a learned W.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { featureLossSum } from '../lib/losses/feature.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { FeatureTerm, parseFeatureLayers } from '../lib/train/feature.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, type TrainingInputs } from '../lib/train/trainer.js';
import type { TrainingData } from '../lib/train/data.js';
import { mulberry32, normalSampler } from '../lib/util/random.js';
import { fakeTokenizer, readMetrics, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

beforeAll(async () => { await initBackend('cpu'); });

const normal = normalSampler(mulberry32(7));
const randoms = (n: number) => Float64Array.from({ length: n }, () => normal());

/** float64 reference: Σ_t mask_t dist((s W)_t, t_t). */
function reference(s: Float64Array, t: Float64Array, W: Float64Array, mask: number[], N: number, ds: number, dt: number, kind: 'mse' | 'cosine'): number {
  let total = 0;
  for (let i = 0; i < N; i++) {
    const m = Array.from({ length: dt }, (_, j) => { let a = 0; for (let r = 0; r < ds; r++) a += s[i * ds + r] * W[r * dt + j]; return a; });
    const tt = Array.from({ length: dt }, (_, j) => t[i * dt + j]);
    let d: number;
    if (kind === 'mse') d = m.reduce((a, v, j) => a + (v - tt[j]) ** 2, 0) / dt;
    else {
      const dot = m.reduce((a, v, j) => a + v * tt[j], 0), nm = Math.hypot(...m), nt = Math.hypot(...tt);
      d = 1 - dot / (nm * nt);
    }
    total += mask[i] * d;
  }
  return total;
}

describe('featureLossSum', () => {
  const N = 5, ds = 3, dt = 4, mask = [1, 1, 0, 1, 1];
  const s = randoms(N * ds), t = randoms(N * dt), W = randoms(ds * dt);
  const run = (kind: 'mse' | 'cosine', w = W) => tf.tidy(() => featureLossSum(tf.tensor2d(Float32Array.from(s), [N, ds]), tf.tensor2d(Float32Array.from(t), [N, dt]),
    tf.tensor2d(Float32Array.from(w), [ds, dt]), tf.tensor1d(mask), kind).dataSync()[0]);

  it('is exactly 0 for equal states with W = identity (mse and cosine), and leaves no tensors', () => {
    const before = tf.memory().numTensors;
    const h = tf.tensor2d(Float32Array.from(t), [N, dt]), m = tf.tensor1d(mask);
    const mse = featureLossSum(h, h, undefined, m, 'mse'), cos = featureLossSum(h, h, undefined, m, 'cosine');
    expect(mse.dataSync()[0]).toBe(0);
    expect(Math.abs(cos.dataSync()[0])).toBeLessThan(1e-6);
    tf.dispose([h, m, mse, cos]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('equals the float64 hand computation (mse: mean over the feature dim; cosine: 1 − cos), masked positions add nothing', () => {
    for (const kind of ['mse', 'cosine'] as const) {
      const want = reference(s, t, W, mask, N, ds, dt, kind);
      expect(Math.abs(run(kind) - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
    }
  });

  it('its gradient wrt W matches central finite differences of the float64 reference', () => {
    for (const kind of ['mse', 'cosine'] as const) {
      const g = tf.tidy(() => {
        const f = (w: tf.Tensor) => featureLossSum(tf.tensor2d(Float32Array.from(s), [N, ds]), tf.tensor2d(Float32Array.from(t), [N, dt]), w as tf.Tensor2D, tf.tensor1d(mask), kind);
        return tf.grad(f)(tf.tensor2d(Float32Array.from(W), [ds, dt])).dataSync();
      });
      const eps = 1e-6;
      for (let i = 0; i < W.length; i++) {
        const up = W.slice(), down = W.slice();
        up[i] += eps; down[i] -= eps;
        const fd = (reference(s, t, up, mask, N, ds, dt, kind) - reference(s, t, down, mask, N, ds, dt, kind)) / (2 * eps);
        expect(Math.abs(g[i] - fd)).toBeLessThan(1e-4 * Math.max(1, Math.abs(fd)));
      }
    }
  });

  it('refuses shapes that do not fit, naming them', () => {
    const a = tf.zeros([2, 3]) as tf.Tensor2D, b = tf.zeros([2, 4]) as tf.Tensor2D, m = tf.ones([2]) as tf.Tensor1D;
    expect(() => featureLossSum(a, b, undefined, m, 'mse')).toThrow(/student \[2,3\] cannot map onto teacher \[2,4\] with W = identity/);
    tf.dispose([a, b, m]);
  });
});

describe('FeatureTerm checks', () => {
  const model = resolveLlamaConfig({ vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 });
  const hidden = { layers: [2], width: 8, dtype: 'float16' as const, projection: null };
  it('parses student:teacher pairs', () => {
    expect(parseFeatureLayers('1:2, 2:4')).toEqual([{ student: 1, teacher: 2 }, { student: 2, teacher: 4 }]);
    expect(() => parseFeatureLayers('1-2')).toThrow(/student:teacher pairs/);
  });
  it('refuses a teacher layer the dataset does not store, naming the dataset and its layers', () => {
    expect(() => new FeatureTerm([{ student: 1, teacher: 3 }], 1, 'mse', model, hidden, 'runs/logits-h', 0)).toThrow(/^runs\/logits-h: feature_layers asks for teacher layer 3, but the dataset stores hidden states of layers \[2\]/);
    expect(() => new FeatureTerm([{ student: 1, teacher: 3 }], 1, 'mse', model, undefined, 'runs/logits', 0)).toThrow(/stores hidden states of no layers/);
  });
  it('refuses a student layer beyond num_hidden_layers', () => {
    expect(() => new FeatureTerm([{ student: 3, teacher: 2 }], 1, 'mse', model, hidden, 'd', 0)).toThrow(/student layer 3 is beyond the student's num_hidden_layers 2/);
  });
});

describe('LlamaModel residual states', () => {
  it('hands out the same states with and without recomputation, and the feature gradient agrees', () => {
    const cfg = resolveLlamaConfig({ vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 16 });
    const m = new LlamaModel(cfg, undefined, 3);
    const ids = tf.tensor2d(Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 40), [2, 8], 'int32');
    const target = tf.tensor2d(Float32Array.from(randoms(16 * 16)), [16, 16]), mask = tf.ones([16]) as tf.Tensor1D;
    const gradOf = (recompute: boolean) => {
      const { value, grads } = tf.variableGrads(() => {
        const states = { layers: [1], out: new Map<number, tf.Tensor2D>() };
        m.hidden(ids, { states, memory: { recompute, attentionQueryBlock: Infinity, lossChunk: Infinity } });
        return featureLossSum(states.out.get(1)!, target, undefined, mask, 'mse');
      }, m.variables());
      const g = grads[m.variables()[1].name].dataSync().slice();
      const v = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return { v, g };
    };
    const a = gradOf(false), b = gradOf(true);
    expect(Math.abs(a.v - b.v)).toBeLessThan(1e-6 * Math.abs(a.v));
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < a.g.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(a.g[i] - b.g[i])); maxAbs = Math.max(maxAbs, Math.abs(a.g[i])); }
    expect(maxAbs).toBeGreaterThan(0);
    expect(maxDiff).toBeLessThan(1e-5 * maxAbs);
    tf.dispose([ids, target, mask]); m.dispose();
  });
});

describe('exact resume with feature distillation', () => {
  const V = 40, L = 8, width = 6;
  const root = mkdtempSync(join(tmpdir(), 'kd-feature-'));
  const tokenizer = fakeTokenizer(join(root, 'tok'));
  const base = syntheticData(24, L, V, 6, 1), validation = syntheticData(8, L, V, 6, 2, false);
  const hidden = { layers: [1, 2], width, dtype: 'float16' as const, projection: { kind: 'test', seed: 0, rows: 32, dim: width } };
  /** The synthetic batches plus teacher states that are a fixed function of the input ids. */
  const data: TrainingData = {
    ...base,
    async batchAt(seed, epoch, start, count) {
      const b = await base.batchAt(seed, epoch, start, count);
      const values = Float32Array.from({ length: b.B * L * 2 * width }, (_, i) => Math.sin(b.inputIds[Math.floor(i / (2 * width))] * 0.37 + (i % (2 * width))));
      return { ...b, teacher: { ...b.teacher!, hidden: { layers: hidden.layers, width, values } } };
    },
  };
  const model = { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 };
  const run = (over: Record<string, unknown>, control?: Parameters<typeof train>[2]) => {
    const cfg = resolveTrainConfig({ model, batch_size: 2, grad_accum: 2, epochs: 2, lr: 1e-2, warmup_steps: 2, eval_windows: 8, quiet: true, backend: 'cpu',
      feature_layers: '1:2,2:1', feature_beta: 0.5, save_every: 4, ...over });
    const inputs: TrainingInputs = { train: data, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), hidden, provenance: {} };
    return train(cfg, inputs, control);
  };
  const metrics = (out: string) => readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).filter((r) => 'loss' in r).map((r) => ({ ...r, tokens_per_s: 0 }));

  it('logs feat, saves W beside the checkpoint and resumes bit for bit', async () => {
    await run({ out: join(root, 'full') });
    const full = metrics(join(root, 'full'));
    expect(full.length).toBe(12);
    expect(full.every((r) => (r as Record<string, number>).feat > 0)).toBe(true);
    expect(existsSync(join(root, 'full', 'feature_projection.safetensors'))).toBe(true);
    const out = join(root, 'cut'), ctl = new AbortController();
    await run({ out }, { signal: ctl.signal, onStep: (r) => { if (r.step === 5) ctl.abort(); } });
    await run({ out, resume: true });
    expect(metrics(out)).toEqual(full);
    expect(readFileSync(join(out, 'feature_projection.safetensors')).equals(readFileSync(join(root, 'full', 'feature_projection.safetensors')))).toBe(true);
  });

  it('resumes a run saved before the feature keys existed when they are at their defaults, and refuses turning them on', async () => {
    const out = join(root, 'old');
    const ctl = new AbortController(), plain = { feature_layers: '', feature_beta: 0.01, max_steps: 4 };
    await run({ out, ...plain }, { signal: ctl.signal, onStep: (r) => { if (r.step === 2) ctl.abort(); } });
    const path = join(out, 'trainer_state.json'), state = JSON.parse(readFileSync(path, 'utf8'));
    for (const k of ['feature_layers', 'feature_beta', 'feature_loss']) delete state.trajectory[k];
    writeFileSync(path, JSON.stringify(state));
    await expect(run({ out, ...plain, resume: true })).resolves.toMatchObject({ steps: 4 });
    await expect(run({ out, ...plain, feature_layers: '1:2,2:1', resume: true })).rejects.toThrow(/started with other settings \(feature_layers: undefined → "1:2,2:1"/);
  });
});
