import * as tf from '@tensorflow/tfjs-core';

export { checkRopeScaling, ropeInvFreq, ropeTables, ropeType, type RopeScaling } from './rope-scaling.js';

/**
 * Applies RoPE: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁).
 * rotate_half is one matMul with its signed permutation matrix (exact: each output is one ±x term
 * plus zeros), which is cheaper on every backend than split, negate and concat and their gradients.
 * @param x [S, L, headDim] (S = batch·heads) @param cos,sin [L, headDim] @returns [S, L, headDim]
 */
export function applyRope(x: tf.Tensor3D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor3D {
  const [S, L, hd] = x.shape;
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [S * L, hd]) as tf.Tensor2D, rotateHalfMatrix(hd)), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

/** R [headDim, headDim] with x·R = rotate_half(x): R[j + h, j] = −1 and R[j, j + h] = 1 for j < h = headDim/2. */
function rotateHalfMatrix(hd: number): tf.Tensor2D {
  const half = hd / 2, r = new Float32Array(hd * hd);
  for (let j = 0; j < half; j++) { r[(j + half) * hd + j] = -1; r[j * hd + j + half] = 1; }
  return tf.tensor2d(r, [hd, hd]);
}
