/**
 * The student's backend is what was asked for: a forced GPU backend that TensorFlow places on no
 * GPU is an error (never a silent CPU run), and a model whose fp32 AdamW state exceeds wasm's
 * 4 GiB heap is refused before training. tfjs-node(-gpu) cannot be installed here, so their
 * NodeJSKernelBackend flags are given to `placement` directly.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkCapacity, persistentTrainingBytes, WASM_HEAP_BYTES } from '../lib/backend/capacity.js';
import { initBackendInfo, placement } from '../lib/backend/select.js';
import { countParameters, resolveLlamaConfig } from '../lib/model/config.js';
import { resolveTrainConfig } from '../lib/train/config.js';

describe('placement', () => {
  it('records a GPU only when tfjs-node-gpu reports a GPU device', () => {
    expect(placement('node-gpu', 'tensorflow', { isGPUPackage: true, isUsingGpuDevice: true })).toMatchObject({ name: 'node-gpu', device: 'gpu' });
    expect(placement('auto', 'tensorflow', { isGPUPackage: true, isUsingGpuDevice: true })).toMatchObject({ name: 'node-gpu', device: 'gpu' });
  });
  it('refuses --backend node-gpu when TensorFlow sees no GPU', () => {
    expect(() => placement('node-gpu', 'tensorflow', { isGPUPackage: true, isUsingGpuDevice: false })).toThrow(/^--backend node-gpu: @tensorflow\/tfjs-node-gpu loaded but TensorFlow sees no GPU/);
    // tfjs-node (CPU package) registered under the same engine name is no GPU either.
    expect(() => placement('node-gpu', 'tensorflow', { isGPUPackage: false, isUsingGpuDevice: false })).toThrow(/sees no GPU/);
  });
  it("'auto' with the GPU package but no GPU says it runs TensorFlow's CPU kernels", () => {
    const info = placement('auto', 'tensorflow', { isGPUPackage: true, isUsingGpuDevice: false });
    expect(info).toMatchObject({ name: 'node', device: 'cpu' });
    expect(info.detail).toMatch(/no GPU/);
  });
  it('the cpu backend really runs on the cpu backend', async () => {
    expect(await initBackendInfo('cpu')).toEqual({ name: 'cpu', device: 'cpu', detail: 'cpu: JavaScript kernels' });
  });
});

describe('wasm capacity', () => {
  const tinyLlama = resolveLlamaConfig({
    vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32,
    num_key_value_heads: 4, max_position_embeddings: 2048, tie_word_embeddings: false,
  });
  it('TinyLlama-1.1B (1,100,048,384 parameters) needs 16.4 GiB of fp32 AdamW state: refused on wasm, naming the backends that can', () => {
    expect(countParameters(tinyLlama)).toBe(1_100_048_384);
    expect(persistentTrainingBytes(1_100_048_384)).toBe(17_600_774_144);
    expect(() => checkCapacity('wasm', 1_100_048_384, 'runs/tinyllama/config.json')).toThrow(
      'runs/tinyllama/config.json: 1,100,048,384 parameters need 16.4 GiB for weights, gradients and AdamW moments in fp32, more than the wasm backend\'s 4.0 GiB heap; train with --backend node-gpu or node (@tensorflow/tfjs-node-gpu / -node)');
    expect(() => checkCapacity('node-gpu', 1_100_048_384, 'x')).not.toThrow();
  });
  it('the limit is exactly the 4 GiB heap', () => {
    expect(() => checkCapacity('wasm', WASM_HEAP_BYTES / 16, 'x')).not.toThrow();
    expect(() => checkCapacity('wasm', WASM_HEAP_BYTES / 16 + 1, 'x')).toThrow(/more than the wasm backend/);
  });
});

describe('GPU configs', () => {
  const json = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
  it('ask for the GPU on both sides and are otherwise the shipped defaults', () => {
    expect(json('pipelines/configs/precompute-gpu.json')).toEqual({ ...json('pipelines/configs/precompute.json'), device: 'cuda' });
    const student = json('pipelines/configs/student-gpu.json');
    expect(student).toEqual({ ...json('pipelines/configs/student.json'), backend: 'node-gpu' });
    expect(resolveTrainConfig(student, 'student-gpu.json').backend).toBe('node-gpu');
  });
});
