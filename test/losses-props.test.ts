// Property tests of lib/losses against a dense float64 reference written here in plain JS:
// many small random cases (shapes, k, τ, mode, loss), gradients by finite differences of
// the reference, padded vocab, identity, non-negativity.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { mulberry32 } from '../lib/util/random.js';
import {
  LOSS_NAMES,
  LOSSES,
  TAIL_FLOOR,
  distillationLoss,
  type DistillOptions,
  type LossName,
  type TeacherSignal,
  type TopKMode,
} from '../lib/losses/index.js';

// ---- float64 reference ----------------------------------------------------------------

/** Deterministic PRNG (mulberry32) so that failures reproduce. */
const rng = mulberry32;
const gauss = (r: () => number): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());

const lse = (x: number[]): number => {
  const m = Math.max(...x);
  return m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
};
const logSoftmax = (x: number[]): number[] => {
  const z = lse(x);
  return x.map((v) => v - z);
};
const topIds = (z: number[], k: number): number[] => z.map((_, i) => i).sort((a, b) => z[b] - z[a] || a - b).slice(0, k);

function kl(p: number[], q: number[]): number {
  return p.reduce((s, pb, b) => (pb > 0 ? s + pb * (Math.log(pb) - Math.log(q[b])) : s), 0);
}
const mix = (p: number[], q: number[], w: number): number[] => p.map((pb, b) => w * pb + (1 - w) * q[b]);

/** The divergences of DESIGN §4 on probability vectors, float64. */
function divergence64(name: LossName, p: number[], q: number[], beta = 0.5, lambda = 0.1): number {
  switch (name) {
    case 'forward_kl': return kl(p, q);
    case 'reverse_kl': return kl(q, p);
    case 'jsd': return beta * kl(p, mix(p, q, beta)) + (1 - beta) * kl(q, mix(p, q, beta));
    case 'tvd': return 0.5 * p.reduce((s, pb, b) => s + Math.abs(pb - q[b]), 0);
    case 'skew_kl': return kl(p, mix(p, q, lambda));
  }
}

/** Teacher and student bucket probabilities of one position, float64 (DESIGN §4). */
function buckets64(s: number[], z: number[], tau: number, k: number, mode: TopKMode): { p: number[]; q: number[] } {
  const ids = topIds(z, k);
  const lp = logSoftmax(z.map((v) => v / tau));
  const lq = logSoftmax(s.map((v) => v / tau));
  const q = ids.map((i) => Math.exp(lq[i]));
  if (mode === 'renormalize') return { p: softmax(ids.map((i) => z[i] / tau)), q };
  const p = ids.map((i) => Math.exp(lp[i]));
  const tail = (x: number[]) => Math.max(1 - x.reduce((a, b) => a + b, 0), TAIL_FLOOR);
  return { p: [...p, tail(p)], q: [...q, tail(q)] };
}
const softmax = (x: number[]): number[] => logSoftmax(x).map(Math.exp);

interface Problem { s: number[][]; z: number[][]; targets: number[]; k: number; realVocab: number }

/** total of distillationLoss in float64: (1/N) Σ_t [α·τ²·KD_t + (1−α)·CE_t]. */
function total64(pr: Problem, o: DistillOptions): number {
  let sum = 0;
  let n = 0;
  pr.s.forEach((row, t) => {
    if (pr.targets[t] === -100) return;
    const real = row.slice(0, o.realVocab);
    const { p, q } = buckets64(real, pr.z[t], o.temperature, pr.k, o.mode);
    const kd = o.alpha > 0 ? divergence64(o.loss, p, q, o.beta, o.lambda) : 0;
    const ce = -logSoftmax(real)[pr.targets[t]];
    sum += o.alpha * o.temperature ** 2 * kd + (1 - o.alpha) * ce;
    n++;
  });
  return n ? sum / n : 0;
}

// ---- fp32 implementation under test ---------------------------------------------------

