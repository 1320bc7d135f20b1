/**
 * Symmetric per-output-channel 8-bit weight quantization (weight-only, as in Jacob et al. 2018
 * §2.1 with zero point 0; the per-channel variant of Krishnamoorthi 2018 §3.1):
 *
 * - W [N, K] (N outputs, K inputs: a `torch.nn.Linear` weight) gets one scale per output row,
 *   scale_n = max_k |W[n, k]| / 127 (float32 division), 0 for an all-zero row;
 * - code = clamp(round_half_even(W[n, k] / scale_n), −127, 127) (float32 division; −128 is never
 *   used, so the grid is symmetric and 0 is exact), code 0 where scale_n = 0;
 * - dequantization: W[n, k] ≈ code · scale_n (one float32 product), what ONNX `DequantizeLinear`
 *   with zero point 0 computes.
 *
 * Round half to even is ONNX QuantizeLinear's rounding and TF.js `tf.round`'s, so the fake
 * quantization of lib/quant/fake-quant.ts computes the same codes with tensor ops.
 */

/** Quantized weight of one linear layer. */
export interface Int8Weight {
  /** Output features N. */
  n: number;
  /** Input features K. */
  k: number;
  /** int8 codes [N, K], row-major like W. */
  codes: Int8Array;
  /** float32 [N]: one scale per output channel. */
  scales: Float32Array;
}

/** Round half to even (ONNX QuantizeLinear, TF.js tf.round): 2.5 → 2, 3.5 → 4, −2.5 → −2. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x), d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Quantizes W [N, K] (row-major) per output channel to int8 (see the file comment).
 * @throws Error when `w` does not hold N·K values.
 */
export function quantizeInt8(w: Float32Array, n: number, k: number): Int8Weight {
  if (w.length !== n * k) throw new Error(`quantizeInt8: weight has ${w.length} values, expected ${n} × ${k}`);
  const codes = new Int8Array(n * k), scales = new Float32Array(n);
  for (let row = 0; row < n; row++) {
    let max = 0;
    for (let j = 0; j < k; j++) max = Math.max(max, Math.abs(w[row * k + j]));
    const scale = Math.fround(max / 127);
    scales[row] = scale;
    if (scale === 0) continue;
    for (let j = 0; j < k; j++) codes[row * k + j] = Math.min(127, Math.max(-127, roundHalfEven(Math.fround(w[row * k + j] / scale))));
  }
  return { n, k, codes, scales };
}

/** W [N, K] as the export reconstructs it: code · scale (float32). */
export function dequantizeInt8(q: Int8Weight): Float32Array {
  const out = new Float32Array(q.n * q.k);
  for (let row = 0; row < q.n; row++) {
    for (let j = 0; j < q.k; j++) out[row * q.k + j] = Math.fround(q.codes[row * q.k + j] * q.scales[row]);
  }
  return out;
}
