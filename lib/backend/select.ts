import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs'; // registers gradients and chained ops in tfjs-core's engine
import { registerWasmKernels } from './wasm-kernels.js';

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

/** What runs the student: the backend and the device its kernels were placed on. */
export interface BackendInfo {
  name: BackendName;
  /** 'gpu' only when TensorFlow placed work on a visible CUDA device. */
  device: 'gpu' | 'cpu';
  /** One line for logs and train.json, e.g. "node-gpu: TensorFlow on a CUDA GPU". */
  detail: string;
}

/** The fields tfjs-node's NodeJSKernelBackend exposes about its device (see tfjs-node nodejs_kernel_backend.ts). */
interface TensorflowBackendFlags { isGPUPackage?: boolean; isUsingGpuDevice?: boolean }

let active: BackendInfo | undefined;

/**
 * Which device a backend instance runs on, and whether that is what was asked for.
 * `tensorflow` is the engine name of both tfjs-node and tfjs-node-gpu; the GPU package reports
 * `isUsingGpuDevice` from TF's device list (false when no CUDA device is visible).
 * @throws Error when `choice` is 'node-gpu' and TensorFlow sees no GPU (a GPU run never silently gets a CPU).
 */
export function placement(choice: BackendChoice, engineName: string, flags: TensorflowBackendFlags): BackendInfo {
  if (engineName !== 'tensorflow') {
    const name = engineName === 'wasm' ? 'wasm' : 'cpu';
    return { name, device: 'cpu', detail: name === 'wasm' ? 'wasm: WebAssembly kernels on the CPU, one thread' : 'cpu: JavaScript kernels' };
  }
  if (flags.isGPUPackage && flags.isUsingGpuDevice) return { name: 'node-gpu', device: 'gpu', detail: 'node-gpu: TensorFlow on a CUDA GPU' };
  if (choice === 'node-gpu') {
    throw new Error(`--backend node-gpu: ${PACKAGE['node-gpu']} loaded but TensorFlow sees no GPU (check the CUDA/cuDNN libraries, the driver and CUDA_VISIBLE_DEVICES; --backend node runs on the CPU on purpose)`);
  }
  const why = flags.isGPUPackage ? ' (tfjs-node-gpu found no GPU: CPU kernels)' : '';
  return { name: 'node', device: 'cpu', detail: `node: TensorFlow CPU kernels${why}` };
}

async function tryBackend(name: BackendName): Promise<boolean> {
  try {
    await import(PACKAGE[name]);
    if (!(await tf.setBackend(ENGINE_NAME[name]))) return false;
    if (name === 'wasm') registerWasmKernels();
    return true;
  } catch {
    return false;
  }
}

/**
 * Selects and initialises the TF.js backend: with 'auto' the fastest one present
 * (node-gpu, node, wasm, cpu); otherwise exactly the one asked for.
 * @returns the backend that runs (also logged by the callers and recorded in outputs).
 * @throws Error when a forced backend's package is missing or fails to initialise, or when
 *   'node-gpu' is forced and TensorFlow places work on no GPU.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  return (await initBackendInfo(choice)).name;
}

/** initBackend, with the device the kernels run on (see placement). */
export async function initBackendInfo(choice: BackendChoice = 'auto'): Promise<BackendInfo> {
  if (active && (choice === 'auto' || choice === active.name)) return active;
  const order = choice === 'auto' ? BACKENDS : [choice];
  for (const name of order) {
    if (await tryBackend(name)) {
      await tf.ready();
      active = placement(choice, tf.getBackend(), tf.backend() as unknown as TensorflowBackendFlags);
      return active;
    }
  }
  throw new Error(`--backend ${choice}: ${PACKAGE[choice as BackendName] ?? choice} is not installed or failed to initialise (valid: auto, ${BACKENDS.join(', ')})`);
}