function signalOf(z: number[][], k: number, tau: number): TeacherSignal {
  const ids = z.map((row) => topIds(row, k));
  return {
    ids: tf.tensor2d(ids, [z.length, k], 'int32'),
    logits: tf.tensor2d(z.map((row, t) => ids[t].map((i) => row[i] - Math.max(...row))), [z.length, k]),
    logZ: tf.tensor1d(z.map((row) => lse(row.map((v) => v / tau)) - Math.max(...row) / tau)),
  };
}
function total32(pr: Problem, o: DistillOptions, s = pr.s): number {
  return tf.tidy(() => {
    const r = distillationLoss(tf.tensor2d(s), signalOf(pr.z, pr.k, o.temperature), tf.tensor1d(pr.targets, 'int32'), o);
    return r.total.dataSync()[0];
  });
}

function randomProblem(r: () => number, n: number, v: number, k: number, pad: number, scale: number): Problem {
  const mat = (cols: number) => Array.from({ length: n }, () => Array.from({ length: cols }, () => scale * gauss(r)));
  const targets = Array.from({ length: n }, () => (r() < 0.2 ? -100 : Math.floor(r() * v)));
  return { s: mat(v + pad), z: mat(v), targets, k, realVocab: v };
}
const MODES: TopKMode[] = ['tail', 'renormalize'];
const close = (got: number, want: number, rel: number, abs: number) => Math.abs(got - want) <= rel * Math.abs(want) + abs;

