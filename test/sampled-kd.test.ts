/**
 * Random-sampling KD (Anshumann et al., ACL 2025): averaged over many seeds, the gradient of the
 * sampled loss with respect to the student logits equals the full-vocabulary forward-KL gradient
 * (1/τ)(q_τ − p_τ)·τ² within its sampling error — at τ = τg (weights 1/n) and at τ ≠ τg
 * (importance weights). The reference is float64 in the test; the loss is kd's distillationLoss.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { distillationLoss } from '../lib/losses/index.js';
import { inverseCdfDraw, sampleUniforms, sampledWeights, sortDraws } from '../lib/logits/sampling.js';

const V = 40, P = 3, n = 12;

/** A fixed teacher: z − max z [P·V] and log-normalisers at τ. */
function teacher() {
  const s = new Float32Array(P * V);
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < V; i++) s[p * V + i] = Math.fround(-Math.abs(Math.sin(1.7 * i + p)) * 6 - 0.05 * i);
    let m = -Infinity;
    for (let i = 0; i < V; i++) m = Math.max(m, s[p * V + i]);
    for (let i = 0; i < V; i++) s[p * V + i] = Math.fround(s[p * V + i] - m);
  }
  const logZ = (tau: number) => Float32Array.from({ length: P }, (_, p) => {
    let z = 0;
    for (let i = 0; i < V; i++) z += Math.exp(s[p * V + i] / tau);
    return Math.log(z);
  });
  return { s, logZ };
}
const student = Float32Array.from({ length: P * V }, (_, i) => Math.cos(0.9 * i) * 2);

/** Full-vocabulary gradient of τ²·Σ_t KL(p_τ ‖ q_τ) in the student logits, float64: τ·(q_τ − p_τ). */
function fullGradient(s: Float32Array, tau: number): Float64Array {
  const g = new Float64Array(P * V);
  for (let p = 0; p < P; p++) {
    const pt = Array.from({ length: V }, (_, i) => Math.exp(s[p * V + i] / tau));
    const qt = Array.from({ length: V }, (_, i) => Math.exp(student[p * V + i] / tau));
    const zp = pt.reduce((a, b) => a + b), zq = qt.reduce((a, b) => a + b);
    for (let i = 0; i < V; i++) g[p * V + i] = tau * (qt[i] / zq - pt[i] / zp);
  }
  return g;
}

/** kd's sampled loss gradient (α = 1, token sum) for one seed's draws. */
function sampledGradient(seed: number, tau: number, tauGen: number, t: ReturnType<typeof teacher>): Float32Array {
  const ids = new Int32Array(P * n), vals = new Float32Array(P * n);
  for (let p = 0; p < P; p++) {
    const u = sampleUniforms(seed, p, 1, n), sp = t.s.subarray(p * V, (p + 1) * V);
    for (let j = 0; j < n; j++) { ids[p * n + j] = inverseCdfDraw(sp, tauGen, u[j]); vals[p * n + j] = sp[ids[p * n + j]]; }
  }
  sortDraws(ids, vals, n);
  const logZTau = t.logZ(tau), weights = sampledWeights(vals, n, tau, tauGen, logZTau, t.logZ(tauGen));
  return tf.tidy(() => {
    const signal = { ids: tf.tensor2d(ids, [P, n], 'int32'), logits: tf.tensor2d(vals, [P, n]), logZ: tf.tensor1d(logZTau), weights: tf.tensor2d(weights, [P, n]) };
    const targets = tf.tensor1d([1, 2, 3], 'int32');
    const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, signal, targets, { alpha: 1, temperature: tau, loss: 'forward_kl', mode: 'tail', realVocab: V }).total.mul(P));
    return g(tf.tensor2d(student, [P, V])).dataSync() as Float32Array;
  });
}

