import * as tf from '@tensorflow/tfjs-core';

export { checkRopeScaling, ropeInvFreq, ropeTables, ropeType, type RopeScaling } from './rope-scaling.js';

/**
 * Applies RoPE: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁).
 * @param x [S, L, headDim] (S = batch·heads) @param cos,sin [L, headDim] @returns [S, L, headDim]
 */
export function applyRope(x: tf.Tensor3D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor3D {
  const half = x.shape[2] / 2;
  const [x1, x2] = tf.split(x, [half, half], 2);
  const rotated = tf.concat([tf.neg(x2), x1], 2);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}
