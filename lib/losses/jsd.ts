import * as tf from '@tensorflow/tfjs-core';
import { forwardKL } from './forward-kl.js';
import { mixtureLogProbs } from './mixture.js';
import { checkBuckets, type DivergenceOptions } from './types.js';

/** Default β: the symmetric Jensen–Shannon divergence. */
export const DEFAULT_JSD_BETA = 0.5;

/**
 * Generalized Jensen–Shannon divergence per position (Agarwal et al. 2024, "On-Policy
 * Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD), ICLR):
 *
 *   JSD(β)(p ‖ q) = β·KL(p ‖ m) + (1 − β)·KL(q ‖ m),   m = β·p + (1 − β)·q,
 *
 * with p the teacher and q the student (the convention of the shared PyTorch reference:
 * β = 0.1 gives 0.03476 on its case). Near the ends JSD(β) ≈ β·KL(p ‖ q) (β → 0) and
 * ≈ (1 − β)·KL(q ‖ p) (β → 1): it vanishes at both, so β = 0 and β = 1 are refused
 * rather than silently switched to forward or reverse KL.
 * @param logP float32 [N, b] teacher log-probs
 * @param logQ float32 [N, b] student log-probs
 * @param opts.beta 0 < β < 1, default 0.5
 * @returns float32 [N]
 */
export function jsd(logP: tf.Tensor2D, logQ: tf.Tensor2D, opts: DivergenceOptions = {}): tf.Tensor1D {
  const beta = opts.beta ?? DEFAULT_JSD_BETA;
  checkJsdBeta(beta);
  checkBuckets('jsd', logP, logQ);
  return tf.tidy(() => {
    const logM = mixtureLogProbs(logP, logQ, beta); // [N, b]
    return tf.add(tf.mul(forwardKL(logP, logM), beta), tf.mul(forwardKL(logQ, logM), 1 - beta)) as tf.Tensor1D;
  });
}

/** Throws unless 0 < β < 1, pointing to forward/reverse KL at the ends. */
export function checkJsdBeta(beta: number): void {
  if (!(beta > 0 && beta < 1)) {
    throw new Error(
      `jsd: beta must be in (0, 1), got ${beta}. JSD(β) tends to 0 at both ends ` +
        `(≈ β·KL(p‖q) as β → 0, ≈ (1−β)·KL(q‖p) as β → 1); for those use loss 'forward_kl' (β → 0) or 'reverse_kl' (β → 1)`,
    );
  }
}