describe('sampled KD estimator', () => {
  beforeAll(() => initBackend('cpu'));
  const t = teacher();
  for (const [tau, tauGen] of [[1, 1], [2, 1], [1, 2]]) {
    it(`is unbiased: mean gradient over 3000 seeds = full KD gradient (τ = ${tau}, τg = ${tauGen})`, async () => {
      const M = 3000, sum = new Float64Array(P * V), sq = new Float64Array(P * V);
      for (let seed = 0; seed < M; seed++) {
        const g = sampledGradient(seed, tau, tauGen, t);
        for (let i = 0; i < g.length; i++) { sum[i] += g[i]; sq[i] += g[i] * g[i]; }
      }
      const want = fullGradient(t.s, tau);
      let worst = 0, exceeded = 0;
      for (let i = 0; i < want.length; i++) {
        const mean = sum[i] / M, se = Math.sqrt(Math.max(sq[i] / M - mean * mean, 0) / M);
        const z = Math.abs(mean - want[i]) / Math.max(se, 1e-7);
        worst = Math.max(worst, z);
        if (z > 3) exceeded++;
      }
      // 120 coordinates: under unbiasedness |z| > 3 happens for ~0.3 % of them; a biased
      // estimator (e.g. renormalised top-k) is off by many standard errors.
      expect(exceeded).toBeLessThanOrEqual(2);
      expect(worst).toBeLessThan(5);
    }, 120_000);
  }

  it('top-12 renormalised (the biased cache) misses the full gradient by many standard errors', async () => {
    const g = tf.tidy(() => {
      const ids = new Int32Array(P * n), vals = new Float32Array(P * n);
      for (let p = 0; p < P; p++) {
        const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => t.s[p * V + b] - t.s[p * V + a]).slice(0, n);
        order.forEach((id, j) => { ids[p * n + j] = id; vals[p * n + j] = t.s[p * V + id]; });
      }
      const signal = { ids: tf.tensor2d(ids, [P, n], 'int32'), logits: tf.tensor2d(vals, [P, n]) };
      const f = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, signal, tf.tensor1d([1, 2, 3], 'int32'), { alpha: 1, temperature: 1, loss: 'forward_kl', mode: 'renormalize', realVocab: V }).total.mul(P));
      return f(tf.tensor2d(student, [P, V])).dataSync() as Float32Array;
    });
    const want = fullGradient(t.s, 1);
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(g[i] - want[i]));
    expect(maxDiff).toBeGreaterThan(0.01);
  });

  it('at τ = τg every weight is 1/n; otherwise weights average to 1 over the draws', () => {
    expect(Array.from(sampledWeights(Float32Array.from([0, -1]), 2, 1, 1, Float32Array.of(0), Float32Array.of(0)))).toEqual([0.5, 0.5]);
    const w = sampledWeights(Float32Array.from([0, -1]), 2, 2, 1, Float32Array.of(Math.log(1 + Math.exp(-0.5))), Float32Array.of(Math.log(1 + Math.exp(-1))));
    const p2 = [1 / (1 + Math.exp(-0.5)), Math.exp(-0.5) / (1 + Math.exp(-0.5))], p1 = [1 / (1 + Math.exp(-1)), Math.exp(-1) / (1 + Math.exp(-1))];
    expect(w[0]).toBeCloseTo(p2[0] / p1[0] / 2, 6);
    expect(w[1]).toBeCloseTo(p2[1] / p1[1] / 2, 6);
  });

  it('refuses divergences other than forward KL on sampled signals', () => {
    const signal = { ids: tf.tensor2d([[0, 1]], [1, 2], 'int32'), logits: tf.tensor2d([[0, -1]]), logZ: tf.tensor1d([0.3]), weights: tf.tensor2d([[0.5, 0.5]]) };
    expect(() => distillationLoss(tf.zeros([1, 4]) as tf.Tensor2D, signal, tf.tensor1d([1], 'int32'), { alpha: 1, temperature: 1, loss: 'reverse_kl', mode: 'tail', realVocab: 4 }))
      .toThrow(/loss 'reverse_kl' needs the teacher's top-k; a sampled dataset's draws estimate forward_kl only/);
  });
});
