/**
 * The memory plan (lib/memory/plan.ts) against what TF.js really allocates: kd's peak of live
 * buffers (lib/memory/measure.ts) over real optimizer steps, and the pieces the plan counts on.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { savedTensorsOf } from '../lib/memory/budget.js';
import { measurePeak } from '../lib/memory/measure.js';
import { UNCHUNKED } from '../lib/memory/options.js';
import { planMemory } from '../lib/memory/plan.js';
import { measureStepPeak, StepSettings } from '../lib/memory/step-peak.js';
import { LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { AdamW, clipByGlobalNorm } from '../lib/train/adamw.js';

beforeAll(async () => { await initBackend('wasm'); });

describe('measurePeak counts buffers, not handles', () => {
  it('a reshape adds nothing, a new buffer adds its bytes, what was live before is included; a clone shares (kd\'s wasm Identity kernel)', async () => {
    const w = tf.variable(tf.zeros([1000])); // 4000 bytes
    const m = await measurePeak(() => tf.tidy(() => {
      const a = tf.ones([250, 4]); // 4000
      const views = [tf.reshape(a, [1000]), tf.reshape(a, [4, 250])];
      const b = tf.add(views[0], 1); // 4000
      const c = tf.clone(a); // shares a's buffer, as on the cpu backend (lib/backend/wasm-kernels.ts): 0
      return tf.sum(tf.add(b, tf.reshape(c, [1000]))).dataSync()[0];
    }), [w]);
    expect(m.result).toBe(3000);
    expect(m.startBytes).toBe(4000);
    expect(m.peakBytes).toBe(4000 + 4000 + 4000 + 4000 + 4); // w, a (= c), b, b + c, then the sum
    expect(m.handlePeakBytes).toBeGreaterThan(m.peakBytes); // tf.profile counts the views again
    w.dispose();
  });
});

/** The AdamW update as it was written before (one tidy over all variables): the reference values. */
function referenceAdamW(x: Float32Array, g: Float32Array, shape: number[], steps: number) {
  return tf.tidy(() => {
    let p = tf.tensor(x, shape), m = tf.zerosLike(p), v = tf.zerosLike(p);
    const grad = tf.tensor(g, shape);
    for (let t = 1; t <= steps; t++) {
      const c1 = 1 - 0.9 ** t, c2 = 1 - 0.95 ** t;
      m = tf.add(tf.mul(m, 0.9), tf.mul(grad, 1 - 0.9));
      v = tf.add(tf.mul(v, 0.95), tf.mul(tf.square(grad), 1 - 0.95));
      let update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), 1e-8));
      update = tf.add(update, tf.mul(p, 0.1));
      p = tf.sub(p, tf.mul(update, 1e-2));
    }
    return p.dataSync() as Float32Array;
  });
}

describe('AdamW.apply', () => {
  it('holds at most three temporaries of the largest variable (not every intermediate of every variable), same values bit for bit', async () => {
    const shapes = [[300, 200], [200, 100], [100, 100], [400]];
    const rand = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.5);
    const init = shapes.map((s, i) => rand(s[0] * (s[1] ?? 1), i));
    const gs = shapes.map((s, i) => rand(s[0] * (s[1] ?? 1), 10 + i));
    const vars = shapes.map((s, i) => tf.variable(tf.tensor(init[i], s)));
    const grads = shapes.map((s, i) => tf.tensor(gs[i], s));
    const opt = new AdamW(vars, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const moments = (opt as unknown as { m: tf.Variable[]; v: tf.Variable[] });
    const persistent = [...vars, ...moments.m, ...moments.v, ...grads];
    const params = vars.reduce((n, v) => n + v.size, 0), largest = 300 * 200;
    const m = await measurePeak(() => { opt.apply(grads, 1e-2); opt.apply(grads, 1e-2); }, persistent);
    expect(m.startBytes).toBe(4 * 4 * params);
    expect(m.peakBytes).toBeLessThanOrEqual(4 * (4 * params + 3 * largest) + 64); // + a few scalars
    vars.forEach((v, i) => {
      const want = referenceAdamW(init[i], gs[i], shapes[i], 2);
      const got = v.dataSync();
      if (shapes[i].length === 1) return; // vectors take no weight decay
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    });
    opt.dispose(); tf.dispose([...vars, ...grads]);
  });
});

