import * as tf from '@tensorflow/tfjs-core';
import type { TeacherSignal } from './signal.js';

/**
 * Random-sampling KD's estimate of forward KL per position (Anshumann et al., "Sparse Logit
 * Sampling", ACL 2025, arXiv 2503.16870, §3, with importance weights):
 *
 *   KD_t ≈ Σ_j w_j·(log p_τ(x_j) − log q_τ(x_j)),   x_j ~ p_τg i.i.d.,  w_j = p_τ(x_j) / (n·p_τg(x_j)),
 *
 * log p_τ(x) = s_x/τ − logZ_τ from the stored s = z − max z. Its expectation over the draws is
 * KL(p_τ ‖ q_τ), and its gradient in the student logits, (1/τ)·(Σ_j w_j·q_τ − Σ_j w_j·e_{x_j}), is an
 * unbiased estimate of the full-vocabulary gradient (1/τ)·(q_τ − p_τ); top-k caching is biased
 * (the paper's §2). Repeated draws simply appear in several slots.
 * @param studentLogQ float32 [N, n]: log q_τ at the drawn ids (studentLogProbsAt)
 * @param signal ids/logits [N, n], logZ [N] at τ, weights [N, n] (lib/logits/sampling.ts sampledWeights)
 * @returns float32 [N]
 * @throws Error when the signal has no weights or logZ, or shapes differ.
 */
export function sampledForwardKl(studentLogQ: tf.Tensor2D, signal: TeacherSignal, temperature: number): tf.Tensor1D {
  const { logits, logZ, weights } = signal;
  if (!weights || !logZ) throw new Error('sampled KD needs the draws\' weights and the teacher\'s logZ at τ');
  if (weights.shape.join() !== logits.shape.join() || studentLogQ.shape.join() !== logits.shape.join()) {
    throw new Error(`sampled KD: weights [${weights.shape}], teacher logits [${logits.shape}] and student log-probs [${studentLogQ.shape}] must all be [N, n]`);
  }
  return tf.tidy(() => {
    const logP = tf.sub(tf.mul(logits, 1 / temperature), logZ.reshape([-1, 1]));
    return tf.sum(tf.mul(weights, tf.sub(logP, studentLogQ)), 1) as tf.Tensor1D;
  });
}
