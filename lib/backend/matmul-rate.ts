import * as tf from '@tensorflow/tfjs-core';

/**
 * The active TF.js backend's rate on one plain 2-D product [M, K] · [K, N] (no transposes, no
 * batch): the best of `reps` timed calls after one untimed call, each on a new B tensor (as in
 * training, where every step's weights are new tensors; the wasm backend caches XNNPACK's packed
 * form of a B it has seen). 2·M·K·N FLOP per call.
 * @param clock milliseconds (default wall clock; pass CPU time to discount other processes)
 * @returns GFLOP/s
 */
export function plainMatMulGflops(M: number, K: number, N: number, reps = 5, clock: () => number = () => performance.now()): number {
  const a = tf.randomNormal([M, K]) as tf.Tensor2D, host = tf.randomNormal([K, N]);
  const hostData = host.dataSync();
  let best = Infinity;
  for (let r = 0; r <= reps; r++) {
    const b = tf.tensor2d(hostData, [K, N]);
    const t0 = clock();
    const c = tf.matMul(a, b);
    c.dataSync();
    const ms = clock() - t0;
    if (r > 0) best = Math.min(best, ms);
    tf.dispose([b, c]);
  }
  tf.dispose([a, host]);
  return (2 * M * K * N) / best / 1e6;
}
