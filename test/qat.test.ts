/**
 * Quantization-aware training: the fake quantization against a float64 reference written here from
 * the definitions (ties and all-zero channels included), the straight-through gradient, training
 * with --qat from a step, and the exported int8 / int4 ONNX of a QAT student against the TF.js
 * fake-quant forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { dequantizeInt4, quantizeInt4 } from '../lib/onnx/int4.js';
import { dequantizeInt8, quantizeInt8 } from '../lib/onnx/int8.js';
import { fakeQuantInt4Blocks, fakeQuantInt8PerChannel } from '../lib/quant/fake-quant.js';
import { mulberry32 } from '../lib/util/random.js';

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
