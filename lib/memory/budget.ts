/**
 * What a backend can hold, for the memory plan: its budget in bytes and how it stores the
 * tensors the tape saves.
 */
import { WASM_HEAP_BYTES } from '../backend/capacity.js';
import { wasmClonesShare } from '../backend/wasm-clones.js';
import type { BackendName } from '../backend/select.js';
import { parseByteSize } from '../model/sharded.js';
import type { SavedTensors } from './plan.js';

/**
 * cpu and TensorFlow share the buffer of a saved tensor, and so does wasm with kd's Identity kernel
 * (lib/backend/wasm-kernels.ts); the stock wasm kernel, left in place when kd's cannot be
 * registered, copies it.
 */
export function savedTensorsOf(backend: BackendName): SavedTensors {
  return backend === 'wasm' && !wasmClonesShare() ? 'copies' : 'shares';
}

/**
 * The memory budget of a run, bytes.
 * @param given `memory_budget` (bytes, or a size such as "24GiB", "80GB"), or null for the backend's default
 * @returns the wasm heap (4 GiB) on wasm, no limit (Infinity) on cpu and node, `given` when set
 * @throws Error on node-gpu without a budget (TF.js does not report the GPU's memory), on a bad
 *   size, or on a budget above the wasm heap on wasm.
 */
export function memoryBudget(backend: BackendName, given: number | string | null, flag = '--memory-budget'): number {
  if (given === null || given === undefined) {
    if (backend === 'node-gpu') throw new Error(`${flag}: required with --backend node-gpu (TF.js does not report the GPU's memory), e.g. --memory-budget 24GiB for a 24 GB card`);
    return backend === 'wasm' ? WASM_HEAP_BYTES : Number.POSITIVE_INFINITY;
  }
  const bytes = parseByteSize(given, flag);
  if (backend === 'wasm' && bytes > WASM_HEAP_BYTES) throw new Error(`${flag}: ${String(given)} is more than the wasm backend's 4 GiB heap`);
  return bytes;
}
