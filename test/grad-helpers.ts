/** Gradient comparisons shared by the recompute, blocked-attention and chunked-loss tests. */
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardOptions, LlamaModel } from '../lib/model/llama.js';

/** Gradients of Σ logits ⊙ R (R fixed random) for every variable, by name. */
export function logitGrads(model: LlamaModel, ids: tf.Tensor2D, opts: ForwardOptions): { loss: number; grads: Map<string, Float32Array> } {
  const R = tf.randomNormal([ids.size, model.cfg.vocab_size], 0, 1, 'float32', 11);
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.logits(ids, opts), R)) as tf.Scalar, model.variables());
  const out = new Map([...model.params].map(([name, v]) => [name, grads[v.name].dataSync() as Float32Array]));
  const loss = value.dataSync()[0];
  tf.dispose([R, value, ...Object.values(grads)]);
  return { loss, grads: out };
}

/** max |a − b| ≤ rel · max |a| for every tensor (relative to the tensor's largest entry). */
export function expectGradsClose(a: Map<string, Float32Array>, b: Map<string, Float32Array>, rel: number): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let diff = 0, scale = 0;
    for (let i = 0; i < x.length; i++) { diff = Math.max(diff, Math.abs(x[i] - y[i])); scale = Math.max(scale, Math.abs(x[i])); }
    expect(scale, name).toBeGreaterThan(0);
    expect(diff / scale, name).toBeLessThanOrEqual(rel);
  }
}

