/*
 * Whether a clone on the wasm backend shares its input's buffer, without importing TF.js (the
 * memory plan reads it in `kd plan`, which never loads TF.js). lib/backend/wasm-kernels.ts
 * replaces the wasm Identity kernel with one that shares, and records here when it cannot.
 */

let clonesShare = true;

/**
 * True unless registerWasmKernels (lib/backend/wasm-kernels.ts) found the wasm backend's
 * internals unlike tfjs-backend-wasm 4.22's and left the stock Identity kernel, which copies.
 */
export const wasmClonesShare = (): boolean => clonesShare;

/** Records that the stock wasm kernels stay in place (clones copy). */
export function markWasmClonesCopy(): void {
  clonesShare = false;
}
