/**
 * Chunked LM head + loss (lib/losses/chunked.ts): equal to the unchunked loss in value and
 * gradient for every divergence × top-k mode × padded vocab, on the shared PyTorch reference
 * cases, and without an [N, V] tensor; and the trainer's step with recompute, blocked attention
 * and chunked loss equals the UNCHUNKED step.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { chunkedDistillationLoss, distillationLossNormalized, LOSS_NAMES, type DistillOptions, type TeacherSignal, type TopKMode } from '../lib/losses/index.js';
import { UNCHUNKED, type MemoryOptions } from '../lib/memory/options.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { AdamW } from '../lib/train/adamw.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { StepRecord, trainLoop } from '../lib/train/loop.js';
import { sharedCases } from './shared-cases.js';
import { STORED_TEMPERATURES, syntheticData } from './synthetic.js';

/** Teacher signal of full logits rows z [N][V] at τ: top-k ids, z − max, exact logZ. */
function signalOf(z: number[][], k: number, tau: number): TeacherSignal {
  const ids: number[][] = [], vals: number[][] = [], logZ: number[] = [];
  for (const row of z) {
    const order = row.map((_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
    const max = Math.max(...row), m = max / tau;
    ids.push(order);
    vals.push(order.map((i) => row[i] - max));
    logZ.push(m + Math.log(row.reduce((s, v) => s + Math.exp(v / tau - m), 0)) - m);
  }
  return { ids: tf.tensor2d(ids, undefined, 'int32'), logits: tf.tensor2d(vals), logZ: tf.tensor1d(logZ) };
}

const relDiff = (a: tf.Tensor, b: tf.Tensor) => {
  const x = a.dataSync(), y = b.dataSync();
  let d = 0, s = 0;
  for (let i = 0; i < x.length; i++) { d = Math.max(d, Math.abs(x[i] - y[i])); s = Math.max(s, Math.abs(x[i])); }
  return s === 0 ? d : d / s;
};

/** Value and gradients (w.r.t. hidden and head) of the total, chunked (chunk) or not (null). */
function lossAndGrads(h: tf.Tensor2D, w: tf.Tensor2D, signal: TeacherSignal | undefined, targets: tf.Tensor1D, o: DistillOptions, norm: number, chunk: number | null) {
  const parts: number[] = [];
  const f = (a: tf.Tensor, b: tf.Tensor) => {
    const r = chunk === null
      ? distillationLossNormalized(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D), signal, targets, o, norm)
      : chunkedDistillationLoss(a as tf.Tensor2D, b as tf.Tensor2D, signal, targets, o, norm, chunk);
    parts.push(r.kdSum.dataSync()[0], r.ceSum.dataSync()[0]);
    return r.total;
  };
  const value = f(h, w);
  const grads = tf.grads(f)([h, w]);
  return { value, kd: parts[0], ce: parts[1], grads };
}

describe('chunked head and loss on wasm', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  it('equals the unchunked loss, value and gradient, for every divergence × tail/renormalize × padded vocab × α, chunks 1, 3, 7', () => {
    const N = 13, d = 5, k = 4;
    for (const [V, realVocab] of [[12, 12], [16, 11]]) {
      const h = tf.randomNormal([N, d], 0, 1, 'float32', 1) as tf.Tensor2D;
      const w = tf.randomNormal([d, V], 0, 1, 'float32', 2) as tf.Tensor2D;
      const z = (tf.randomNormal([N, realVocab], 0, 2, 'float32', 3).arraySync() as number[][]);
      const targets = tf.tensor1d(Array.from({ length: N }, (_, i) => (i % 4 === 1 ? -100 : (i * 5) % realVocab)), 'int32');
      for (const loss of LOSS_NAMES) {
        for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
          for (const alpha of [0, 0.6, 1]) {
            const o: DistillOptions = { alpha, temperature: 2, loss, mode, realVocab, beta: 0.3, lambda: 0.2 };
            const signal = signalOf(z, k, 2);
            const want = lossAndGrads(h, w, signal, targets, o, 17, null);
            for (const chunk of [1, 3, 7]) {
              const label = `${loss}/${mode} V ${V}/${realVocab} α ${alpha} chunk ${chunk}`;
              const got = lossAndGrads(h, w, signal, targets, o, 17, chunk);
              expect(relDiff(want.value, got.value), label).toBeLessThan(1e-5);
              expect(Math.abs(got.kd - want.kd), label).toBeLessThanOrEqual(1e-5 * Math.abs(want.kd) + 1e-7);
              expect(Math.abs(got.ce - want.ce), label).toBeLessThanOrEqual(1e-5 * Math.abs(want.ce) + 1e-7);
              got.grads.forEach((g, i) => expect(relDiff(want.grads[i], g), `${label} grad ${i}`).toBeLessThan(1e-5));
            }
          }
        }
      }
    }
  });

  describe('shared reference cases through hidden = logits, head = identity', () => {
    const c = sharedCases('kd_losses.json').cases.find((x: { name: string }) => x.name === 'seed_loss_alpha_0.8_T_3_full_vocab');
    const close = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-5 * Math.abs(want) + 1e-7);
    for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
      it(`seed_loss_alpha_0.8_T_3_full_vocab (${mode}), chunks 1, 3, 5`, () => {
        const s = tf.tensor2d((c.student_logits as number[][][]).flat()), V = s.shape[1];
        const z = (c.teacher_logits as number[][][]).flat();
        const targets = tf.tensor1d((c.target_ids as number[][]).flat(), 'int32');
        const o: DistillOptions = { alpha: c.alpha, temperature: c.T, loss: 'forward_kl', mode, realVocab: V };
        for (const chunk of [1, 3, 5]) {
          const tokens = targets.dataSync().filter((t) => t !== -100).length;
          const r = chunkedDistillationLoss(s, tf.eye(V) as tf.Tensor2D, signalOf(z, c.k, c.T), targets, o, tokens, chunk);
          close(r.total.dataSync()[0], c.expected_total);
          close(r.kdSum.dataSync()[0] / r.tokens, c.expected_mean_kd_term);
          close(r.ceSum.dataSync()[0] / r.tokens, c.expected_mean_ce);
        }
      });
    }
    it('topk_tail_and_renormalize and temperature_reaches_both_sides_and_t_squared, chunk 1', () => {
      const t = sharedCases('kd_losses.json').cases.find((x: { name: string }) => x.name === 'topk_tail_and_renormalize');
      const rows = [t.student_probs.map(Math.log), t.student_probs.map(Math.log)];
      for (const [mode, want] of [['tail', t.expected_tail_mode], ['renormalize', t.expected_renormalize_mode]] as const) {
        const r = chunkedDistillationLoss(tf.tensor2d(rows), tf.eye(4) as tf.Tensor2D, signalOf([t.teacher_probs.map(Math.log), t.teacher_probs.map(Math.log)], t.k, 1),
          tf.tensor1d([0, 0], 'int32'), { alpha: 1, temperature: 1, loss: 'forward_kl', mode, realVocab: 4 }, 2, 1);
        close(r.total.dataSync()[0], want);
      }
      const T = sharedCases('kd_losses.json').cases.find((x: { name: string }) => x.name === 'temperature_reaches_both_sides_and_t_squared');
      const r = chunkedDistillationLoss(tf.tensor2d([T.student_logits, T.student_logits]), tf.eye(2) as tf.Tensor2D, signalOf([T.teacher_logits, T.teacher_logits], 2, T.T),
        tf.tensor1d([0, 0], 'int32'), { alpha: 1, temperature: T.T, loss: 'forward_kl', mode: 'tail', realVocab: 2 }, 2, 1);
      close(r.total.dataSync()[0], T.expected_kd_term);
    });
    it('mask_ignored_positions: all masked gives 0 and an exactly zero gradient', () => {
      const h = tf.randomNormal([4, 3], 0, 1, 'float32', 1) as tf.Tensor2D, w = tf.randomNormal([3, 8], 0, 1, 'float32', 2) as tf.Tensor2D;
      const sig = signalOf(tf.randomNormal([4, 8], 0, 2, 'float32', 3).arraySync() as number[][], 3, 2);
      const none = tf.fill([4], -100, 'int32') as tf.Tensor1D;
      const o: DistillOptions = { alpha: 0.5, temperature: 2, loss: 'forward_kl', mode: 'tail', realVocab: 8 };
      const f = (a: tf.Tensor, b: tf.Tensor) => chunkedDistillationLoss(a as tf.Tensor2D, b as tf.Tensor2D, sig, none, o, 0, 3).total;
      expect(f(h, w).dataSync()[0]).toBe(0);
      for (const g of tf.grads(f)([h, w])) expect(Array.from(g.dataSync()).every((v) => v === 0)).toBe(true);
    });
  });

  it('no [N, V] tensor exists in chunked mode: every kernel output, forward and backward, is at most [chunk, V]', async () => {
    const N = 64, d = 6, V = 50, chunk = 8;
    const h = tf.randomNormal([N, d], 0, 1, 'float32', 1) as tf.Tensor2D, w = tf.randomNormal([d, V], 0, 1, 'float32', 2) as tf.Tensor2D;
    const sig = signalOf(tf.randomNormal([N, 45], 0, 2, 'float32', 3).arraySync() as number[][], 5, 2);
    const targets = tf.tensor1d(Array.from({ length: N }, (_, i) => i % 45), 'int32');
    const o: DistillOptions = { alpha: 0.5, temperature: 2, loss: 'jsd', mode: 'tail', realVocab: 45 };
    const largest = async (c: number) => {
      const prof = await tf.profile(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => chunkedDistillationLoss(a as tf.Tensor2D, b as tf.Tensor2D, sig, targets, o, N, c).total)([h, w]));
      return { size: Math.max(...prof.kernels.flatMap((k) => k.outputShapes.map((s) => s.reduce((a, b) => a * b, 1)))), peak: prof.peakBytes };
    };
    const chunked = await largest(chunk), whole = await largest(Infinity);
    expect(chunked.size).toBeLessThanOrEqual(chunk * V);
    expect(whole.size).toBeGreaterThanOrEqual(N * V); // the check sees the [N, V] logits when they exist
    expect(chunked.peak).toBeLessThan(whole.peak);
  });

  it('rejects a bad chunk and mismatched hidden/head with one-line errors', () => {
    const h = tf.zeros([4, 3]) as tf.Tensor2D, t = tf.tensor1d([0, 1, 2, 3], 'int32');
    const o: DistillOptions = { alpha: 0, temperature: 1, loss: 'forward_kl', mode: 'tail', realVocab: 8 };
    expect(() => chunkedDistillationLoss(h, tf.zeros([3, 8]) as tf.Tensor2D, undefined, t, o, 4, 0)).toThrow('loss chunk must be a positive integer, got 0');
    expect(() => chunkedDistillationLoss(h, tf.zeros([4, 8]) as tf.Tensor2D, undefined, t, o, 4, 2)).toThrow('hidden states [4,3] and LM head [4,8] must be [N, d] and [d, V]');
  });
});

