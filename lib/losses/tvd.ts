import * as tf from '@tensorflow/tfjs-core';
import { checkBuckets } from './types.js';

/**
 * Total variation distance per position, TVD(p, q) = ½ Σ_b |p_b − q_b| (used for LLM
 * distillation by Wen et al. 2023, "f-Divergence Minimization for Sequence-Level KD").
 * Bounded in [0, 1]; −inf log-probs are zero mass.
 * @param logP float32 [N, b] teacher log-probs
 * @param logQ float32 [N, b] student log-probs
 * @returns float32 [N]
 */
export function tvd(logP: tf.Tensor2D, logQ: tf.Tensor2D): tf.Tensor1D {
  checkBuckets('tvd', logP, logQ);
  return tf.tidy(() => tf.mul(tf.sum(tf.abs(tf.sub(tf.exp(logP), tf.exp(logQ))), 1), 0.5) as tf.Tensor1D);
}
