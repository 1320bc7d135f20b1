/**
 * Universal Logit Distillation (ULD; Boizard et al. 2024, "Towards Cross-Tokenizer Distillation:
 * the Universal Logit Distillation Loss for LLMs", arXiv 2402.12030): a distillation loss for a
 * teacher and a student with different vocabularies. Per aligned position t, the L1 distance
 * between the two next-token probability vectors, each sorted in descending order, the shorter
 * one padded with zeros,
 *
 *   ULD_t = Σ_i |q_t,(i) − p_t,(i)|,   q_(1) ≥ q_(2) ≥ …,  p_(1) ≥ p_(2) ≥ …
 *
 * (the paper's closed form of the Wasserstein-1 distance under uniform support and cost). Both
 * distributions are softmaxes at τ, as in the paper.
 *
 * Teacher tail. kd stores the teacher's top-k: p_(1..k) = exp(z_i/τ − log Z_τ), sorted, and so
 * its tail mass P = 1 − Σ_{i≤k} p_(i), but not how P spreads over its other tokens.
 * - mode `tail`: the sorted entries beyond k are merged into one bucket on each side,
 *     ULD^k_t = Σ_{i≤k} |q_(i) − p_(i)| + |Σ_{i>k} q_(i) − P|,
 *   the L1 distance between the two coarse-grained distributions. By the triangle inequality it
 *   is a lower bound of the full ULD_t, equal to it when the teacher's top-k holds its mass
 *   (P = 0, e.g. k ≥ the teacher's vocabulary: the bucket is then exactly the zero-padded terms
 *   Σ_{i>k} q_(i)). Keeping P matters: without it a student whose top-k matches the teacher's
 *   top-k but puts the teacher's tail mass elsewhere would pay nothing for it.
 * - mode `renormalize`: the teacher renormalised over its top-k (P = 0), then the same formula,
 *   which is then the exact zero-padded ULD against that truncated teacher.
 * If the student's real vocabulary is smaller than k, its sorted vector is zero-padded to k.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TopKMode } from './signal.js';
import { studentLogProbsAt } from './student-logprobs.js';

/** The teacher side of ULD for N positions: its top-k logits, ids not needed (vocabularies differ). */
export interface UldTeacher {
  /** float32 [N, k]: z_i − max z of the teacher's top-k (any order: ULD sorts). */
  logits: tf.Tensor2D;
  /** float32 [N]: log Z_τ = logsumexp(z/τ) − max(z)/τ at the τ in use; needed by mode `tail`. */
  logZ?: tf.Tensor1D;
}

/**
 * ULD^k_t per position (module comment), without τ² (the trainer applies it as for the other losses).
 * @param studentLogits float32 [N, V] (V ≥ realVocab; columns ≥ realVocab are padding, no mass)
 * @param teacher top-k logits [N, k] and, for `tail`, log Z_τ [N]
 * @param temperature τ > 0 of both softmaxes
 * @returns float32 [N], each in [0, 2]; differentiable in `studentLogits`
 * @throws Error naming both shapes when N differs, or when `tail` mode has no logZ [N]
 */
export function uldPerPosition(studentLogits: tf.Tensor2D, teacher: UldTeacher, temperature: number, mode: TopKMode, realVocab: number): tf.Tensor1D {
  const [n] = studentLogits.shape, [nt, k] = teacher.logits.shape;
  if (teacher.logits.rank !== 2 || nt !== n) throw new Error(`uld: teacher logits [${teacher.logits.shape}] and student logits [${studentLogits.shape}] must have the same N positions`);
  if (mode === 'tail' && (teacher.logZ?.rank !== 1 || teacher.logZ.shape[0] !== n)) throw new Error(`uld: 'tail' mode needs the teacher's logZ [${n}] (got ${teacher.logZ ? `[${teacher.logZ.shape}]` : 'none'})`);
  if (!(temperature > 0)) throw new Error(`uld: temperature must be > 0, got ${temperature}`);
  const ks = Math.min(k, realVocab);
  const ids = studentTopK(studentLogits, ks, realVocab); // [N, ks], descending
  const out = tf.tidy(() => {
    const q = tf.exp(studentLogProbsAt(studentLogits, ids, temperature, realVocab)); // [N, ks] sorted descending
    const qk = ks < k ? tf.pad(q, [[0, 0], [0, k - ks]]) : q; // [N, k]
    const scaled = tf.mul(teacher.logits, 1 / temperature) as tf.Tensor2D;
    const p = mode === 'tail' ? tf.exp(tf.sub(scaled, teacher.logZ!.reshape([n, 1]))) : tf.softmax(scaled); // [N, k]
    const pk = tf.topk(p as tf.Tensor2D, k).values; // sorted descending (the teacher is a constant)
    const head = tf.sum(tf.abs(tf.sub(qk, pk)), 1); // [N]
    const tail = (x: tf.Tensor) => tf.relu(tf.sub(1, tf.sum(x, 1))); // [N] mass beyond the top k
    const bucket = tf.abs(tf.sub(tail(qk), mode === 'tail' ? tail(pk) : tf.zeros([n]))); // [N]
    return tf.add(head, bucket) as tf.Tensor1D;
  });
  ids.dispose();
  return out;
}

/**
 * Σ_t ULD^k_t over the positions where `live` holds (all when absent); other positions add 0
 * and pass no gradient.
 * @param live bool [N]
 * @returns float32 scalar
 */
export function uldSum(studentLogits: tf.Tensor2D, teacher: UldTeacher, temperature: number, mode: TopKMode, realVocab: number, live?: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const per = uldPerPosition(studentLogits, teacher, temperature, mode, realVocab);
    return tf.sum(live ? tf.where(live, per, tf.zerosLike(per)) : per) as tf.Scalar;
  });
}

/**
 * The student's `k` most probable real ids per row, in descending order, as a tensor with no
 * gradient path (TopK has no gradient in TF.js; the ULD gradient flows through the gathered
 * probabilities instead, which is the sort's gradient: a permutation).
 */
function studentTopK(logits: tf.Tensor2D, k: number, realVocab: number): tf.Tensor2D {
  const [n, v] = logits.shape;
  const idx = tf.tidy(() => tf.topk(realVocab < v ? tf.slice(logits, [0, 0], [n, realVocab]) : logits, k).indices);
  const ids = tf.tensor2d(idx.dataSync() as Int32Array, [n, k], 'int32');
  idx.dispose();
  return ids;
}
