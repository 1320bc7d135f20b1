import * as tf from '@tensorflow/tfjs-core';
import { MASK_BIAS } from './attention-mask.js';
import { DropoutOptions, keepMask } from './dropout.js';

/** Geometry of one layer's stacked-head attention (see LlamaModel.attention). */
export interface AttentionShape {
  /** Sequence length. */
  L: number;
  /** Query heads per KV head, stacked along the rows as g·L + t. */
  G: number;
  /** Sliding window w (query sees its w − 1 predecessors and itself), or null for full causal. */
  window: number | null;
}

/**
 * Causal attention of stacked query heads in blocks of query positions, exact (softmax over each
 * row's visible keys, as the unblocked version). Block [q0, q1) takes all G heads of those
 * queries against keys [k0, q1) only — k0 = 0, or q0 − w + 1 with a sliding window — so its
 * scores are [S, G·(q1 − q0), q1 − k0] ≤ [S, G·block, L]. Each block is one custom-gradient op
 * that keeps only its q, k, v slices and recomputes its probabilities in the backward pass
 * (FlashAttention's backward, Dao et al. 2022, Alg. 4, one key block): the probabilities of only
 * one block exist at any time, forward or backward.
 * Dropout on the probabilities draws, per element, the mask of the unblocked [S, G·L, L] tensor.
 * @param q [S, G·L, hd] (RoPE applied, 1/√hd folded in), @param k,v [S, L, hd]
 * @param block query positions per block, 1 ≤ block < L
 * @returns [S, G·L, hd]
 */
export function blockedAttention(
  q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, shape: AttentionShape, block: number, drop?: DropoutOptions, site = 0,
): tf.Tensor3D {
  const { L, G, window } = shape;
  const [S, , hd] = q.shape;
  const q4 = tf.reshape(q, [S, G, L, hd]);
  const outs: tf.Tensor[] = [];
  for (let q0 = 0; q0 < L; q0 += block) {
    const q1 = Math.min(L, q0 + block), M = q1 - q0;
    const k0 = window === null ? 0 : Math.max(0, q0 - window + 1), K = q1 - k0;
    const qb = tf.reshape(tf.slice(q4, [0, 0, q0, 0], [S, G, M, hd]), [S, G * M, hd]) as tf.Tensor3D;
    const kb = tf.slice(k, [0, k0, 0], [S, K, hd]), vb = tf.slice(v, [0, k0, 0], [S, K, hd]);
    const out = attendBlock(qb, kb, vb, { L, G, window, q0, M, k0, K, S }, drop, site);
    outs.push(tf.reshape(out, [S, G, M, hd]));
  }
  return tf.reshape(outs.length === 1 ? outs[0] : tf.concat(outs, 2), [S, G * L, hd]) as tf.Tensor3D;
}

/** One block's place: queries q0..q0+M−1 of all G heads, keys k0..k0+K−1, S = B·KV. */
interface Block { L: number; G: number; window: number | null; q0: number; M: number; k0: number; K: number; S: number }

/** softmax(q·kᵀ + bias)·v for one block, probabilities recomputed in the backward pass. */
function attendBlock(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, b: Block, drop: DropoutOptions | undefined, site: number): tf.Tensor3D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qs, ks, vs, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
    save([qs, ks, vs]);
    const { p, keep } = probabilities(qs, ks, b, drop, site);
    return {
      value: tf.matMul(keep ? tf.mul(p, keep) : p, vs), // [S, G·M, hd]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => {
        const [sq, sk, sv] = saved as tf.Tensor3D[];
        const { p, keep } = probabilities(sq, sk, b, drop, site);
        const dO = dy as tf.Tensor3D;
        const dV = tf.matMul(keep ? tf.mul(p, keep) : p, dO, true, false); // [S, K, hd]
        const dPd = tf.matMul(dO, sv, false, true); // [S, G·M, K]
        const dP = keep ? tf.mul(dPd, keep) : dPd;
        const dS = tf.mul(p, tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true))); // softmax backward
        return [tf.matMul(dS, sk), tf.matMul(dS, sq, true, false), dV];
      }),
    };
  });
  return op(q, k, v) as tf.Tensor3D;
}

/** The block's probabilities [S, G·M, K] and its dropout multipliers (undefined without dropout). */
function probabilities(q: tf.Tensor3D, k: tf.Tensor3D, b: Block, drop: DropoutOptions | undefined, site: number) {
  const p = tf.softmax(tf.add(tf.matMul(q, k, false, true), blockBias(b))) as tf.Tensor3D;
  if (!drop || drop.rate <= 0) return { p, keep: undefined };
  // Coordinates in the unblocked [S, G·L, L]: row s·G·L + g·L + t, column k0 + j.
  const rows = tf.tidy(() => {
    const s = tf.mul(tf.range(0, b.S, 1, 'int32'), tf.scalar(b.G * b.L, 'int32')).reshape([b.S, 1, 1]);
    const gt = tf.tensor1d(Int32Array.from({ length: b.G * b.M }, (_, r) => Math.floor(r / b.M) * b.L + b.q0 + (r % b.M)), 'int32').reshape([1, b.G * b.M, 1]);
    return tf.add(s, gt);
  });
  const cols = tf.range(b.k0, b.k0 + b.K, 1, 'int32').reshape([1, 1, b.K]);
  return { p, keep: keepMask(rows, cols, drop, site) }; // [S, G·M, K]
}

/** Additive mask [G·M, K] of a block: 0 where key s is visible from query t, MASK_BIAS elsewhere. */
function blockBias(b: Block): tf.Tensor2D {
  return tf.tidy(() => {
    const t = tf.tensor1d(Int32Array.from({ length: b.G * b.M }, (_, r) => b.q0 + (r % b.M)), 'int32').reshape([b.G * b.M, 1]);
    const back = tf.sub(t, tf.range(b.k0, b.k0 + b.K, 1, 'int32').reshape([1, b.K])); // t − s
    let visible = tf.greaterEqual(back, tf.scalar(0, 'int32'));
    if (b.window !== null) visible = tf.logicalAnd(visible, tf.less(back, tf.scalar(b.window, 'int32')));
    return tf.mul(tf.cast(tf.logicalNot(visible), 'float32'), MASK_BIAS) as tf.Tensor2D;
  });
}
