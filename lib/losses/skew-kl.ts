import * as tf from '@tensorflow/tfjs-core';
import { forwardKL } from './forward-kl.js';
import { mixtureLogProbs } from './mixture.js';
import { checkBuckets, type DivergenceOptions } from './types.js';

/** Default λ, as in DistiLLM. */
export const DEFAULT_SKEW_LAMBDA = 0.1;

/**
 * Skew KL per position (Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for
 * Large Language Models", ICML): KL(p ‖ λ·p + (1 − λ)·q), p the teacher, q the student.
 * λ = 0 is forward KL; the skew keeps the loss and its gradient bounded where q ≪ p.
 * @param logP float32 [N, b] teacher log-probs
 * @param logQ float32 [N, b] student log-probs
 * @param opts.lambda 0 ≤ λ < 1, default 0.1
 * @returns float32 [N]
 */
export function skewKL(logP: tf.Tensor2D, logQ: tf.Tensor2D, opts: DivergenceOptions = {}): tf.Tensor1D {
  const lambda = opts.lambda ?? DEFAULT_SKEW_LAMBDA;
  if (!(lambda >= 0 && lambda < 1)) {
    throw new Error(`skew_kl: lambda must be in [0, 1), got ${lambda} (λ = 0 is forward KL; λ = 1 makes the loss 0)`);
  }
  checkBuckets('skew_kl', logP, logQ);
  return tf.tidy(() => forwardKL(logP, mixtureLogProbs(logP, logQ, lambda)));
}
