import * as tf from '@tensorflow/tfjs-core';
import type { TeacherSignal, TopKMode } from './signal.js';
import { studentLogProbsAt } from './student-logprobs.js';

/**
 * Smallest tail mass either side may have. The tail is 1 − Σ_topk, computed in fp32, so
 * below ~1e-6 it is rounding noise (with k = V it is exactly that). Both tails are
 * floored at the same value, so a tail that is noise on both sides contributes exactly 0
 * to every divergence, k = V reproduces the full-vocab loss, and no log(0) or 1/0 reaches
 * a gradient. When only the teacher's tail is below it, the tail term of forward KL is
 * TAIL_FLOOR·log(TAIL_FLOOR/q_tail), between −1.4e-5 and 0.
 */
export const TAIL_FLOOR = 1e-6;

/** Teacher and student log-probabilities over the same buckets. */
export type Buckets = {
  /** float32 [N, b]: teacher log p_b (b = k, or k + 1 in tail mode). */
  logP: tf.Tensor2D;
  /** float32 [N, b]: student log q_b. */
  logQ: tf.Tensor2D;
};

/** log(max(1 − Σ_b exp(logProbs_b), TAIL_FLOOR)) per row, stably: [N, k] → [N, 1]. */
function tailLogMass(logProbs: tf.Tensor2D): tf.Tensor2D {
  const inTopK = rowLogSumExp(logProbs); // [N, 1], log Σ_topk ≤ 0 up to rounding
  return tf.log(tf.maximum(tf.neg(tf.expm1(inTopK)), TAIL_FLOOR)) as tf.Tensor2D;
}

/**
 * tf.logSumExp(x, 1, true), the same ops forward, with the gradient dy·exp(x − lse) = dy·softmax(x):
 * autodiff would also backpropagate through the max shift (whose terms cancel), a broadcast
 * comparison that the wasm backend runs element by element. x [N, k] → [N, 1].
 */
const rowLogSumExp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
  const lse = tf.logSumExp(x, 1, true);
  save([x, lse]);
  return { value: lse, gradFunc: (dy: tf.Tensor, [sx, slse]: tf.Tensor[]) => tf.mul(dy, tf.exp(tf.sub(sx, slse))) };
}) as (x: tf.Tensor2D) => tf.Tensor2D;

/**
 * Turns the teacher signal and the student's log-probs at the teacher ids into bucket
 * log-probabilities for a divergence (DESIGN §4).
 * - tail: log p_b = logits_b/τ − logZ for the k ids, plus log(1 − Σ p) as bucket k;
 *   the student likewise with log(1 − Σ q); both tails floored at TAIL_FLOOR.
 * - renormalize: log p = log_softmax(logits/τ) over the k ids; log q as given (the
 *   student's full-vocab log-probs, not renormalised).
 * @param signal teacher ids/logits [N, k] (logZ [N] at τ, for tail mode)
 * @param studentLogQ float32 [N, k] from studentLogProbsAt(s, signal.ids, τ, realVocab)
 * @returns logP, logQ: [N, k + 1] in tail mode, [N, k] in renormalize mode
 */
export function bucketLogProbs(
  signal: TeacherSignal,
  studentLogQ: tf.Tensor2D,
  temperature: number,
  mode: TopKMode,
): Buckets {
  checkSignal(signal, mode);
  if (studentLogQ.shape.join() !== signal.logits.shape.join()) {
    throw new Error(`student log-probs [${studentLogQ.shape}] and teacher logits [${signal.logits.shape}] differ`);
  }
  return tf.tidy(() => {
    const scaled = tf.mul(signal.logits, 1 / temperature) as tf.Tensor2D; // [N, k]
    if (mode === 'renormalize') return { logP: tf.logSoftmax(scaled), logQ: studentLogQ.clone() };
    const [n] = signal.logits.shape;
    const logPk = tf.sub(scaled, (signal.logZ as tf.Tensor1D).reshape([n, 1])) as tf.Tensor2D; // [N, k]
    return {
      logP: tf.concat([logPk, tailLogMass(logPk)], 1), // [N, k + 1]
      logQ: tf.concat([studentLogQ, tailLogMass(studentLogQ)], 1), // [N, k + 1]
    };
  });
}

/**
 * Bucket log-probabilities of teacher and student for the top-k losses: the student's
 * log-softmax at τ over the real vocab, gathered at the teacher's ids, then bucketed.
 * @param studentLogits float32 [N, V] (V ≥ realVocab)
 * @returns logP, logQ: [N, k + 1] (tail) or [N, k] (renormalize)
 */
export function topkBuckets(
  studentLogits: tf.Tensor2D,
  signal: TeacherSignal,
  temperature: number,
  mode: TopKMode,
  realVocab: number,
): Buckets {
  checkSignal(signal, mode);
  return tf.tidy(() =>
    bucketLogProbs(signal, studentLogProbsAt(studentLogits, signal.ids, temperature, realVocab), temperature, mode),
  );
}

/** Shape, dtype and mode checks of a teacher signal; errors name both shapes. */
export function checkSignal(signal: TeacherSignal, mode: TopKMode): void {
  const { ids, logits, logZ } = signal;
  if (ids.dtype !== 'int32') throw new Error(`teacher ids must be int32, got ${ids.dtype}`);
  if (ids.rank !== 2 || ids.shape.join() !== logits.shape.join()) {
    throw new Error(`teacher ids [${ids.shape}] and logits [${logits.shape}] must both be [N, k]`);
  }
  if (mode !== 'tail' && mode !== 'renormalize') throw new Error(`mode must be 'tail' or 'renormalize', got '${String(mode)}'`);
  if (mode === 'tail') {
    if (!logZ) throw new Error("'tail' mode needs the teacher's logZ at the temperature in use (signal.logZ is missing); use 'renormalize' without it");
    if (logZ.rank !== 1 || logZ.shape[0] !== ids.shape[0]) throw new Error(`teacher logZ [${logZ.shape}] must be [N] with N = ${ids.shape[0]}`);
  }
}
