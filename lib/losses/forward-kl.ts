import * as tf from '@tensorflow/tfjs-core';
import { positiveMask } from './positive-mask.js';
import { checkBuckets } from './types.js';

/**
 * Forward KL per position, KL(p ‖ q) = Σ_b p_b (log p_b − log q_b) — the distillation
 * loss of Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (§2); the
 * τ² factor of that paper is applied in distill.ts, not here.
 *
 * Buckets with p_b = 0 (log p_b = −inf) contribute exactly 0, and so does their gradient
 * with respect to both inputs: the log-probs are replaced by 0 before the product, so no
 * −inf·0 is formed in the forward or the backward pass.
 * @param logP float32 [N, b] teacher log-probs
 * @param logQ float32 [N, b] student log-probs
 * @returns float32 [N]
 */
export function forwardKL(logP: tf.Tensor2D, logQ: tf.Tensor2D): tf.Tensor1D {
  checkBuckets('forward_kl', logP, logQ);
  return tf.tidy(() => {
    const p = tf.exp(logP); // [N, b]
    const live = positiveMask(p); // [N, b]
    const zero = tf.zerosLike(logP);
    const diff = tf.sub(tf.where(live, logP, zero), tf.where(live, logQ, zero)); // [N, b]
    return tf.sum(tf.where(live, tf.mul(p, diff), zero), 1) as tf.Tensor1D;
  });
}
