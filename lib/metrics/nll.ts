import * as tf from '@tensorflow/tfjs-core';

/**
 * Per-position negative log-likelihood of the targets under softmax(logits) over the real vocabulary
 * (padded embedding rows excluded). Forward only (evaluation).
 * @param logits [N, V] @param targets int32 [N], −100 = not scored @param realVocab ≤ V
 * @returns summed NLL (nats) and the number of scored positions
 */
export function nllSum(logits: tf.Tensor2D, targets: Int32Array, realVocab: number): { nll: number; tokens: number } {
  const N = logits.shape[0];
  const V = Math.min(realVocab, logits.shape[1]);
  const flat = new Int32Array(N), weight = new Float32Array(N); // flat ids: gather with batchDims is wrong on wasm 4.22
  let tokens = 0;
  for (let i = 0; i < N; i++) {
    if (targets[i] !== -100) { flat[i] = i * V + targets[i]; weight[i] = 1; tokens++; }
  }
  const nll = tf.tidy(() => {
    const real = V < logits.shape[1] ? tf.slice(logits, [0, 0], [N, V]) : logits;
    const picked = tf.gather(tf.reshape(tf.logSoftmax(real), [-1]), tf.tensor1d(flat, 'int32'));
    return tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(weight)))).dataSync()[0];
  });
  return { nll, tokens };
}
