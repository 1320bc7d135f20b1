/**
 * Peak memory of a piece of TF.js work, as the backend allocates it.
 *
 * tf.memory().numBytes (and tf.profile's peakBytes, its maximum over kernels) counts every tensor
 * handle: a reshape, a clone, or a tensor the tape saves for the backward pass (a clone of a
 * weight for every matMul) counts its buffer again, though no byte is allocated. kd counts each
 * backend buffer (dataId) once, from when its first handle is made to when its last is disposed:
 * the memory a device or the wasm heap really holds (scratch space inside one kernel excepted).
 */
import * as tf from '@tensorflow/tfjs-core';

/** What {@link measurePeak} saw. */
export interface PeakMeasurement<T> {
  result: T;
  /** Largest sum of distinct live buffers while `f` ran, bytes (what was live before included). */
  peakBytes: number;
  /** Distinct live buffer bytes when `f` started. */
  startBytes: number;
  /** tf.profile's peakBytes over the same run: handles counted, views and saved clones included. */
  handlePeakBytes: number;
}

type DataId = object;
interface TensorLike { dataId: DataId; size: number; dtype: tf.DataType }
interface EngineInternals {
  trackTensor(a: TensorLike, backend: unknown): void;
  disposeTensor(a: TensorLike): void;
  state: { tensorInfo: WeakMap<DataId, unknown> };
}

let active = false;

/**
 * Runs `f` (sync or async) and returns its result with the peak of distinct live buffer bytes.
 * Buffers that exist before the call count only from when `f` makes a new handle to them; pass
 * them as `live` so the peak includes them from the start.
 * @param live tensors alive before `f` runs that the peak must include, each the only handle of its
 *   buffer (true of model and optimizer variables between steps)
 * @throws Error when called inside another measurePeak (the engine hooks are not reentrant).
 */
export async function measurePeak<T>(f: () => T | Promise<T>, live: tf.Tensor[] = []): Promise<PeakMeasurement<T>> {
  if (active) throw new Error('measurePeak: already measuring (calls do not nest)');
  const engine = tf.engine() as unknown as EngineInternals;
  const track = engine.trackTensor, dispose = engine.disposeTensor;
  const refs = new Map<DataId, { bytes: number; n: number }>();
  let current = 0, peak = 0;
  const bytesOf = (a: TensorLike) => (a.dtype === 'string' || a.dtype === 'complex64' ? 0 : a.size * (a.dtype === 'bool' ? 1 : 4));
  for (const t of live) if (!refs.has(t.dataId)) { refs.set(t.dataId, { bytes: bytesOf(t), n: 1 }); current += bytesOf(t); }
  const startBytes = current;
  peak = current;
  engine.trackTensor = function (a, backend) {
    track.call(this, a, backend);
    const r = refs.get(a.dataId);
    if (r) r.n += 1;
    else { refs.set(a.dataId, { bytes: bytesOf(a), n: 1 }); current += bytesOf(a); if (current > peak) peak = current; }
  };
  engine.disposeTensor = function (a) {
    const known = engine.state.tensorInfo.has(a.dataId);
    dispose.call(this, a);
    const r = refs.get(a.dataId);
    if (!known || !r) return; // a buffer made before the call and not in `live`: we never counted it
    if (--r.n === 0) { refs.delete(a.dataId); current -= r.bytes; }
  };
  active = true;
  try {
    const profile = await tf.profile(async () => { const result = await f(); return result as unknown as tf.TensorContainer; });
    return { result: profile.result as unknown as T, peakBytes: peak, startBytes, handlePeakBytes: profile.peakBytes };
  } finally {
    engine.trackTensor = track;
    engine.disposeTensor = dispose;
    active = false;
  }
}
