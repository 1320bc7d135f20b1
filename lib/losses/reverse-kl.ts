import type * as tf from '@tensorflow/tfjs-core';
import { forwardKL } from './forward-kl.js';

/**
 * Reverse KL per position, KL(q ‖ p) = Σ_b q_b (log q_b − log p_b): mode-seeking, as
 * used for LLM distillation by Gu et al. 2024 (MiniLLM) and Agarwal et al. 2024 (GKD).
 * Buckets with q_b = 0 contribute 0 (value and gradient). A bucket with p_b = 0 < q_b is
 * genuinely +inf; the top-k buckets never produce one (teacher top-k log-probs are finite
 * and the tail is floored), but raw inputs can.
 * @param logP float32 [N, b] teacher log-probs
 * @param logQ float32 [N, b] student log-probs
 * @returns float32 [N]
 */
export function reverseKL(logP: tf.Tensor2D, logQ: tf.Tensor2D): tf.Tensor1D {
  return forwardKL(logQ, logP);
}
