/**
 * The wasm backend's replaced kernels (lib/backend/wasm-kernels.ts) against float64 references
 * computed here: BatchMatMul with every transpose combination, batched, broadcast and in the
 * transposed-product form for large weights, and its gradients; Slice and SplitV on every axis
 * and dtype; Identity sharing data without leaking it; Transpose of the last two axes (tiles and
 * their ragged edges); GatherV2 on any axis and batch dimension; Sum over leading axes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { registerWasmKernels } from '../lib/backend/wasm-kernels.js';
import { mulberry32 } from '../lib/util/random.js';

/** Deterministic float32 values in [−1, 1) (held in float64 for the references). */
const values = (n: number, seed: number) => { const r = mulberry32(seed); return Float64Array.from({ length: n }, () => Math.fround(2 * r() - 1)); };
const f32 = (v: Float64Array, shape: number[]) => tf.tensor(Float32Array.from(v), shape, 'float32');

/** float64 op(A)·op(B) per batch; a [batch or 1, r, c] row-major, likewise b; the batch of size 1 is broadcast. */
function refMatMul(a: Float64Array, aShape: number[], b: Float64Array, bShape: number[], tA: boolean, tB: boolean): Float64Array {
  const [na, ar, ac] = aShape, [nb, br, bc] = bShape;
  const M = tA ? ac : ar, K = tA ? ar : ac, N = tB ? br : bc, n = Math.max(na, nb);
  const out = new Float64Array(n * M * N);
  for (let s = 0; s < n; s++) {
    const ao = (na === 1 ? 0 : s) * ar * ac, bo = (nb === 1 ? 0 : s) * br * bc;
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += a[ao + (tA ? k * ac + i : i * ac + k)] * b[bo + (tB ? j * bc + k : k * bc + j)];
      out[(s * M + i) * N + j] = sum;
    }
  }
  return out;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5) {
  expect(actual.length).toBe(expected.length);
  let worst = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) { worst = Math.max(worst, Math.abs(actual[i] - expected[i])); scale = Math.max(scale, Math.abs(expected[i])); }
  expect(worst / Math.max(scale, 1e-30)).toBeLessThan(tol);
}

