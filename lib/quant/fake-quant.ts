import * as tf from '@tensorflow/tfjs-core';

/*
 * Fake quantization of linear weights for quantization-aware training (Jacob et al. 2018,
 * "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
 * §3): the forward pass sees quantize-then-dequantize(W), the backward pass treats that as the
 * identity — the straight-through estimator (Bengio, Léonard & Courville 2013, "Estimating or
 * Propagating Gradients Through Stochastic Neurons", §3), so the float ("latent") weights keep
 * training and the exported integer model is exactly what the forward pass computed.
 *
 * Weights are kd's fused [in, out] matrices (x·W, lib/model/hf-layout.ts): an output channel is a
 * column, and the input dimension is axis 0. Every step is the float32 arithmetic of the export
 * side (lib/onnx/int8.ts, lib/onnx/int4.ts), op for op, so the values are bit-identical:
 * - int8: scale_n = max_k |W[k, n]| / 127; code = clamp(round_half_even(W / scale_n), ±127);
 *   W̃ = code · scale_n (what DequantizeLinear computes). An all-zero column stays zero.
 * - int4 (asymmetric, blocks of `block` along the input axis, ORT MatMulNBits / MLAS):
 *   lo = min(0, min block), hi = max(0, max block), scale = (hi − lo) / 15,
 *   zp = clamp(roundf(−lo / scale), 0, 15), code = clamp(roundf(W · (1/scale) + zp), 0, 15),
 *   W̃ = (code − zp) · scale, roundf rounding halves away from zero (C roundf).
 *
 * STE choice: the gradient passes unchanged everywhere. Nothing is clipped by the range: int8's
 * scale comes from max |W| and int4's range from the block's own min and max, so every weight is
 * inside the grid (only a zero-point rounding can push an extreme int4 value half a step out); a
 * clip mask would therefore zero almost nothing and is left out.
 */

/** Round half to even, exact in float32 (TF.js kernels differ by backend, so it is built from floor). */
function roundHalfEven(x: tf.Tensor): tf.Tensor {
  const f = tf.floor(x), d = tf.sub(x, f); // d ∈ [0, 1), exact
  const even = tf.equal(tf.sub(f, tf.mul(tf.floor(tf.div(f, 2)), 2)), 0);
  const up = tf.logicalOr(tf.greater(d, 0.5), tf.logicalAnd(tf.equal(d, 0.5), tf.logicalNot(even)));
  return tf.add(f, tf.cast(up, 'float32'));
}

/** C roundf (halves away from zero) for x ≥ 0; negative x gives a value ≤ 0 (callers clamp at 0). */
function roundHalfUp(x: tf.Tensor): tf.Tensor {
  const f = tf.floor(x);
  return tf.add(f, tf.cast(tf.greaterEqual(tf.sub(x, f), 0.5), 'float32'));
}

/** scale, with 1 where it is 0 (the divisions below then give 0 codes instead of NaN). */
const nonZero = (scale: tf.Tensor): tf.Tensor => tf.where(tf.equal(scale, 0), tf.onesLike(scale), scale);

/** int8 quantize-dequantize of w [in, out] per output column (no gradient; see the file comment). */
export function quantDequantInt8(w: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const scale = tf.div(tf.max(tf.abs(w), 0, true), 127); // [1, out]
    const codes = tf.clipByValue(roundHalfEven(tf.div(w, nonZero(scale))), -127, 127);
    return tf.mul(codes, scale) as tf.Tensor2D;
  });
}

/**
 * int4 quantize-dequantize of w [in, out], asymmetric blocks of `block` rows per column (no
 * gradient). @throws Error when `block` does not divide the input dimension.
 */
export function quantDequantInt4(w: tf.Tensor2D, block = 32): tf.Tensor2D {
  const [K, N] = w.shape;
  if (!(Number.isInteger(block) && block > 0 && K % block === 0)) throw new Error(`int4 fake quantization: block size ${block} does not divide the input dimension ${K}`);
  return tf.tidy(() => {
    const b = tf.reshape(w, [K / block, block, N]); // [blocks, block, out]
    const lo = tf.minimum(tf.min(b, 1, true), 0), hi = tf.maximum(tf.max(b, 1, true), 0); // [blocks, 1, out]
    const scale = tf.div(tf.sub(hi, lo), 15);
    const safe = nonZero(scale);
    const zp = tf.clipByValue(roundHalfUp(tf.div(tf.neg(lo), safe)), 0, 15); // scale 0 ⇒ lo = 0 ⇒ zp 0
    const recip = tf.where(tf.equal(scale, 0), tf.zerosLike(scale), tf.div(1, safe));
    const codes = tf.clipByValue(roundHalfUp(tf.add(tf.mul(b, recip), zp)), 0, 15);
    return tf.reshape(tf.mul(tf.sub(codes, zp), scale), [K, N]) as tf.Tensor2D;
  });
}

/** Wraps a quantize-dequantize as an op whose gradient is the upstream gradient (STE). */
function straightThrough(qdq: (w: tf.Tensor2D) => tf.Tensor2D): (w: tf.Tensor2D) => tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: qdq(args[0] as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor) => [dy],
  }));
  return (w) => op(w) as tf.Tensor2D;
}

/**
 * Fake int8 quantization, per output channel, with the straight-through estimator: the value is
 * {@link quantDequantInt8}(w), the gradient with respect to w is the upstream gradient.
 * Equals what `kd export --dtype int8` stores (lib/onnx/int8.ts) dequantized, bit for bit.
 * @param w [in, out] float32 @returns [in, out]
 */
export const fakeQuantInt8PerChannel = straightThrough(quantDequantInt8);

/**
 * Fake int4 quantization in MatMulNBits' asymmetric blocks of `block` along the input axis, with
 * the straight-through estimator. Equals what `kd export --dtype int4 --block-size <block>`
 * (asymmetric, the default) stores dequantized, bit for bit.
 * @param w [in, out] float32, in divisible by `block` @returns [in, out]
 * @throws Error when `block` does not divide the input dimension.
 */
export function fakeQuantInt4Blocks(w: tf.Tensor2D, block = 32): tf.Tensor2D {
  return straightThrough((x) => quantDequantInt4(x, block))(w);
}
