import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../model/ops.js';
import { vjp } from '../model/recompute.js';
import { checkDistillInputs, combineSums, distillationLossNormalized, lossSums, type DistillOptions, type DistillResult } from './distill.js';
import type { TeacherSignal } from './signal.js';

/**
 * The LM head and distillationLossNormalized together, over chunks of `chunk` positions, so
 * that logits exist as [chunk, V] at most, never [N, V]: each chunk is one custom-gradient op
 * on (hidden rows, head) that keeps only its inputs and recomputes its logits and loss in the
 * backward pass. Same value and gradients as
 * distillationLossNormalized(hidden·head, signal, targets, opts, normalizer) up to float
 * rounding (sums over chunks instead of one sum), every divergence, both top-k modes, padded vocab.
 * chunk ≥ N (or Infinity) is exactly that unchunked call (the fast path of small models).
 * @param hidden float32 [N, d] final-norm hidden states
 * @param head float32 [d, V] LM head (V ≥ opts.realVocab)
 * @param chunk positions per chunk, a positive integer or Infinity
 * @throws Error as distillationLossNormalized, or when hidden and head do not fit or chunk is invalid.
 */
export function chunkedDistillationLoss(
  hidden: tf.Tensor2D,
  head: tf.Tensor2D,
  signal: TeacherSignal | undefined,
  targets: tf.Tensor1D,
  opts: DistillOptions,
  normalizer: number,
  chunk: number,
): DistillResult {
  if (hidden.rank !== 2 || head.rank !== 2 || hidden.shape[1] !== head.shape[0]) {
    throw new Error(`hidden states [${hidden.shape}] and LM head [${head.shape}] must be [N, d] and [d, V]`);
  }
  if (!(chunk === Number.POSITIVE_INFINITY || (Number.isInteger(chunk) && chunk > 0))) throw new Error(`loss chunk must be a positive integer, got ${chunk}`);
  const [n] = hidden.shape, v = head.shape[1];
  if (chunk >= n) return distillationLossNormalized(linear(hidden, head) as tf.Tensor2D, signal, targets, opts, normalizer);
  if (!(normalizer >= 0) || !Number.isFinite(normalizer)) throw new Error(`normalizer must be a finite token count ≥ 0, got ${normalizer}`);
  const tokens = checkDistillInputs(n, v, signal, targets, opts);
  if (normalizer === 0 && tokens > 0) throw new Error(`normalizer is 0 but this batch has ${tokens} scored positions`);
  const { total, kdSum, ceSum } = tf.tidy(() => {
    const sums: tf.Tensor[] = [];
    for (let start = 0; start < n; start += chunk) {
      const size = Math.min(chunk, n - start);
      sums.push(chunkSums(tf.slice(hidden, [start, 0], [size, -1]), head, rowsOf(signal, opts, start, size), tf.slice(targets, [start], [size]), opts));
    }
    const both = tf.addN(sums); // [2]: kdSum, ceSum
    const kdSum = tf.reshape(tf.slice(both, [0], [1]), []) as tf.Scalar, ceSum = tf.reshape(tf.slice(both, [1], [1]), []) as tf.Scalar;
    return { kdSum, ceSum, total: combineSums(kdSum, ceSum, opts.alpha, normalizer) };
  });
  return { total, kdSum, ceSum, tokens };
}

/** The teacher signal's rows [start, start + size), or undefined when the KD term is off. */
function rowsOf(signal: TeacherSignal | undefined, opts: DistillOptions, start: number, size: number): TeacherSignal | undefined {
  if (!signal || opts.alpha === 0) return undefined;
  const rows = <T extends tf.Tensor>(t: T) => tf.slice(t, start, size) as T;
  return { ids: rows(signal.ids), logits: rows(signal.logits), logZ: signal.logZ ? rows(signal.logZ) : undefined, ...(signal.weights ? { weights: rows(signal.weights) } : {}) };
}

/**
 * [kdSum, ceSum] of one chunk of positions from its hidden rows [n, d] and the head [d, V];
 * logits recomputed in backprop. The chunk's targets and signal are saved with the inputs:
 * the slices die with the caller's tidy, the saved clones live until backprop.
 */
function chunkSums(h: tf.Tensor2D, w: tf.Tensor2D, signal: TeacherSignal | undefined, targets: tf.Tensor1D, opts: DistillOptions): tf.Tensor1D {
  const sums = (hs: tf.Tensor2D, ws: tf.Tensor2D, sig: TeacherSignal | undefined, tgt: tf.Tensor1D) => {
    const { kdSum, ceSum } = lossSums(linear(hs, ws) as tf.Tensor2D, sig, tgt, opts);
    return tf.stack([kdSum, ceSum]) as tf.Tensor1D;
  };
  const constants = signal ? [targets, signal.ids, signal.logits, ...(signal.logZ ? [signal.logZ] : [])] : [targets];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [hs, ws, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([hs, ws, ...constants]);
    return {
      value: sums(hs, ws, signal, targets),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        const [sh, sw, tgt, ids, logits, logZ] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor2D?, tf.Tensor2D?, tf.Tensor1D?];
        const sig = signal ? { ids: ids!, logits: logits!, logZ } : undefined;
        return vjp(() => sums(sh, sw, sig, tgt), [sh, sw], dy);
      }),
    };
  });
  return op(h, w) as tf.Tensor1D;
}