describe('wasm kernels', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  it('are registered once the wasm backend runs', () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(registerWasmKernels()).toBe(true);
  });

  it.each([
    // [a shape, b shape, transposeA, transposeB]
    [[5, 7], [7, 4], false, false], [[7, 5], [7, 4], true, false], [[5, 7], [4, 7], false, true], [[7, 5], [4, 7], true, true],
    [[3, 5, 7], [3, 7, 4], false, false], [[3, 7, 5], [3, 7, 4], true, false], [[3, 5, 7], [3, 4, 7], false, true], [[3, 7, 5], [3, 4, 7], true, true],
    [[2, 3, 5, 7], [7, 4], false, false], [[5, 7], [4, 4, 7], false, true], [[1, 5, 7], [6, 7, 4], false, false],
    // large weights, N > 4M: computed as (op(B)ᵀ·op(A)ᵀ)ᵀ
    [[6, 1040], [1040, 1100], false, false], [[1040, 6], [1040, 1100], true, false], [[1040, 6], [1100, 1040], true, true],
  ] as [number[], number[], boolean, boolean][])('matMul %j · %j (transposeA %s, transposeB %s) equals the float64 product', (aShape, bShape, tA, tB) => {
    const av = values(tf.util.sizeFromShape(aShape), 1), bv = values(tf.util.sizeFromShape(bShape), 2);
    const c = tf.matMul(f32(av, aShape), f32(bv, bShape), tA, tB);
    const flat = (s: number[]) => [tf.util.sizeFromShape(s.slice(0, -2)), ...s.slice(-2)];
    const M = aShape[aShape.length - (tA ? 1 : 2)], N = bShape[bShape.length - (tB ? 2 : 1)];
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
    expect(c.shape).toEqual([...outer, M, N]);
    expectClose(c.dataSync(), refMatMul(av, flat(aShape), bv, flat(bShape), tA, tB));
  });

  it('gives batched matMul gradients dA = dY·Bᵀ and dB = Aᵀ·dY', () => {
    const [S, M, K, N] = [3, 4, 6, 5];
    const av = values(S * M * K, 3), bv = values(S * K * N, 4), wv = values(S * M * N, 5);
    const w = f32(wv, [S, M, N]);
    const [da, db] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D, false, true), w)))(
      [f32(av, [S, M, K]), f32(bv, [S, N, K])]);
    // y = a·bᵀ: dA = W·b, dB = Wᵀ·a (per batch)
    expectClose(da.dataSync(), refMatMul(wv, [S, M, N], bv, [S, N, K], false, false));
    expectClose(db.dataSync(), refMatMul(wv, [S, M, N], av, [S, M, K], true, false));
  });

  it('leaves what it does not handle to the stock kernel (and its errors)', () => {
    expect(() => tf.matMul(tf.ones([2, 2], 'int32'), tf.ones([2, 2], 'int32'))).toThrow(/non-float32/);
    expect(tf.matMul(tf.zeros([0, 3]), tf.zeros([3, 2])).shape).toEqual([0, 2]);
  });

  it.each(['float32', 'int32', 'bool'] as const)('slices and splits %s tensors on every axis as index arithmetic says', (dtype) => {
    const shape = [3, 4, 5, 6], n = tf.util.sizeFromShape(shape), strides = tf.util.computeStrides(shape);
    const raw = Int32Array.from({ length: n }, (_, i) => (dtype === 'bool' ? i % 3 === 0 ? 1 : 0 : i));
    const x = dtype === 'bool' ? tf.tensor(Uint8Array.from(raw), shape, 'bool') : tf.tensor(raw, shape, dtype);
    const at = (idx: number[]) => raw[idx.reduce((o, v, d) => o + v * (d < strides.length ? strides[d] : 1), 0)];
    const ref = (begin: number[], size: number[]) => {
      const out: number[] = [];
      const walk = (d: number, idx: number[]) => {
        if (d === shape.length) { out.push(at(idx)); return; }
        for (let i = 0; i < size[d]; i++) walk(d + 1, [...idx, begin[d] + i]);
      };
      walk(0, []);
      return out;
    };
    const cases: [number[], number[]][] = [
      [[0, 0, 0, 0], [3, 4, 5, 6]], [[1, 0, 0, 0], [2, 4, 5, 6]], [[0, 1, 0, 0], [3, 2, 5, 6]], [[0, 0, 2, 0], [3, 4, 3, 6]],
      [[0, 0, 0, 3], [3, 4, 5, 2]], [[1, 2, 1, 1], [1, 1, 3, 4]], [[2, 3, 4, 5], [1, 1, 1, 1]], [[0, 1, 0, 0], [3, 0, 5, 6]],
    ];
    for (const [begin, size] of cases) {
      const s = tf.slice(x, begin, size);
      expect(s.shape).toEqual(size);
      expect([...s.dataSync()].map(Number)).toEqual(ref(begin, size));
    }
    for (let axis = 0; axis < shape.length; axis++) {
      const sizes = shape[axis] === 3 ? [1, 2] : [1, shape[axis] - 3, 2];
      let offset = 0;
      for (const part of tf.split(x, sizes, axis)) {
        const begin = [0, 0, 0, 0], size = [...shape];
        begin[axis] = offset; size[axis] = part.shape[axis];
        offset += part.shape[axis];
        expect([...part.dataSync()].map(Number)).toEqual(ref(begin, size));
      }
    }
  });

  it.each([
    [[37, 45], [1, 0]], [[64, 128], [1, 0]], [[3, 5, 7], [0, 2, 1]], [[2, 3, 33, 6], [0, 1, 3, 2]], [[3, 5, 7], [1, 0, 2]], [[3, 5, 7], [2, 0, 1]],
  ] as [number[], number[]][])('transposes %j by %j as index arithmetic says (float32 and int32)', (shape, perm) => {
    const n = tf.util.sizeFromShape(shape), inStrides = tf.util.computeStrides(shape);
    const outShape = perm.map((p) => shape[p]), outStrides = tf.util.computeStrides(outShape);
    const expected = new Array<number>(n);
    for (let flat = 0; flat < n; flat++) {
      const idx = shape.map((_, d) => Math.floor(flat / (d < inStrides.length ? inStrides[d] : 1)) % shape[d]);
      expected[perm.reduce((o, p, d) => o + idx[p] * (d < outStrides.length ? outStrides[d] : 1), 0)] = flat;
    }
    for (const dtype of ['float32', 'int32'] as const) {
      const t = tf.transpose(tf.tensor(Int32Array.from({ length: n }, (_, i) => i), shape, dtype), perm);
      expect(t.shape).toEqual(outShape);
      expect([...t.dataSync()]).toEqual(expected);
    }
  });

  it('gathers slices on every axis and batch dimension, and names an index out of range', () => {
    const shape = [2, 3, 40], x = tf.tensor(Float32Array.from({ length: 240 }, (_, i) => i), shape);
    const at = (b: number, r: number, c: number) => (b * 3 + r) * 40 + c;
    const rows = tf.gather(x, tf.tensor1d([2, 0, 2], 'int32'), 1); // [2, 3, 40], slices of 40
    expect([...rows.dataSync()]).toEqual([0, 1].flatMap((b) => [2, 0, 2].flatMap((r) => Array.from({ length: 40 }, (_, c) => at(b, r, c)))));
    const first = tf.gather(x, tf.tensor1d([1, 1, 0], 'int32'), 0); // [3, 3, 40]
    expect([...first.dataSync()]).toEqual([1, 1, 0].flatMap((b) => Array.from({ length: 120 }, (_, i) => b * 120 + i)));
    const perBatch = tf.gather(x, tf.tensor2d([[1, 2], [0, 0]], [2, 2], 'int32'), 1, 1); // [2, 2, 40]
    expect([...perBatch.dataSync()]).toEqual([[0, 1], [0, 2], [1, 0], [1, 0]].flatMap(([b, r]) => Array.from({ length: 40 }, (_, c) => at(b, r, c))));
    const narrow = tf.gather(x, tf.tensor1d([39, 0], 'int32'), 2); // slices of 1: the stock kernel
    expect([...narrow.dataSync()]).toEqual([0, 1].flatMap((b) => [0, 1, 2].flatMap((r) => [at(b, r, 39), at(b, r, 0)])));
    expect(() => tf.gather(x, tf.tensor1d([3], 'int32'), 1)).toThrow('GatherV2: the index value 3 is not in [0, 2]');
  });

  it.each(['float32', 'int32', 'bool'] as const)('concatenates and stacks %s tensors along every axis as index arithmetic says', (dtype) => {
    // widths 3 and 300 on the last axis: runs below and above the copy-by-view length
    const make = (shape: number[], start: number) => {
      const v = Int32Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => (dtype === 'bool' ? (start + i) % 2 : start + i));
      return { t: dtype === 'bool' ? tf.tensor(Uint8Array.from(v), shape, 'bool') : tf.tensor(v, shape, dtype), v, shape };
    };
    const a = make([2, 4, 3], 0), b = make([2, 4, 300], 1000);
    const last = tf.concat([a.t, b.t], 2);
    expect(last.shape).toEqual([2, 4, 303]);
    const expectedLast = Array.from({ length: 8 }, (_, r) => [...a.v.subarray(3 * r, 3 * r + 3), ...b.v.subarray(300 * r, 300 * r + 300)]).flat();
    expect([...last.dataSync()]).toEqual(expectedLast);
    const c = make([2, 1, 3], 5000), e = make([2, 0, 3], 0);
    const middle = tf.concat([a.t, e.t, c.t], 1); // an empty input adds nothing
    expect([...middle.dataSync()]).toEqual([0, 1].flatMap((i) => [...a.v.subarray(12 * i, 12 * i + 12), ...c.v.subarray(3 * i, 3 * i + 3)]));
    expect([...tf.concat([a.t, a.t], 0).dataSync()]).toEqual([...a.v, ...a.v]);
    const stacked = tf.stack([a.t, make([2, 4, 3], 7000).t], 3); // [2, 4, 3, 2]: pairs
    expect(stacked.shape).toEqual([2, 4, 3, 2]);
    const other = make([2, 4, 3], 7000).v;
    expect([...stacked.dataSync()]).toEqual([...a.v].flatMap((x, i) => [x, other[i]]));
    expect(() => tf.stack([a.t, b.t])).toThrow(/matching shapes/);
  });

  it('sums over leading axes (and others through the stock kernel) as the float64 sum, int32 exactly', () => {
    const shape = [5, 4, 3], v = values(60, 6), x = f32(v, shape);
    const ref = (keep: (i: number, j: number, k: number) => number, n: number) => {
      const out = new Float64Array(n);
      for (let i = 0; i < 5; i++) for (let j = 0; j < 4; j++) for (let k = 0; k < 3; k++) out[keep(i, j, k)] += v[(i * 4 + j) * 3 + k];
      return out;
    };
    expectClose(tf.sum(x, 0).dataSync(), ref((i, j, k) => j * 3 + k, 12));
    const both = tf.sum(x, [1, 0], true);
    expect(both.shape).toEqual([1, 1, 3]);
    expectClose(both.dataSync(), ref((i, j, k) => k, 3));
    expectClose(tf.sum(x, 2).dataSync(), ref((i, j) => i * 4 + j, 20));
    expectClose(tf.sum(x, [0, 2]).dataSync(), ref((i, j) => j, 4));
    const ints = tf.tensor2d(Int32Array.from({ length: 12 }, (_, i) => i * 1000003), [4, 3], 'int32');
    expect([...tf.sum(ints, 0).dataSync()]).toEqual([0, 1, 2].map((j) => [0, 1, 2, 3].reduce((s, i) => s + (i * 3 + j) * 1000003, 0)));
  });

  it('clones share data: a clone outlives its source and both free their memory', () => {
    const before = tf.memory().numBytes;
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    x.dispose();
    expect([...y.dataSync()]).toEqual([1, 2, 3]);
    y.dispose();
    expect(tf.memory().numBytes).toBe(before);
  });
});
