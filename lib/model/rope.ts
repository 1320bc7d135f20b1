import * as tf from '@tensorflow/tfjs-core';

/**
 * Rotary position embedding tables, Hugging Face (non-interleaved) layout:
 * inv_freq[i] = θ^(−2i/d) for i < d/2, angle[t, i] = t·inv_freq[i], cos/sin = cat(angle, angle).
 * Source: Su et al. 2021 (RoFormer) eq. 34, as implemented by `LlamaRotaryEmbedding`.
 * @returns cos, sin [seqLen, headDim] float32 (host arrays; positions 0..seqLen−1)
 */
export function ropeTables(seqLen: number, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim), sin = new Float32Array(seqLen * headDim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * Math.pow(theta, (-2 * i) / headDim);
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[t * headDim + i] = cos[t * headDim + i + half] = c;
      sin[t * headDim + i] = sin[t * headDim + i + half] = s;
    }
  }
  return { cos, sin };
}

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
