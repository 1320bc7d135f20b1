import * as tf from '@tensorflow/tfjs-core';
import { rowIdCoordinates } from './gather.js';

/** Logit given to padded vocab entries (ids ≥ realVocab): exp underflows to exactly 0. */
const PAD_LOGIT = -1e30;

/** Ids to read the student's log-probs at, and the temperature to read them at. */
export interface IdGroup {
  /** int32 [N, k], each in [0, realVocab). */
  ids: tf.Tensor2D;
  /** τ > 0. */
  temperature: number;
}

/**
 * Student log-probabilities at given ids, for several groups of ids at once:
 * out_g[n, j] = log softmax(s/τ_g)[n, ids_g[n, j]], softmax over the real vocab only
 * (columns ≥ realVocab get no mass, whatever their logits).
 *
 * One fused op, because full-vocab passes dominate the cost on wasm. Forward, per distinct
 * τ: one scale (τ ≠ 1), one mask add (padded vocab only), the Softmax kernel and two row
 * maxima — log-sum-exp is lse = max(x) − log(max(softmax(x))). Backward, for all groups
 * together: ∂/∂s = scatter(dy_g/τ_g) − Σ_τ softmax(s/τ)·Σ_{g at τ, j} dy_g[·, j]/τ, i.e.
 * one scatter plus one multiply and one subtract per distinct τ. Duplicate ids (within or
 * across groups) are fine: their gradients add.
 * @param logits float32 [N, V] student logits (V ≥ realVocab; extra columns are padding)
 * @returns one float32 [N, k_g] per group
 */
export function studentLogProbsAtGroups(logits: tf.Tensor2D, groups: IdGroup[], realVocab: number): tf.Tensor2D[] {
  const [n, v] = logits.shape;
  checkGroups(logits, groups, realVocab);
  const taus = [...new Set(groups.map((g) => g.temperature))];
  const sizes = groups.map((g) => g.ids.shape[1]);
  return tf.tidy(() => {
    const coords = groups.map((g) => rowIdCoordinates(g.ids)); // [N, k_g, 2] each
    const allCoords = tf.concat(coords, 1); // [N, K, 2]
    const padMask = realVocab < v ? paddedVocabBias(v, realVocab) : undefined; // [1, V]
    const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [s, save] = args as [tf.Tensor, tf.GradSaveFunc];
      const xs: tf.Tensor[] = [];
      const probs: tf.Tensor[] = [];
      const lses: tf.Tensor[] = [];
      for (const tau of taus) {
        const scaled = tau === 1 ? s : tf.mul(s, 1 / tau); // [N, V]
        const x = padMask ? tf.add(scaled, padMask) : scaled; // [N, V]
        const p = tf.softmax(x); // [N, V]
        xs.push(x);
        probs.push(p);
        lses.push(tf.sub(tf.max(x, 1, true), tf.log(tf.max(p, 1, true)))); // [N, 1]
      }
      const outs = groups.map((g, i) => {
        const t = taus.indexOf(g.temperature);
        return tf.sub(tf.gatherND(xs[t], coords[i]), lses[t]); // [N, k_g]
      });
      save([...probs, allCoords]);
      return {
        value: tf.concat(outs, 1), // [N, K]
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => { // the [N, V] temporaries die here
          const parts = tf.split(dy, sizes, 1).map((d, i) => tf.mul(d, 1 / groups[i].temperature)); // [N, k_g]
          let grad = tf.scatterND(saved[taus.length], tf.concat(parts, 1), [n, v]); // [N, V]
          taus.forEach((tau, t) => {
            const rowSum = tf.addN(parts.filter((_, i) => groups[i].temperature === tau).map((d) => tf.sum(d, 1, true))); // [N, 1]
            grad = tf.sub(grad, tf.mul(saved[t], rowSum));
          });
          return grad;
        }),
      };
    });
    const all = op(logits) as tf.Tensor2D; // [N, K]
    // Slices, not tf.split: the SplitV gradient fails when only one output is used.
    const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    return groups.length === 1 ? [all] : sizes.map((k, i) => tf.slice(all, [0, offsets[i]], [n, k]));
  });
}

/**
 * log softmax(s/τ) over the real vocab, at the given ids: studentLogProbsAtGroups with
 * one group. logits float32 [N, V], ids int32 [N, k] → float32 [N, k].
 */
export function studentLogProbsAt(logits: tf.Tensor2D, ids: tf.Tensor2D, temperature: number, realVocab: number): tf.Tensor2D {
  return studentLogProbsAtGroups(logits, [{ ids, temperature }], realVocab)[0];
}

/** [1, V]: 0 for real vocab entries, PAD_LOGIT for padded embedding rows. */
function paddedVocabBias(v: number, realVocab: number): tf.Tensor2D {
  return tf.concat([tf.zeros([1, realVocab]), tf.fill([1, v - realVocab], PAD_LOGIT)], 1) as tf.Tensor2D;
}

function checkGroups(logits: tf.Tensor2D, groups: IdGroup[], realVocab: number): void {
  const [n, v] = logits.shape;
  if (logits.rank !== 2) throw new Error(`student logits [${logits.shape}] must be [N, V]`);
  if (!Number.isInteger(realVocab) || realVocab < 1 || realVocab > v) {
    throw new Error(`realVocab must be an integer in [1, ${v}] (the logits' width), got ${realVocab}`);
  }
  if (groups.length === 0) throw new Error('studentLogProbsAtGroups: no id groups');
  for (const { ids, temperature } of groups) {
    if (ids.dtype !== 'int32') throw new Error(`ids must be int32, got ${ids.dtype}`);
    if (ids.rank !== 2 || ids.shape[0] !== n) throw new Error(`logits [${logits.shape}] and ids [${ids.shape}] differ in rows`);
    if (!(temperature > 0) || !Number.isFinite(temperature)) throw new Error(`temperature must be > 0, got ${temperature}`);
  }
}