describe('clipByGlobalNorm', () => {
  it('scales the gradients one at a time: no second set of gradients, no set of squares', async () => {
    const grads = [[300, 200], [200, 100], [100]].map((s, i) => tf.mul(tf.ones(s), i + 1));
    const total = grads.reduce((n, g) => n + g.size, 0);
    const m = await measurePeak(() => clipByGlobalNorm(grads, 1), grads);
    expect(m.result.norm).toBeCloseTo(Math.sqrt(60000 + 4 * 20000 + 9 * 100), 1);
    expect(m.result.grads[0].dataSync()[0]).toBeCloseTo(1 / m.result.norm, 6);
    expect(grads.every((g) => g.isDisposed)).toBe(true); // replaced by their clipped copies
    expect(m.peakBytes).toBeLessThanOrEqual(4 * (total + 300 * 200) + 64);
    tf.dispose(m.result.grads);
  });
});

/** Small configurations unlike the calibration's (scripts/calibrate-memory.ts): other L, B, widths, vocab. */
const CASES: [string, Partial<LlamaConfig>, StepSettings][] = [
  ['L 40, B 2, width 40, vocab 200, recompute off', { vocab_size: 200, hidden_size: 40, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 },
    { seqLen: 40, batchSize: 2, k: 6, memory: UNCHUNKED }],
  ['L 56, B 1, width 56, vocab 320, recompute on', { vocab_size: 320, hidden_size: 56, intermediate_size: 112, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 1 },
    { seqLen: 56, batchSize: 1, k: 8, memory: { recompute: true, attentionQueryBlock: Infinity, lossChunk: Infinity } }],
  ['L 72, B 2, width 32, vocab 128, recompute on, blocks of 18, chunks of 48', { vocab_size: 128, hidden_size: 32, intermediate_size: 72, num_hidden_layers: 2, num_attention_heads: 8, num_key_value_heads: 2 },
    { seqLen: 72, batchSize: 2, k: 4, mode: 'renormalize', memory: { recompute: true, attentionQueryBlock: 18, lossChunk: 48 } }],
  ['L 24, B 3, width 48, vocab 512, recompute off, untied, CE only', { vocab_size: 512, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 3, tie_word_embeddings: false },
    { seqLen: 24, batchSize: 3, alpha: 0, memory: UNCHUNKED }],
  ['L 8, B 1, width 64, vocab 6000: the optimizer update is the peak', { vocab_size: 6000, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: false },
    { seqLen: 8, batchSize: 1, k: 4, memory: UNCHUNKED }],
];

describe('the plan against the measured peak of a real step (within 15 %)', () => {
  it.each(CASES)('%s', async (_, over, s) => {
    const model = resolveLlamaConfig({ max_position_embeddings: 128, ...over });
    const measured = await measureStepPeak(model, s);
    const plan = planMemory({
      model, seqLen: s.seqLen, batchSize: s.batchSize, gradAccum: 1, memory: s.memory!, saved: savedTensorsOf('wasm'),
      loss: { k: s.k ?? 8, mode: s.mode ?? 'tail', alpha: s.alpha ?? 0.8 }, dropout: false, gradClip: true,
    });
    expect(measured.startBytes).toBe(plan.weights_bytes + plan.optimizer_bytes); // weights and moments, exactly
    expect(Math.abs(plan.total_bytes / measured.peakBytes - 1)).toBeLessThan(0.15);
  });

  it('on the cpu backend (saved tensors share their buffer, as on wasm with kd\'s kernels: less than with copies)', async () => {
    const [, over, s] = CASES[0];
    const model = resolveLlamaConfig({ max_position_embeddings: 128, ...over });
    await initBackend('cpu');
    try {
      const measured = await measureStepPeak(model, s);
      const input = { model, seqLen: s.seqLen, batchSize: s.batchSize, gradAccum: 1, memory: s.memory!, loss: { k: s.k!, mode: 'tail' as const, alpha: 0.8 }, dropout: false, gradClip: true };
      const plan = planMemory({ ...input, saved: 'shares' });
      expect(Math.abs(plan.total_bytes / measured.peakBytes - 1)).toBeLessThan(0.15);
      expect(plan.total_bytes).toBeLessThan(planMemory({ ...input, saved: 'copies' }).total_bytes);
    } finally { await initBackend('wasm'); }
  });
});
