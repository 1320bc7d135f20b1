// Shared PyTorch float64 reference cases (shared/cases/kd_losses.json) and the API's
// contracts: refusals, registry, masking, memory. Property tests: losses-props.test.ts.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { maskedSum } from '../lib/losses/distill.js';
import {
  LOSS_NAMES,
  crossEntropy,
  distillationLoss,
  distillationLossNormalized,
  forwardKL,
  gatherLastAxis,
  getLoss,
  jsd,
  reverseKL,
  type DistillOptions,
  type TeacherSignal,
  type TopKMode,
} from '../lib/losses/index.js';
import { sharedCases } from './shared-cases.js';

interface Case { name: string; [key: string]: unknown }
const CASES: Case[] = sharedCases('kd_losses.json').cases;
const shared = (name: string): Record<string, any> => { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON fixture
  const c = CASES.find((x) => x.name === name);
  if (!c) throw new Error(`missing shared case ${name}`);
  return c;
};

/** |got − want| ≤ rel·|want| (+ a tiny absolute slack for values at 0). */
function expectClose(got: number, want: number, rel = 1e-5, abs = 1e-7): void {
  expect(Number.isFinite(got)).toBe(true);
  expect(Math.abs(got - want)).toBeLessThanOrEqual(rel * Math.abs(want) + abs);
}
const num = (t: tf.Tensor): number => t.dataSync()[0];
/** The JSON writes −∞ as "-inf" (Python's spelling). */
const parseLogProb = (x: string): number => (x === '-inf' ? -Infinity : Number(x));
const rows = (probs: number[], n = 1): tf.Tensor2D => tf.tensor2d(Array.from({ length: n }, () => probs.map(Math.log)));

