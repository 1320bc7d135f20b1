import * as tf from '@tensorflow/tfjs-core';
import { hashSeed, mulberry32 } from '../util/random.js';

/** Dropout of one forward pass: probability `rate` in [0, 1), masks derived from `seed`. */
export interface DropoutOptions {
  rate: number;
  seed: number;
}

/**
 * Inverted dropout (Srivastava et al. 2014, with the 1/(1 − p) rescale at training time so that
 * evaluation needs none): x ⊙ mask, mask_i = 0 with probability `rate`, else 1/(1 − rate).
 * The mask is drawn on the host from mulberry32(hashSeed(seed, site)): a pure function of
 * (seed, site), the same on every backend, so that a resumed run draws the same masks.
 * @param x any shape; @param site distinguishes the dropout sites of one pass
 * @returns x unchanged (same tensor) when `opts` is undefined or rate = 0
 */
export function dropout<T extends tf.Tensor>(x: T, opts: DropoutOptions | undefined, site: number): T {
  if (!opts || opts.rate <= 0) return x;
  const { rate } = opts;
  const rand = mulberry32(hashSeed(opts.seed, site));
  const keep = 1 / (1 - rate);
  const mask = new Float32Array(x.size);
  for (let i = 0; i < mask.length; i++) mask[i] = rand() < rate ? 0 : keep;
  return tf.mul(x, tf.tensor(mask, x.shape)) as T;
}
