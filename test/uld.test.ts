/**
 * ULD (lib/losses/uld.ts) against an independent float64 reference written here: the value per
 * position (tail bucket and renormalised top-k, k < V and k = V, student vocabulary larger and
 * smaller than k, padded student columns, τ ≠ 1) and its gradient in the student logits (tf.grad
 * against central finite differences of the reference).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { gatherRows } from '../lib/losses/gather.js';
import { uldPerPosition, uldSum } from '../lib/losses/uld.js';

const softmax64 = (z: ArrayLike<number>, tau: number): number[] => {
  const m = Math.max(...Array.from(z));
  const e = Array.from(z, (x) => Math.exp((x - m) / tau));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};
const desc = (x: number[]) => [...x].sort((a, b) => b - a);

/** ULD of the module comment, float64, from the full teacher logits z [V_t] and student logits s [V_s]. */
function reference(s: ArrayLike<number>, z: ArrayLike<number>, k: number, tau: number, mode: 'tail' | 'renormalize'): number {
  const q = desc(softmax64(s, tau)), pAll = desc(softmax64(z, tau));
  let p = pAll.slice(0, k);
  const tailP = mode === 'tail' ? 1 - p.reduce((a, b) => a + b, 0) : 0;
  if (mode === 'renormalize') { const t = p.reduce((a, b) => a + b, 0); p = p.map((x) => x / t); }
  let d = 0;
  for (let i = 0; i < k; i++) d += Math.abs((q[i] ?? 0) - p[i]);
  return d + Math.abs(q.slice(k).reduce((a, b) => a + b, 0) - tailP);
}

/** The plain definition for a full teacher: Σ_i |q_(i) − p_(i)|, the shorter vector zero-padded. */
function fullUld(s: ArrayLike<number>, z: ArrayLike<number>, tau: number): number {
  const q = desc(softmax64(s, tau)), p = desc(softmax64(z, tau));
  let d = 0;
  for (let i = 0; i < Math.max(q.length, p.length); i++) d += Math.abs((q[i] ?? 0) - (p[i] ?? 0));
  return d;
}

/** What kd stores for the teacher: top-k z − max z (descending) and log Z_τ. */
function stored(z: number[], k: number, tau: number): { logits: number[]; logZ: number } {
  const m = Math.max(...z), sorted = desc(z.map((x) => x - m));
  const logZ = Math.log(z.reduce((a, x) => a + Math.exp((x - m) / tau), 0));
  return { logits: sorted.slice(0, k), logZ };
}

/** N rows of pseudo-random logits of width V (distinct values, no ties). */
function rows(n: number, v: number, seed: number, scale: number): number[][] {
  return Array.from({ length: n }, (_, r) => Array.from({ length: v }, (_, i) => scale * Math.sin(seed * 12.9898 + r * 78.233 + i * 3.1 + 0.37 * i * i)));
}

function kdUld(S: number[][], Z: number[][], k: number, tau: number, mode: 'tail' | 'renormalize', realVocab = S[0].length, pad = 0): Float32Array {
  return tf.tidy(() => {
    const t = Z.map((z) => stored(z, k, tau));
    const s = tf.tensor2d(S.map((r) => [...r, ...Array(pad).fill(50)])); // padded columns get no mass, even with large logits
    const teacher = { logits: tf.tensor2d(t.map((x) => x.logits)), logZ: tf.tensor1d(t.map((x) => x.logZ)) };
    return uldPerPosition(s as tf.Tensor2D, teacher, tau, mode, realVocab).dataSync() as Float32Array;
  });
}