/** Teacher signal of full logits rows z [N][V] at τ: top-k ids, z − max, exact logZ. */
function signalOf(z: number[][], k: number, tau: number): TeacherSignal {
  const ids: number[][] = [];
  const vals: number[][] = [];
  const logZ: number[] = [];
  for (const row of z) {
    const order = row.map((_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
    const max = Math.max(...row);
    ids.push(order);
    vals.push(order.map((i) => row[i] - max));
    const m = max / tau;
    logZ.push(m + Math.log(row.reduce((s, v) => s + Math.exp(v / tau - m), 0)) - m);
  }
  return { ids: tf.tensor2d(ids, undefined, 'int32'), logits: tf.tensor2d(vals), logZ: tf.tensor1d(logZ) };
}

const opts = (o: Partial<DistillOptions> & { realVocab: number }): DistillOptions => ({
  alpha: 1, temperature: 1, loss: 'forward_kl', mode: 'tail', ...o,
});

describe.each(['wasm', 'cpu'] as const)('losses on %s: shared reference cases', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('per_token_kl_not_mean_over_vocab', () => {
    const c = shared('per_token_kl_not_mean_over_vocab');
    const n: number = c.positions;
    const perPos = forwardKL(rows(c.teacher_probs, n), rows(c.student_probs, n));
    expect(perPos.shape).toEqual([n]);
    perPos.dataSync().forEach((v) => expectClose(v, c.expected_mean_kl_per_position));
    // Through distillationLoss: the mean over positions, not over positions × vocab.
    const v = c.teacher_probs.length;
    for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
      const sig = signalOf(Array.from({ length: n }, () => c.teacher_probs.map(Math.log)), v, 1);
      const r = distillationLoss(rows(c.student_probs, n), sig, tf.tensor1d([0, 1, 2], 'int32'), opts({ realVocab: v, mode }));
      expectClose(num(r.total), c.expected_mean_kl_per_position);
      expect(r.tokens).toBe(n);
      expect(Math.abs(num(r.total) - c.wrong_values.mean_over_elements)).toBeGreaterThan(0.1);
    }
  });

  it('temperature_reaches_both_sides_and_t_squared', () => {
    const c = shared('temperature_reaches_both_sides_and_t_squared');
    const T: number = c.T;
    for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
      const r = distillationLoss(tf.tensor2d([c.student_logits]), signalOf([c.teacher_logits], 2, T), tf.tensor1d([0], 'int32'),
        opts({ realVocab: 2, temperature: T, mode }));
      expectClose(num(r.kdSum) / (T * T), c.expected_kl_at_T);
      expectClose(num(r.total), c.expected_kd_term);
    }
  });

  it('mask_ignored_positions (and all-masked: 0 with a finite zero gradient)', () => {
    const c = shared('mask_ignored_positions');
    const targets = tf.tensor1d(c.labels, 'int32');
    const live = tf.notEqual(targets, -100) as tf.Tensor1D;
    const count = c.labels.filter((l: number) => l !== -100).length;
    expectClose(num(maskedSum(tf.tensor1d(c.per_position_kd), live)) / count, c.expected_mean);
    // End to end: ignored positions add nothing, whatever their logits.
    const V = 8;
    const s = tf.randomNormal([4, V], 0, 2, 'float32', 1) as tf.Tensor2D;
    const z = (tf.randomNormal([4, V], 0, 2, 'float32', 2).arraySync() as number[][]);
    const o = opts({ realVocab: V, alpha: 0.5, temperature: 2 });
    const full = distillationLoss(s, signalOf(z, 3, 2), targets, o);
    const liveRows = [1, 2];
    const sub = distillationLoss(tf.gather(s, liveRows), signalOf(liveRows.map((i) => z[i]), 3, 2), tf.tensor1d([5, 7], 'int32'), o);
    expectClose(num(full.total), num(sub.total), 1e-6);
    expect(full.tokens).toBe(2);
    // All masked: total 0, gradient exactly zero and finite.
    const none = tf.fill([4], -100, 'int32') as tf.Tensor1D;
    const sig = signalOf(z, 3, 2);
    for (const alpha of [0, 0.5, 1]) {
      const r = distillationLoss(s, sig, none, { ...o, alpha });
      expect(num(r.total)).toBe(c.all_masked_expected);
      expect(r.tokens).toBe(0);
      const g = tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, sig, none, { ...o, alpha }).total)(s);
      expect(Array.from(g.dataSync()).every((v) => v === 0)).toBe(true);
    }
  });

  it('minus_inf_logprobs_give_no_nan (value and gradient)', () => {
    const c = shared('minus_inf_logprobs_give_no_nan');
    const lp = tf.tensor2d([c.teacher_logprobs.map(parseLogProb)]);
    const lq = tf.tensor2d([c.student_logprobs.map(parseLogProb)]);
    expect(lp.dataSync()[2]).toBe(-Infinity);
    expectClose(num(forwardKL(lp, lq)), c.expected_kl);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => forwardKL(a as tf.Tensor2D, b as tf.Tensor2D).sum())([lp, lq]);
    for (const g of grads) expect(Array.from(g.dataSync()).every(Number.isFinite)).toBe(true);
    // The other divergences too: both sides −inf is zero mass on both sides.
    for (const name of LOSS_NAMES) {
      const f = (a: tf.Tensor, b: tf.Tensor) => getLoss(name)(a as tf.Tensor2D, b as tf.Tensor2D).sum();
      expect(Number.isFinite(num(f(lp, lq)))).toBe(true);
      for (const g of tf.grads(f)([lp, lq])) expect(Array.from(g.dataSync()).every(Number.isFinite)).toBe(true);
    }
  });

  it('topk_tail_and_renormalize (both modes, never negative)', () => {
    const c = shared('topk_tail_and_renormalize');
    const z = [c.teacher_probs.map(Math.log)];
    const s = tf.tensor2d([c.student_probs.map(Math.log)]);
    const want: Record<TopKMode, number> = { tail: c.expected_tail_mode, renormalize: c.expected_renormalize_mode };
    for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
      const r = distillationLoss(s, signalOf(z, c.k, 1), tf.tensor1d([0], 'int32'), opts({ realVocab: 4, mode }));
      expectClose(num(r.total), want[mode]);
      expect(num(r.total)).toBeGreaterThan(0);
    }
    const full = distillationLoss(s, signalOf(z, 4, 1), tf.tensor1d([0], 'int32'), opts({ realVocab: 4 }));
    expectClose(num(full.total), c.full_kl);
  });

  it('generalized_jsd_beta: β convention, refusals at 0 and 1, behaviour near the ends', () => {
    const c = shared('generalized_jsd_beta');
    const p = rows(c.teacher_probs);
    const q = rows(c.student_probs);
    for (const [beta, want] of Object.entries(c.expected as Record<string, number>)) expectClose(num(jsd(p, q, { beta: Number(beta) })), want);
    for (const beta of c.refused as number[]) {
      expect(() => jsd(p, q, { beta })).toThrow(/forward_kl.*reverse_kl/);
      expect(() => distillationLoss(tf.tensor2d([[0, 0, 0]]), signalOf([[1, 2, 3]], 3, 1), tf.tensor1d([0], 'int32'),
        opts({ realVocab: 3, loss: 'jsd', beta }))).toThrow(/beta must be in \(0, 1\)/);
    }
    expectClose(num(forwardKL(p, q)), c.for_reference.forward_kl);
    expectClose(num(reverseKL(p, q)), c.for_reference.reverse_kl);
    // Documented: JSD(β) ≈ β·KL(p‖q) as β → 0 and ≈ (1−β)·KL(q‖p) as β → 1.
    expectClose(num(jsd(p, q, { beta: 1e-3 })) / 1e-3, c.for_reference.forward_kl, 1e-2);
    expectClose(num(jsd(p, q, { beta: 1 - 1e-3 })) / 1e-3, c.for_reference.reverse_kl, 1e-2);
    expectClose(num(jsd(p, q)), num(jsd(q, p)), 1e-6); // β = 0.5 is symmetric
  });

  it('seed_loss_alpha_0.8_T_3_full_vocab (and the normalizer variant across micro-batches)', () => {
    const c = shared('seed_loss_alpha_0.8_T_3_full_vocab');
    const V = 6;
    const s = tf.tensor2d((c.student_logits as number[][][]).flat());
    const z = (c.teacher_logits as number[][][]).flat();
    const targets = tf.tensor1d((c.target_ids as number[][]).flat(), 'int32');
    for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
      const o = opts({ realVocab: V, alpha: c.alpha, temperature: c.T, mode });
      const r = distillationLoss(s, signalOf(z, c.k, c.T), targets, o);
      expectClose(num(r.total), c.expected_total);
      expectClose(num(r.kdSum) / r.tokens, c.expected_mean_kd_term);
      expectClose(num(r.ceSum) / r.tokens, c.expected_mean_ce);
      // Two micro-batches normalised by the step's token count sum to the same total.
      const halves = [[0, 4], [4, 8]].map(([a, b]) =>
        distillationLossNormalized(s.slice([a, 0], [b - a, V]), signalOf(z.slice(a, b), c.k, c.T), targets.slice(a, b - a), o, r.tokens));
      expectClose(num(halves[0].total) + num(halves[1].total), c.expected_total);
    }
    const ce = crossEntropy(s, targets, V).sum();
    expectClose(num(ce) / 5, c.expected_mean_ce);
  });
});

