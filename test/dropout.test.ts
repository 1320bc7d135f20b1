/**
 * Dropout masks (lib/model/dropout.ts) come from int32 backend ops: the same on wasm and cpu and
 * equal to the exact host twin, a pure function of (seed, site, coordinates), with the right
 * keep rate and no correlation between neighbours; fast enough for large tensors.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { dropout, keepAt, keepMask } from '../lib/model/dropout.js';

const maskOf = (shape: number[], rate: number, seed: number, site: number) => {
  const y = dropout(tf.ones(shape), { rate, seed }, site);
  const d = y.dataSync() as Float32Array;
  y.dispose();
  return d;
};

describe('dropout masks from backend ops', () => {
  it('wasm and cpu draw the same mask, equal to the exact host twin keepAt', async () => {
    const masks: Float32Array[] = [];
    for (const backend of ['wasm', 'cpu'] as const) {
      await initBackend(backend);
      masks.push(maskOf([3, 50, 70], 0.25, 77, 5));
    }
    expect(Array.from(masks[1])).toEqual(Array.from(masks[0]));
    const C = 70;
    for (let i = 0; i < masks[0].length; i += 7) {
      expect(masks[0][i] > 0, `element ${i}`).toBe(keepAt(Math.floor(i / C), i % C, { rate: 0.25, seed: 77 }, 5));
    }
    // Coordinates near the int32 limit stay exact (no overflow): row 2·10⁹ matches the twin
    // (wasm's int32 FloorDiv goes through float32 and is off by one at 46337² − 1).
    await initBackend('wasm');
    const big = keepMask(tf.tensor2d([[2_000_000_000], [46337 * 46327 - 1]], [2, 1], 'int32'), tf.tensor2d([[0, 1, 46336]], [1, 3], 'int32'), { rate: 0.5, seed: 1 }, 2).dataSync();
    [[2_000_000_000, 0], [2_000_000_000, 1], [2_000_000_000, 46336], [46337 * 46327 - 1, 0]].forEach(([r, c], j) => {
      const idx = j < 3 ? j : 3;
      expect(big[idx] > 0).toBe(keepAt(r, c, { rate: 0.5, seed: 1 }, 2));
    });
  });

  it('is a pure function of (seed, site): same seed same mask, another seed or site another', async () => {
    await initBackend('wasm');
    const a = maskOf([64, 128], 0.1, 3, 1);
    expect(Array.from(maskOf([64, 128], 0.1, 3, 1))).toEqual(Array.from(a));
    const differ = (b: Float32Array) => b.reduce((n, v, i) => n + (v !== a[i] ? 1 : 0), 0);
    expect(differ(maskOf([64, 128], 0.1, 4, 1))).toBeGreaterThan(64 * 128 * 0.1);
    expect(differ(maskOf([64, 128], 0.1, 3, 2))).toBeGreaterThan(64 * 128 * 0.1);
  });

  it('keeps 1 − rate of the elements, scaled by 1/(1 − rate), with no neighbour correlation', async () => {
    await initBackend('wasm');
    for (const rate of [0.1, 0.5]) {
      const C = 256, m = maskOf([512, C], rate, 11, 0);
      const kept = m.filter((v) => v > 0);
      expect(kept.every((v) => Math.abs(v - 1 / (1 - rate)) < 1e-6)).toBe(true);
      const p = kept.length / m.length;
      expect(Math.abs(p - (1 - rate))).toBeLessThan(4 * Math.sqrt(rate * (1 - rate) / m.length));
      const b = Array.from(m, (v) => (v > 0 ? 1 : 0) - p);
      const corr = (lag: number) => { let s = 0, v = 0; for (let i = 0; i + lag < b.length; i++) { s += b[i] * b[i + lag]; v += b[i] * b[i]; } return s / v; };
      for (const lag of [1, 2, C, C + 1]) expect(Math.abs(corr(lag)), `lag ${lag}`).toBeLessThan(0.02);
    }
  });

  it('rate 0 or no options returns the input tensor itself', async () => {
    await initBackend('wasm');
    const x = tf.ones([2, 2]);
    expect(dropout(x, undefined, 0)).toBe(x);
    expect(dropout(x, { rate: 0, seed: 1 }, 0)).toBe(x);
  });
});