describe.each(['wasm', 'cpu'] as const)('ULD loss on %s', (backend) => {
  beforeAll(() => initBackend(backend));

  const cases: [string, number, number, number, number, 'tail' | 'renormalize'][] = [
    ['V_s 40 > V_t 25, k 8, tail', 40, 25, 8, 1, 'tail'],
    ['V_s 40 > V_t 25, k 8, τ 2, tail', 40, 25, 8, 2, 'tail'],
    ['V_s 12 < V_t 30, k 8, tail', 12, 30, 8, 1, 'tail'],
    ['V_s 6 < k 8 (student zero-padded), tail', 6, 30, 8, 1, 'tail'],
    ['V_s 40, V_t 25, k 8, renormalize', 40, 25, 8, 1, 'renormalize'],
  ];
  for (const [name, vs, vt, k, tau, mode] of cases) {
    it(`equals the float64 reference per position: ${name}`, () => {
      const S = rows(5, vs, 1, 3), Z = rows(5, vt, 2, 4);
      const got = kdUld(S, Z, k, tau, mode);
      S.forEach((s, i) => expect(got[i]).toBeCloseTo(reference(s, Z[i], k, tau, mode), 5));
      expect(Math.min(...got)).toBeGreaterThan(0.05); // distributions that differ: not a vacuous 0
    });
  }

  it('with k = the teacher vocabulary is the plain zero-padded sorted L1 (both V_s > V_t and V_s < V_t)', () => {
    for (const [vs, vt] of [[40, 25], [10, 25]]) {
      const S = rows(4, vs, 3, 3), Z = rows(4, vt, 4, 4);
      const got = kdUld(S, Z, vt, 1.5, 'tail');
      S.forEach((s, i) => expect(got[i]).toBeCloseTo(fullUld(s, Z[i], 1.5), 5));
    }
  });

  it('is 0 for a student that is the teacher with its vocabulary permuted, and ignores padded student columns', () => {
    const Z = rows(3, 20, 5, 4), perm = Array.from({ length: 20 }, (_, i) => (7 * i + 3) % 20);
    const S = Z.map((z) => perm.map((j) => z[j] + 1.25)); // permuted and shifted: the same distribution
    for (const v of kdUld(S, Z, 20, 1, 'tail', 20, 4)) expect(Math.abs(v)).toBeLessThan(2e-6);
    const padded = kdUld(rows(3, 20, 6, 3), Z, 8, 1, 'tail', 20, 4), plain = kdUld(rows(3, 20, 6, 3), Z, 8, 1, 'tail');
    padded.forEach((v, i) => expect(v).toBeCloseTo(plain[i], 6));
  });

  it('gatherRows gathers rows and scatters their gradient (a repeated row adds)', () => {
    const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(gatherRows(x as tf.Tensor2D, tf.tensor1d([2, 0, 2], 'int32')), tf.tensor2d([[1, 2], [3, 4], [5, 6]]))))(tf.zeros([3, 2])).arraySync());
    expect(g).toEqual([[3, 4], [0, 0], [6, 8]]);
  });

  it('gradient in the student logits equals central finite differences of the float64 reference', () => {
    const N = 3, vs = 14, vt = 20, k = 6, tau = 1.5, S = rows(N, vs, 7, 2.5), Z = rows(N, vt, 8, 3.5);
    const w = [1, -0.7, 0.4]; // a weighted sum, so every row's gradient is tested with its own scale
    const t = Z.map((z) => stored(z, k, tau));
    const grad = tf.tidy(() => {
      const teacher = { logits: tf.tensor2d(t.map((x) => x.logits)), logZ: tf.tensor1d(t.map((x) => x.logZ)) };
      const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(uldPerPosition(x as tf.Tensor2D, teacher, tau, 'tail', vs), tf.tensor1d(w))));
      return g(tf.tensor2d(S)).dataSync() as Float32Array;
    });
    const eps = 1e-6;
    let scale = 0, worst = 0;
    for (let r = 0; r < N; r++) {
      for (let j = 0; j < vs; j++) {
        const plus = [...S[r]], minus = [...S[r]];
        plus[j] += eps; minus[j] -= eps;
        const fd = w[r] * (reference(plus, Z[r], k, tau, 'tail') - reference(minus, Z[r], k, tau, 'tail')) / (2 * eps);
        scale = Math.max(scale, Math.abs(fd));
        worst = Math.max(worst, Math.abs(fd - grad[r * vs + j]));
      }
    }
    expect(scale).toBeGreaterThan(0.01);
    expect(worst / scale).toBeLessThan(1e-4);
  });

  it('uldSum adds only live positions, and leaves no tensors behind', () => {
    const S = rows(4, 16, 9, 3), Z = rows(4, 16, 10, 3), k = 5;
    const per = kdUld(S, Z, k, 1, 'tail');
    const before = tf.memory().numTensors;
    const t = Z.map((z) => stored(z, k, 1));
    const teacher = { logits: tf.tensor2d(t.map((x) => x.logits)), logZ: tf.tensor1d(t.map((x) => x.logZ)) };
    const s = tf.tensor2d(S) as tf.Tensor2D, live = tf.tensor1d([true, false, true, false], 'bool');
    const sum = uldSum(s, teacher, 1, 'tail', 16, live);
    expect(sum.dataSync()[0]).toBeCloseTo(per[0] + per[2], 5);
    tf.dispose([sum, s, live, teacher.logits, teacher.logZ]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("refuses 'tail' mode without logZ and mismatched positions, naming the shapes", () => {
    tf.tidy(() => {
      const s = tf.zeros([3, 10]) as tf.Tensor2D;
      expect(() => uldPerPosition(s, { logits: tf.zeros([3, 4]) as tf.Tensor2D }, 1, 'tail', 10)).toThrow(/'tail' mode needs the teacher's logZ \[3\]/);
      expect(() => uldPerPosition(s, { logits: tf.zeros([2, 4]) as tf.Tensor2D }, 1, 'renormalize', 10)).toThrow(/teacher logits \[2,4\] and student logits \[3,10\]/);
    });
  });
});
