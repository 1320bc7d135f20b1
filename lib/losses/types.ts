import type * as tf from '@tensorflow/tfjs-core';

/** Options some divergences take; each one documents its own (with default and range). */
export interface DivergenceOptions {
  /** Generalized JSD weight of the teacher in the mixture, 0 < β < 1 (default 0.5). */
  beta?: number;
  /** Skew KL weight of the teacher in the mixture, 0 ≤ λ < 1 (default 0.1). */
  lambda?: number;
}

/**
 * A divergence between teacher and student bucket distributions, per position.
 * @param logP float32 [N, b] teacher log-probabilities (−inf allowed: zero mass)
 * @param logQ float32 [N, b] student log-probabilities (−inf allowed: zero mass)
 * @returns float32 [N], without τ² (applied once, in distill.ts)
 */
export type Divergence = (logP: tf.Tensor2D, logQ: tf.Tensor2D, opts?: DivergenceOptions) => tf.Tensor1D;

/** Throws unless both bucket tensors are [N, b] with the same shape. */
export function checkBuckets(name: string, logP: tf.Tensor2D, logQ: tf.Tensor2D): void {
  if (logP.rank !== 2 || logP.shape.join() !== logQ.shape.join()) {
    throw new Error(`${name}: teacher log-probs [${logP.shape}] and student log-probs [${logQ.shape}] must both be [N, b]`);
  }
}
