import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers gradients and chained ops in tfjs-core's engine

/** TF.js backends kd can run on, fastest first. */
export const BACKENDS = ['node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendChoice = BackendName | 'auto';

/** Package that registers each backend (tfjs-node and -gpu are optional: they download libtensorflow at install). */
const PACKAGE: Record<BackendName, string> = {
  'node-gpu': '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};
/** Name under which each package registers its backend in the tf engine. */
const ENGINE_NAME: Record<BackendName, string> = { 'node-gpu': 'tensorflow', node: 'tensorflow', wasm: 'wasm', cpu: 'cpu' };

let active: BackendName | undefined;

async function tryBackend(name: BackendName): Promise<boolean> {
  try {
    await import(PACKAGE[name]);
    return await tf.setBackend(ENGINE_NAME[name]);
  } catch {
    return false;
  }
}

/**
 * Selects and initialises the TF.js backend: with 'auto' the fastest one present
 * (node-gpu, node, wasm, cpu); otherwise exactly the one asked for.
 * @returns the backend that runs (also logged by the callers and recorded in outputs).
 * @throws Error when a forced backend's package is missing or fails to initialise.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  if (active && (choice === 'auto' || choice === active)) return active;
  const order = choice === 'auto' ? BACKENDS : [choice];
  for (const name of order) {
    if (await tryBackend(name)) {
      await tf.ready();
      active = name;
      return name;
    }
  }
  throw new Error(`--backend ${choice}: ${PACKAGE[choice as BackendName] ?? choice} is not installed or failed to initialise (valid: auto, ${BACKENDS.join(', ')})`);
}
