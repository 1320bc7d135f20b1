import * as tf from '@tensorflow/tfjs-core';

/**
 * bool mask x > 0, with a zero gradient. tfjs-core registers no gradient for comparisons
 * (Greater, ...), and backprop refuses any node on the path from the inputs without one,
 * so a mask computed from a tensor on the gradient path must be built inside this op.
 */
export const positiveMask: (x: tf.Tensor) => tf.Tensor = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const x = args[0] as tf.Tensor;
  return { value: tf.greater(x, 0), gradFunc: (dy: tf.Tensor) => tf.zerosLike(x) };
});