describe.each(['wasm', 'cpu'] as const)('loss properties on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('k = V: every divergence and both modes match the dense float64 full-vocab loss, ≥ 0', () => {
    const r = rng(1);
    const bad: string[] = [];
    for (let c = 0; c < 60; c++) {
      const v = 2 + Math.floor(r() * 14);
      const pr = randomProblem(r, 1 + Math.floor(r() * 4), v, v, 0, 0.5 + 3 * r());
      const o: DistillOptions = {
        alpha: 1, temperature: 0.5 + 3.5 * r(), loss: LOSS_NAMES[c % LOSS_NAMES.length], mode: MODES[(c >> 1) % 2],
        realVocab: v, beta: 0.05 + 0.9 * r(), lambda: 0.9 * r(),
      };
      // Dense reference: the divergence over the full vocab, no buckets.
      let want = 0;
      let n = 0;
      pr.s.forEach((row, t) => {
        if (pr.targets[t] === -100) return;
        const p = softmax(pr.z[t].map((x) => x / o.temperature));
        const q = softmax(row.map((x) => x / o.temperature));
        want += o.temperature ** 2 * divergence64(o.loss, p, q, o.beta, o.lambda);
        n++;
      });
      want = n ? want / n : 0;
      const got = total32(pr, o);
      if (!close(got, want, 1e-5, 1e-6) || got < -1e-6) bad.push(`case ${c} ${o.loss}/${o.mode}: got ${got}, want ${want}`);
    }
    expect(bad).toEqual([]);
  });

  it('k < V: both modes and every loss match the float64 bucket reference; padded vocab gets no mass', () => {
    const r = rng(2);
    const bad: string[] = [];
    for (let c = 0; c < 60; c++) {
      const v = 3 + Math.floor(r() * 20);
      const pr = randomProblem(r, 1 + Math.floor(r() * 5), v, 1 + Math.floor(r() * (v - 1)), 3, 0.5 + 2 * r());
      pr.s.forEach((row) => row.fill(1e4, v)); // padded rows with huge logits
      const o: DistillOptions = {
        alpha: r() < 0.3 ? 1 : r(), temperature: [1, 0.7, 2, 3.5][c % 4], loss: LOSS_NAMES[c % LOSS_NAMES.length],
        mode: MODES[(c >> 2) % 2], realVocab: v, beta: 0.05 + 0.9 * r(), lambda: 0.9 * r(),
      };
      const want = total64(pr, o);
      const got = total32(pr, o);
      const unpadded = total32(pr, o, pr.s.map((row) => row.slice(0, v)));
      if (!close(got, want, 1e-5, 1e-6)) bad.push(`case ${c} ${o.loss}/${o.mode}: got ${got}, want ${want}`);
      if (!close(got, unpadded, 1e-6, 1e-7)) bad.push(`case ${c}: padded ${got} ≠ unpadded ${unpadded}`);
    }
    expect(bad).toEqual([]);
  });

  it('identical inputs give 0 for every divergence; tail mode with k = V equals full forward KL', () => {
    const r = rng(3);
    const logP = tf.tensor2d(Array.from({ length: 6 }, () => logSoftmax(Array.from({ length: 9 }, () => 3 * gauss(r)))));
    for (const name of LOSS_NAMES) {
      const d = LOSSES[name](logP, logP, { beta: 0.3, lambda: 0.2 }).dataSync();
      expect(Math.max(...Array.from(d, Math.abs))).toBeLessThan(1e-6);
    }
    // Student = teacher through the whole pipeline, k < V, tail mode: 0 too.
    const pr = randomProblem(r, 4, 10, 4, 0, 2);
    for (const loss of LOSS_NAMES) {
      expect(Math.abs(total32({ ...pr, s: pr.z }, { alpha: 1, temperature: 2, loss, mode: 'tail', realVocab: 10 }))).toBeLessThan(1e-6);
    }
  });

  it('gradients are finite and match finite differences of the float64 reference', () => {
    const r = rng(4);
    const pr = randomProblem(r, 3, 7, 3, 2, 1.5);
    pr.targets = [topIds(pr.z[0], pr.k)[0], -100, 5]; // row 0: the target is also a teacher top-k id
    // τ = 2: KD and CE at two temperatures; τ = 1: one shared softmax (target may repeat an id).
    for (const [c, loss] of LOSS_NAMES.entries()) {
      for (const [m, mode] of MODES.entries()) {
        const temperature = (c + m) % 2 ? 1 : 2;
        const o: DistillOptions = { alpha: 0.7, temperature, loss, mode, realVocab: 7, beta: 0.3, lambda: 0.2 };
        const sig = signalOf(pr.z, pr.k, o.temperature);
        const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, sig, tf.tensor1d(pr.targets, 'int32'), o).total)(
          tf.tensor2d(pr.s)).arraySync() as number[][];
        const h = 1e-6;
        pr.s.forEach((row, i) => row.forEach((x, j) => {
          const at = (d: number) => total64({ ...pr, s: pr.s.map((rw, a) => rw.map((y, b) => (a === i && b === j ? x + d : y))) }, o);
          const fd = (at(h) - at(-h)) / (2 * h);
          expect(Number.isFinite(g[i][j])).toBe(true);
          expect(Math.abs(g[i][j] - fd), `${loss}/${mode}/τ=${temperature} ∂/∂s[${i}][${j}]: ${g[i][j]} vs ${fd}`).toBeLessThanOrEqual(1e-4 * Math.abs(fd) + 2e-6);
        }));
      }
    }
  });

  it('a teacher with (almost) no tail and a student with a big one: finite value and gradient', () => {
    const z = [[30, 29, 0, -1, -2, -3]]; // teacher tail ~1e-13 at k = 2
    const pr: Problem = { s: [[0, 0, 5, 5, 5, 5]], z, targets: [0], k: 2, realVocab: 6 };
    for (const loss of LOSS_NAMES) {
      const o: DistillOptions = { alpha: 1, temperature: 1, loss, mode: 'tail', realVocab: 6 };
      const got = total32(pr, o);
      expect(close(got, total64(pr, o), 1e-4, 2e-6)).toBe(true);
      const sig = signalOf(z, 2, 1);
      const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, sig, tf.tensor1d([0], 'int32'), o).total)(tf.tensor2d(pr.s));
      expect(Array.from(g.dataSync()).every(Number.isFinite)).toBe(true);
    }
  });
});
