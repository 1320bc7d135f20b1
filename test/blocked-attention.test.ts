/**
 * Blocked attention (lib/model/attention.ts): query blocks of any size (divisors of L or not)
 * give the unblocked logits and gradients, on the GQA, bias and sliding-window fixtures, with
 * dropout drawing the same masks; and no [S, G·L, L] score tensor exists when blocked.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../lib/backend/select.js';
import { UNCHUNKED } from '../lib/memory/options.js';
import { blockedAttention } from '../lib/model/attention.js';
import { attentionMask } from '../lib/model/attention-mask.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { dropout } from '../lib/model/dropout.js';
import { LlamaModel } from '../lib/model/llama.js';
import { expectGradsClose, logitGrads } from './grad-helpers.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/architectures/', import.meta.url));

/** The unblocked reference: softmax(q·kᵀ + mask)·v over [S, G·L, L] at once. */
function fullAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, G: number, window: number | null, drop?: { rate: number; seed: number }): tf.Tensor3D {
  const L = k.shape[1];
  const mask = tf.tensor2d(attentionMask(L, G, window), [G * L, L]);
  return tf.matMul(dropout(tf.softmax(tf.add(tf.matMul(q, k, false, true), mask)) as tf.Tensor3D, drop, 4), v);
}

const maxRelDiff = (a: tf.Tensor, b: tf.Tensor) => {
  const x = a.dataSync(), y = b.dataSync();
  let d = 0, s = 0;
  for (let i = 0; i < x.length; i++) { d = Math.max(d, Math.abs(x[i] - y[i])); s = Math.max(s, Math.abs(x[i])); }
  return d / s;
};

describe('blocked attention on wasm', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  it('equals unblocked attention (value and gradients) for blocks 1, 3, 4, 5, 10 of L = 11, causal and windowed, with dropout', () => {
    const S = 3, G = 2, L = 11, hd = 4;
    const q = tf.randomNormal([S, G * L, hd], 0, 1, 'float32', 1) as tf.Tensor3D;
    const k = tf.randomNormal([S, L, hd], 0, 1, 'float32', 2) as tf.Tensor3D;
    const v = tf.randomNormal([S, L, hd], 0, 1, 'float32', 3) as tf.Tensor3D;
    const R = tf.randomNormal([S, G * L, hd], 0, 1, 'float32', 4);
    for (const window of [null, 3]) {
      for (const drop of [undefined, { rate: 0.3, seed: 9 }]) {
        const f = (blocked: number | null) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(R,
          blocked === null ? fullAttention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, G, window, drop)
            : blockedAttention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, { L, G, window }, blocked, drop, 4)));
        const want = tf.grads(f(null))([q, k, v]);
        const wantValue = f(null)(q, k, v);
        for (const block of [1, 3, 4, 5, 10]) {
          const label = `window ${window} dropout ${drop?.rate ?? 0} block ${block}`;
          const out = blockedAttention(q, k, v, { L, G, window }, block, drop, 4);
          expect(maxRelDiff(fullAttention(q, k, v, G, window, drop), out), label).toBeLessThan(1e-5);
          expect(maxRelDiff(wantValue, f(block)(q, k, v)), label).toBeLessThan(1e-5);
          const got = tf.grads(f(block))([q, k, v]);
          got.forEach((g, i) => expect(maxRelDiff(want[i], g), `${label} grad ${i}`).toBeLessThan(1e-5));
        }
      }
    }
  });

  for (const name of ['qwen2', 'mistral']) {
    it(`${name}: model logits and weight gradients with blocks 2, 3, 5, 7 of L = 13 equal the unblocked (relative 1e-5)`, () => {
      const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
      const model = new LlamaModel(cfg, weights);
      const x = tf.tensor2d(Array.from({ length: 2 * 13 }, (_, i) => (i * 5 + 1) % cfg.vocab_size), [2, 13], 'int32');
      const plain = logitGrads(model, x, {});
      for (const block of [2, 3, 5, 7]) {
        const blocked = logitGrads(model, x, { memory: { ...UNCHUNKED, attentionQueryBlock: block } });
        expect(Math.abs(blocked.loss - plain.loss)).toBeLessThan(1e-4 * Math.abs(plain.loss));
        expectGradsClose(plain.grads, blocked.grads, 1e-5);
      }
      model.dispose(); x.dispose();
    });
  }

  it('never holds all heads\' [L, L] scores: no kernel output, forward or backward, exceeds [S, G·block, L]', () => {
    const S = 2, G = 4, L = 64, hd = 8, block = 8;
    const q = tf.randomNormal([S, G * L, hd], 0, 1, 'float32', 1) as tf.Tensor3D;
    const k = tf.randomNormal([S, L, hd], 0, 1, 'float32', 2) as tf.Tensor3D;
    const v = tf.randomNormal([S, L, hd], 0, 1, 'float32', 3) as tf.Tensor3D;
    const largestOutput = async (blk: number) => {
      const prof = await tf.profile(() => {
        const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(blockedAttention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, { L, G, window: null }, blk)))([q, k, v]);
        return g;
      });
      return Math.max(...prof.kernels.flatMap((kn) => kn.outputShapes.map((s) => s.reduce((a, b) => a * b, 1))));
    };
    return (async () => {
      expect(await largestOutput(block)).toBeLessThanOrEqual(S * G * block * L);
      expect(await largestOutput(L - 1)).toBeGreaterThan(S * G * block * L); // the check can see a big block
    })();
  });
});
