/**
 * What a backend can hold. TF.js' wasm backend keeps every tensor in one WebAssembly memory of
 * at most 4 GiB (32-bit addressing), so a student whose persistent training state alone exceeds
 * it cannot train there, whatever the batch.
 */
import type { BackendName } from './select.js';

/** Bytes of the wasm heap (WebAssembly memory32 maximum). */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/**
 * Bytes that live for the whole run with AdamW in fp32: weights, gradients and two moments,
 * 4 · 4 bytes per parameter (activations come on top; issue "memory plan" sizes those).
 * @param parameters trainable parameter count
 */
export function persistentTrainingBytes(parameters: number): number {
  return 16 * parameters;
}

/**
 * Refuses, before training, a model whose persistent state cannot fit the backend.
 * @param where file or config the model came from, named in the message
 * @throws Error naming the size, the limit and the backends that can hold it.
 */
export function checkCapacity(backend: BackendName, parameters: number, where: string): void {
  const need = persistentTrainingBytes(parameters);
  if (backend !== 'wasm' || need <= WASM_HEAP_BYTES) return;
  const gib = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;
  throw new Error(`${where}: ${parameters.toLocaleString('en-US')} parameters need ${gib(need)} for weights, gradients and AdamW moments in fp32, more than the wasm backend's ${gib(WASM_HEAP_BYTES)} heap; train with --backend node-gpu or node (@tensorflow/tfjs-node-gpu / -node)`);
}
