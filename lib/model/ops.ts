import * as tf from '@tensorflow/tfjs-core';

/*
 * Differentiable primitives with gradients that run well on every backend. Transposed products
 * are left to the backend through matMul's transpose flags (TensorFlow handles them natively; on
 * wasm, lib/backend/wasm-kernels.ts lays the operands out for XNNPACK's GEMM, whose stock kernel
 * only takes plain 2-D products). gather's gradient (UnsortedSegmentSum) is missing on wasm,
 * hence the scatter in embeddingLookup.
 */

/**
 * Plain matrix product a·b with its gradient as two matMuls with transpose flags
 * (dA = dY·Bᵀ, dB = Aᵀ·dY; no separate transpose ops).
 * @param a [M, K]  @param b [K, N]  @returns [M, N]
 */
export const matMul2d = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, [sa, sb]: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, sb as tf.Tensor2D, false, true), // dA = dY·Bᵀ  [M, K]
      tf.matMul(sa as tf.Tensor2D, dy as tf.Tensor2D, true, false), // dB = Aᵀ·dY  [K, N]
    ],
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * Dense layer without bias on the last axis: x·w.
 * @param x [..., in]  @param w [in, out] (the transpose of torch's Linear weight)  @returns [..., out]
 */
export function linear(x: tf.Tensor, w: tf.Tensor2D): tf.Tensor {
  const lead = x.shape.slice(0, -1);
  const y = matMul2d(tf.reshape(x, [-1, w.shape[0]]) as tf.Tensor2D, w);
  return tf.reshape(y, [...lead, w.shape[1]]);
}

/**
 * Dense layer with an optional bias: x·w + b.
 * @param x [..., in]  @param w [in, out]  @param b [out] or undefined  @returns [..., out]
 */
export function affine(x: tf.Tensor, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor {
  const y = linear(x, w);
  return b ? tf.add(y, b) : y;
}

/**
 * Mean of squares over the last axis, mean(x², −1, keepDims): RMSNorm's statistic. Its gradient
 * is autodiff's, dy/d · 2x with the same ops in the same order, but without the [N, d] tensor of
 * ones that tf.mean's gradient allocates and multiplies by.
 * @param x [N, d] @returns [N, 1]
 */
export const meanSquare = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  save([x]);
  return {
    value: tf.mean(tf.square(x), -1, true),
    gradFunc: (dy: tf.Tensor, [sx]: tf.Tensor[]) => tf.mul(tf.div(dy, sx.shape[sx.rank - 1]), tf.mul(sx, 2)),
  };
}) as (x: tf.Tensor2D) => tf.Tensor2D;

/**
 * Row lookup table[ids] whose gradient is a scatter-add (ScatterNd sums duplicate ids).
 * @param table [V, D] @param ids int32 [N] @returns [N, D]
 */
export const embeddingLookup = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [table, ids, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([ids]);
  const shape = table.shape as [number, number];
  return {
    value: tf.gather(table, ids),
    gradFunc: (dy: tf.Tensor, [sIds]: tf.Tensor[]) => tf.tidy(() => [
      tf.scatterND(tf.reshape(sIds, [-1, 1]), dy, shape),
      tf.zerosLike(sIds),
    ]),
  };
}) as (table: tf.Tensor2D, ids: tf.Tensor1D) => tf.Tensor2D;