describe('the trainer step with memory options on wasm', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  /** Two optimizer steps (accumulation 2, dropout on) of a tied-embedding GQA student on synthetic KD data. */
  async function run(memory: MemoryOptions, tied: boolean) {
    const cfg = resolveLlamaConfig({ vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 16, tie_word_embeddings: tied });
    const data = syntheticData(8, 9, 36, 5, 3);
    const model = new LlamaModel(cfg, undefined, 4);
    const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
    const records: StepRecord[] = [];
    await trainLoop({
      model, optimizer, startStep: 0, totalSteps: 2, stepsPerEpoch: 2, accum: 2, memory,
      batchAt: (step, micro) => data.batch([0, 1].map((i) => (step * 4 + micro * 2 + i) % 8)),
      lossFn: makeLossFn(resolveTrainConfig({ alpha: 0.7, temperature: 2, topk_mode: 'tail' }), 36, STORED_TEMPERATURES),
      lrAt: () => 1e-2, gradClip: 1, dropout: 0.1, dropoutSeed: 3, onStep: (r) => { records.push(r); },
    });
    const weights = model.toNamedTensors();
    model.dispose(); optimizer.dispose();
    return { records, weights };
  }

  for (const tied of [true, false]) {
    it(`recompute + query blocks of 4 + loss chunks of 5 give UNCHUNKED's losses, gradient norms and weights (${tied ? 'tied' : 'untied'} head)`, async () => {
      const base = await run(UNCHUNKED, tied), small = await run({ recompute: true, attentionQueryBlock: 4, lossChunk: 5 }, tied);
      base.records.forEach((r, i) => {
        expect(Math.abs(small.records[i].loss - r.loss)).toBeLessThan(1e-5 * r.loss);
        expect(Math.abs(small.records[i].grad_norm - r.grad_norm)).toBeLessThan(1e-5 * r.grad_norm);
      });
      for (const [name, t] of base.weights) {
        const u = small.weights.get(name)!.data;
        let diff = 0;
        for (let i = 0; i < t.data.length; i++) diff = Math.max(diff, Math.abs(t.data[i] - u[i]));
        expect(diff, name).toBeLessThan(1e-5);
      }
    });
  }
});
