import * as tf from '@tensorflow/tfjs-core';
import { studentLogProbsAt } from './student-logprobs.js';

/** Target id of positions that are not scored (PyTorch's convention). */
export const IGNORE_INDEX = -100;

/**
 * Hard-label cross-entropy per position at τ = 1 over the real vocab:
 * CE_t = −log softmax(s_t)[target_t]. Ignored positions (target = −100) give 0 and no
 * gradient. Targets must already be shifted (logits at t predict target_t).
 * @param logits float32 [N, V] student logits (V ≥ realVocab; extra columns are padding)
 * @param targets int32 [N], each in [0, realVocab) or −100 (see countTargets to check)
 * @returns float32 [N]
 */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, realVocab: number): tf.Tensor1D {
  checkTargets(targets, logits.shape[0]);
  return tf.tidy(() => {
    const logQ = studentLogProbsAt(logits, safeTargets(targets).reshape([-1, 1]), 1, realVocab); // [N, 1]
    return nllAt(logQ.reshape([-1]) as tf.Tensor1D, targets);
  });
}

/** −logQ where the target is live, else 0 (value and gradient). logQ, targets: [N] → [N]. */
export function nllAt(logQ: tf.Tensor1D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => tf.where(liveMask(targets), tf.neg(logQ), tf.zerosLike(logQ)) as tf.Tensor1D);
}

/** bool [N]: target ≠ −100. */
export function liveMask(targets: tf.Tensor1D): tf.Tensor1D {
  return tf.notEqual(targets, tf.scalar(IGNORE_INDEX, 'int32')) as tf.Tensor1D;
}

/** int32 [N]: the targets with −100 replaced by 0, safe to gather at. */
export function safeTargets(targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => tf.where(liveMask(targets), targets, tf.zerosLike(targets)) as tf.Tensor1D);
}

/**
 * Number of scored positions (target ≠ −100); reads the targets back (they are small).
 * @throws Error when a target is outside [0, realVocab) and not −100.
 */
export function countTargets(targets: tf.Tensor1D, realVocab: number): number {
  let count = 0;
  for (const t of targets.dataSync()) {
    if (t === IGNORE_INDEX) continue;
    if (!(t >= 0 && t < realVocab)) throw new Error(`target id ${t} is outside the real vocab [0, ${realVocab}) and is not the ignore index ${IGNORE_INDEX}`);
    count++;
  }
  return count;
}

/** Throws unless targets is int32 [N]. */
export function checkTargets(targets: tf.Tensor1D, n: number): void {
  if (targets.dtype !== 'int32') throw new Error(`targets must be int32, got ${targets.dtype}`);
  if (targets.rank !== 1 || targets.shape[0] !== n) throw new Error(`targets [${targets.shape}] must be [N] with N = ${n} (the logits' rows)`);
}
