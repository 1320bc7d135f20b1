import * as tf from '@tensorflow/tfjs-core';
import { positiveMask } from './positive-mask.js';

/**
 * log m with m = w·p + (1 − w)·q, elementwise over buckets, for the mixture divergences
 * (generalized JSD, skew KL). Where m = 0 (both p and q are zero) the result is 0 rather
 * than −inf: every caller weights it by p or q, which are 0 there, and a finite
 * placeholder keeps the gradient finite.
 * @param logP float32 [N, b]
 * @param logQ float32 [N, b]
 * @param w weight of p, in [0, 1]
 * @returns float32 [N, b]
 */
export function mixtureLogProbs(logP: tf.Tensor2D, logQ: tf.Tensor2D, w: number): tf.Tensor2D {
  return tf.tidy(() => {
    const m = tf.add(tf.mul(tf.exp(logP), w), tf.mul(tf.exp(logQ), 1 - w)); // [N, b]
    const live = positiveMask(m);
    return tf.where(live, tf.log(tf.where(live, m, tf.onesLike(m))), tf.zerosLike(m)) as tf.Tensor2D;
  });
}
