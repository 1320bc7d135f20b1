import * as tf from '@tensorflow/tfjs-core';

/**
 * [N, k, 2] int32 (row, id) coordinates for gatherND / scatterND on a [N, V] tensor.
 * (tf.gather with batchDims = 1 gives wrong values and out-of-bounds reads on the
 * tfjs-backend-wasm 4.22 GatherV2 kernel, and the flat-index gather is ~2x slower there.)
 */
export function rowIdCoordinates(ids: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    const [n, k] = ids.shape;
    const rowOf = new Int32Array(n * k);
    for (let r = 0, i = 0; r < n; r++) for (let j = 0; j < k; j++) rowOf[i++] = r;
    const rows = tf.tensor2d(rowOf, [n, k], 'int32'); // made on the host: broadcasting (Tile) is slow on wasm
    return tf.stack([rows, ids], 2) as tf.Tensor3D; // [N, k, 2]
  });
}

/**
 * out[n, j] = x[n, ids[n, j]]: gathers k entries per row of x, differentiable on every
 * backend. The gradient of tf.gather (UnsortedSegmentSum) is not registered on wasm,
 * so the backward pass scatters dy into zeros [N, V] with tf.scatterND (duplicate ids
 * accumulate, as they should).
 * @param x float32 [N, V]
 * @param ids int32 [N, k], each in [0, V)
 * @returns float32 [N, k]
 */
export function gatherLastAxis(x: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor2D {
  if (ids.dtype !== 'int32') throw new Error(`gatherLastAxis: ids must be int32, got ${ids.dtype}`);
  if (x.shape[0] !== ids.shape[0]) {
    throw new Error(`gatherLastAxis: x [${x.shape}] and ids [${ids.shape}] differ in rows`);
  }
  const [n, v] = x.shape;
  return tf.tidy(() => {
    const coords = rowIdCoordinates(ids);
    const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [xs, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([coords]); // closure tensors die with this tidy; saved ones live until backprop
      return {
        value: tf.gatherND(xs, coords),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.scatterND(saved[0], dy, [n, v]),
      };
    });
    return op(x) as tf.Tensor2D;
  });
}

/**
 * out[m] = x[rows[m]]: rows of x, differentiable on every backend (tf.gather's gradient,
 * UnsortedSegmentSum, is not registered on wasm): the backward pass scatters dy into zeros
 * [N, V] with tf.scatterND (a repeated row accumulates).
 * @param x float32 [N, V]
 * @param rows int32 [M], each in [0, N)
 * @returns float32 [M, V]
 */
export function gatherRows(x: tf.Tensor2D, rows: tf.Tensor1D): tf.Tensor2D {
  if (rows.dtype !== 'int32' || rows.rank !== 1) throw new Error(`gatherRows: rows must be int32 [M], got ${rows.dtype} [${rows.shape}]`);
  const [n, v] = x.shape;
  return tf.tidy(() => {
    const coords = rows.reshape([-1, 1]); // [M, 1]
    const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [xs, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([coords]);
      return {
        value: tf.gatherND(xs, coords),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.scatterND(saved[0], dy, [n, v]),
      };
    });
    return op(x) as tf.Tensor2D;
  });
}