describe('losses on wasm: API contracts', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('getLoss lists the valid names and suggests the closest', () => {
    expect(getLoss('jsd')).toBe(jsd);
    expect(() => getLoss('fowrard_kl')).toThrow(/valid: forward_kl, reverse_kl, jsd, tvd, skew_kl\. Did you mean 'forward_kl'\?/);
    expect(() => getLoss('skew-kl')).toThrow(/Did you mean 'skew_kl'/);
  });

  it('α = 0 needs no signal and gives plain CE; α = 1 skips CE', () => {
    const s = tf.randomNormal([5, 7], 0, 1, 'float32', 3) as tf.Tensor2D;
    const t = tf.tensor1d([1, -100, 6, 0, 2], 'int32');
    const r = distillationLoss(s, undefined, t, opts({ realVocab: 7, alpha: 0 }));
    expectClose(num(r.total), num(crossEntropy(s, t, 7).sum()) / 4, 1e-6);
    expect(num(r.kdSum)).toBe(0);
    expect(() => distillationLoss(s, undefined, t, opts({ realVocab: 7, alpha: 0.5 }))).toThrow(/needs a teacher signal/);
    const z = tf.randomNormal([5, 7], 0, 1, 'float32', 4).arraySync() as number[][];
    expect(num(distillationLoss(s, signalOf(z, 3, 2), t, opts({ realVocab: 7, temperature: 2 })).ceSum)).toBe(0);
  });

  it('refuses bad shapes, targets, options and a tail mode without logZ, naming what is wrong', () => {
    const s = tf.zeros([2, 5]) as tf.Tensor2D;
    const sig = signalOf([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], 2, 1);
    const t = tf.tensor1d([0, 1], 'int32');
    const o = opts({ realVocab: 5 });
    expect(() => distillationLoss(s, sig, tf.tensor1d([0, 5], 'int32'), o)).toThrow(/target id 5 is outside the real vocab \[0, 5\)/);
    expect(() => distillationLoss(s, sig, tf.tensor1d([0, 1, 2], 'int32'), o)).toThrow(/targets \[3\] must be \[N\] with N = 2/);
    expect(() => distillationLoss(s, { ids: sig.ids, logits: sig.logits }, t, o)).toThrow(/'tail' mode needs the teacher's logZ/);
    expect(() => distillationLoss(s, { ...sig, logits: tf.zeros([2, 3]) as tf.Tensor2D }, t, o)).toThrow(/ids \[2,2\] and logits \[2,3\]/);
    expect(() => distillationLoss(s, sig, t, { ...o, realVocab: 6 })).toThrow(/realVocab must be an integer in \[1, 5\]/);
    expect(() => distillationLoss(s, sig, t, { ...o, alpha: 1.5 })).toThrow(/alpha must be in \[0, 1\]/);
    expect(() => distillationLoss(s, sig, t, { ...o, loss: 'kl' as 'forward_kl' })).toThrow(/unknown loss 'kl'/);
    expect(() => distillationLossNormalized(s, sig, t, o, 0)).toThrow(/normalizer is 0/);
  });

  it('gatherLastAxis gathers per row and scatters its gradient (duplicates add) on wasm', () => {
    const x = tf.tensor2d([[0, 1, 2, 3, 4, 5, 6, 7], [10, 11, 12, 13, 14, 15, 16, 17], [20, 21, 22, 23, 24, 25, 26, 27]]);
    const ids = tf.tensor2d([[7, 0], [3, 3], [1, 6]], undefined, 'int32');
    expect(gatherLastAxis(x, ids).arraySync()).toEqual([[7, 0], [13, 13], [21, 26]]);
    const w = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const g = tf.grad((a: tf.Tensor) => gatherLastAxis(a as tf.Tensor2D, ids).mul(w).sum())(x).arraySync() as number[][];
    expect(g[0]).toEqual([2, 0, 0, 0, 0, 0, 0, 1]);
    expect(g[1]).toEqual([0, 0, 0, 7, 0, 0, 0, 0]);
    expect(g[2]).toEqual([0, 5, 0, 0, 0, 0, 6, 0]);
  });

  it('leaks no tensors (forward, and forward + backward)', () => {
    const V = 12;
    const s = tf.randomNormal([6, V + 2], 0, 2, 'float32', 5) as tf.Tensor2D;
    const z = tf.randomNormal([6, V], 0, 2, 'float32', 6).arraySync() as number[][];
    const sig = signalOf(z, 4, 2);
    const t = tf.tensor1d([1, 2, -100, 3, 4, 5], 'int32');
    const before = tf.memory().numTensors;
    for (const loss of LOSS_NAMES) {
      for (const mode of ['tail', 'renormalize'] as TopKMode[]) {
        for (const [alpha, temperature] of [[0, 1], [0.5, 1], [0.5, 2], [1, 2]]) {
          const o = opts({ realVocab: V, loss, mode, alpha, temperature });
          const r = distillationLoss(s, sig, t, o);
          tf.dispose([r.total, r.kdSum, r.ceSum]);
          tf.grad((x: tf.Tensor) => distillationLoss(x as tf.Tensor2D, sig, t, o).total)(s).dispose();
        }
      }
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
