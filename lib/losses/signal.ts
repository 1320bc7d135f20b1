import type * as tf from '@tensorflow/tfjs-core';

/**
 * The teacher's soft labels for N positions, decoupled from where they came from
 * (Parquet shards, a live teacher, a test). Read from a logit dataset (DESIGN §3.2):
 * one row per scored position, the teacher's top-k ids sorted by logit, descending.
 */
export interface TeacherSignal {
  /** int32 [N, k]: the teacher's top-k token ids per position (all < the real vocab size). */
  ids: tf.Tensor2D;
  /** float32 [N, k]: z_i − max(z) at those ids, sorted descending (so column 0 is 0). */
  logits: tf.Tensor2D;
  /**
   * float32 [N]: logsumexp(z/τ) − max(z)/τ at the temperature τ in use, i.e. the exact
   * normaliser: p_τ(i) = exp(logits_i/τ − logZ). Required by `tail` mode.
   */
  logZ?: tf.Tensor1D;
  /**
   * float32 [N, k], sampled datasets only: each slot's weight in the random-sampling estimator
   * (lib/logits/sampling.ts sampledWeights); present = `ids` are draws from p_τg, not the top k,
   * and the KD term is sampledForwardKl.
   */
  weights?: tf.Tensor2D;
}

/**
 * How the mass outside the teacher's top-k is handled (DESIGN §4):
 * - `tail`: k buckets plus one tail bucket holding the rest of the mass on each side
 *   (1 − Σ p, 1 − Σ q); needs `TeacherSignal.logZ`. With k = V it is the full-vocab loss.
 * - `renormalize`: the teacher is renormalised over its top-k; the student is its
 *   full-vocab log-softmax gathered at those ids (not renormalised), so the student is
 *   still pushed to move mass out of the tail. The student's buckets then sum to < 1:
 *   forward KL, skew KL and TVD stay ≥ 0, but reverse KL and JSD can go below 0
 *   (use `tail` mode with those).
 */
export type TopKMode = 'tail' | 'renormalize';

export const TOPK_MODES: readonly TopKMode[] = ['tail', 'renormalize'];
