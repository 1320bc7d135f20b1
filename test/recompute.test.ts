/**
 * Recomputation (lib/model/recompute.ts): gradients with each decoder layer recomputed in the
 * backward pass equal those of the plain forward, on the qwen2 (GQA + biases), mistral (GQA +
 * sliding window) and llama fixtures, with and without dropout and blocked attention.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../lib/backend/select.js';
import { UNCHUNKED, type MemoryOptions } from '../lib/memory/options.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { LlamaModel } from '../lib/model/llama.js';
import { recomputed, vjp } from '../lib/model/recompute.js';
import { expectGradsClose, logitGrads } from './grad-helpers.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/architectures/', import.meta.url));

const ids = (L: number, V: number, B = 2) => tf.tensor2d(Array.from({ length: B * L }, (_, i) => (i * 7 + 3) % V), [B, L], 'int32');
const mem = (o: Partial<MemoryOptions>): MemoryOptions => ({ ...UNCHUNKED, ...o });

describe('recomputation on wasm', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  for (const name of ['qwen2', 'mistral', 'llama-default']) {
    it(`${name}: gradients with recompute equal those without (relative 1e-5), also with dropout and blocked attention`, () => {
      const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
      const model = new LlamaModel(cfg, weights);
      const x = ids(9, cfg.vocab_size);
      const plain = logitGrads(model, x, {});
      const re = logitGrads(model, x, { memory: mem({ recompute: true }) });
      expect(re.loss).toBeCloseTo(plain.loss, 4);
      expectGradsClose(plain.grads, re.grads, 1e-5);
      const dropout = { rate: 0.2, seed: 5 };
      const dPlain = logitGrads(model, x, { dropout });
      const dRe = logitGrads(model, x, { dropout, memory: mem({ recompute: true, attentionQueryBlock: 4 }) });
      expectGradsClose(dPlain.grads, dRe.grads, 1e-5);
      expect(Math.abs(dPlain.loss - plain.loss)).toBeGreaterThan(1e-3); // dropout did act
      model.dispose(); x.dispose();
    });
  }

  it('keeps only the layer input: fewer bytes live at the end of the forward pass', () => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, 'qwen2'));
    const model = new LlamaModel(cfg, weights);
    const x = ids(32, cfg.vocab_size, 4);
    const liveAfterForward = (memory: MemoryOptions) => {
      const before = tf.memory().numBytes;
      let held = 0;
      const { value, grads } = tf.variableGrads(() => {
        const y = tf.sum(model.hidden(x, { memory })) as tf.Scalar;
        held = tf.memory().numBytes - before; // the tape's saved tensors are live here
        return y;
      }, model.variables());
      tf.dispose([value, ...Object.values(grads)]);
      return held;
    };
    const plain = liveAfterForward(UNCHUNKED), re = liveAfterForward(mem({ recompute: true }));
    expect(re).toBeLessThan(plain / 2);
    model.dispose(); x.dispose();
  });

  it('vjp inside a backward pass leaves the outer tape intact (nested use, no leak)', () => {
    const w = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
    const f = (x: tf.Tensor2D) => tf.tanh(tf.matMul(x, w)) as tf.Tensor2D;
    const x0 = tf.tensor2d([[0.1, -0.2], [0.3, 0.05]]);
    const direct = tf.variableGrads(() => tf.sum(tf.square(f(tf.sin(x0) as tf.Tensor2D))) as tf.Scalar, [w]);
    const before = tf.memory().numTensors;
    const nested = tf.variableGrads(() => tf.sum(tf.square(recomputed(f, tf.sin(x0) as tf.Tensor2D, [w]))) as tf.Scalar, [w]);
    expect(Array.from(nested.grads[w.name].dataSync())).toEqual(Array.from(direct.grads[w.name].dataSync()).map((v) => expect.closeTo(v, 6)));
    tf.dispose([nested.value, ...Object.values(nested.grads)]);
    expect(tf.memory().numTensors).toBe(before);
    const g = vjp(() => tf.mul(x0, 3), [x0], tf.onesLike(x0));
    expect(Array.from(g[0].dataSync())).toEqual([3, 3, 3, 3]);
  });
});
