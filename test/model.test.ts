import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../lib/backend/select.js';
import { resolveLlamaConfig, countParameters } from '../lib/model/config.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { fromHfLayout, toHfLayout } from '../lib/model/hf-layout.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { LlamaModel } from '../lib/model/llama.js';
import { encodeSafetensors, readSafetensors, writeSafetensors } from '../lib/model/safetensors.js';
import { embeddingLookup, matMul2d } from '../lib/model/ops.js';

const cfg = resolveLlamaConfig({ vocab_size: 50, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 16 });

beforeAll(async () => { await initBackend('wasm'); });

describe('model weights', () => {
  it('HF layout ↔ fused layout round-trips every tensor exactly', () => {
    const hf = initLlamaWeights(cfg, 3);
    const back = toHfLayout(cfg, fromHfLayout(cfg, hf));
    expect([...back.keys()].sort()).toEqual([...hf.keys()].sort());
    for (const [name, t] of hf) {
      expect(back.get(name)!.shape).toEqual(t.shape);
      expect(Array.from(back.get(name)!.data)).toEqual(Array.from(t.data));
    }
  });

  it('counts parameters like HF (tied embeddings once)', () => {
    // embed 50·16 + per layer (16 + 16·16 + 2·8·16 + 16·16 + 16 + 3·24·16) + final norm 16
    expect(countParameters(cfg)).toBe(800 + 2 * (16 + 256 + 256 + 256 + 16 + 1152) + 16);
    expect(countParameters({ ...cfg, tie_word_embeddings: false })).toBe(countParameters(cfg) + 800);
  });

  it('names the missing or mis-shaped tensor', () => {
    const hf = initLlamaWeights(cfg, 1);
    hf.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => fromHfLayout(cfg, hf, 'ckpt')).toThrow("ckpt: missing tensor 'model.layers.1.mlp.up_proj.weight'");
    const bad = initLlamaWeights(cfg, 1);
    bad.set('model.norm.weight', { shape: [15], data: new Float32Array(15) });
    expect(() => fromHfLayout(cfg, bad, 'ckpt')).toThrow(/'model.norm.weight' has shape \[15\] but config.json implies \[16\]/);
  });

  it('safetensors: header layout, F32 exact, F16 rounding, truncation error', () => {
    const t = new Map([['a', { shape: [2, 2], data: new Float32Array([1, -2, 0.1, 65504]) }]]);
    const buf = encodeSafetensors(t, 'F32', { format: 'pt' });
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString());
    expect(header.a).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
    const dir = mkdtempSync(join(tmpdir(), 'kd-st-'));
    writeSafetensors(join(dir, 'x.safetensors'), t, 'F16');
    const back = readSafetensors(join(dir, 'x.safetensors')).tensors.get('a')!;
    expect(Array.from(back.data)).toEqual([1, -2, 0.0999755859375, 65504]);
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(/missing.safetensors: safetensors file not found/);
  });

  it('a saved checkpoint reloads to identical logits', () => {
    const m = new LlamaModel(cfg, undefined, 7);
    const dir = mkdtempSync(join(tmpdir(), 'kd-ckpt-'));
    saveCheckpoint(dir, cfg, m.toNamedTensors());
    const { cfg: cfg2, weights } = loadCheckpoint(dir);
    const m2 = new LlamaModel(cfg2, weights);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], 'int32');
    expect(Array.from(m2.logits(ids).dataSync())).toEqual(Array.from(m.logits(ids).dataSync()));
    m.dispose(); m2.dispose();
  });
});

describe('model forward', () => {
  it('is causal: logits at t do not depend on tokens after t', () => {
    const m = new LlamaModel(cfg, undefined, 5);
    const a = m.forward(tf.tensor2d([[3, 1, 4, 1, 5, 9]], [1, 6], 'int32'));
    const b = m.forward(tf.tensor2d([[3, 1, 4, 7, 7, 7]], [1, 6], 'int32'));
    const diff = tf.max(tf.abs(tf.sub(tf.slice(a, [0, 0, 0], [1, 3, 50]), tf.slice(b, [0, 0, 0], [1, 3, 50])))).dataSync()[0];
    expect(diff).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeGreaterThan(1e-4);
    m.dispose();
  });

  it('refuses windows longer than max_position_embeddings', () => {
    const m = new LlamaModel(cfg, undefined, 5);
    expect(() => m.logits(tf.zeros([1, 17], 'int32') as tf.Tensor2D)).toThrow('sequence length 17 exceeds max_position_embeddings 16');
    m.dispose();
  });

  it('custom gradients equal the stock ones (matMul2d, embeddingLookup with repeated ids)', () => {
    const a = tf.randomNormal([5, 3], 0, 1, 'float32', 1) as tf.Tensor2D, b = tf.randomNormal([3, 4], 0, 1, 'float32', 2) as tf.Tensor2D;
    const w = tf.randomNormal([5, 4], 0, 1, 'float32', 3);
    const f1 = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matMul2d(x as tf.Tensor2D, y as tf.Tensor2D), w));
    const f2 = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), w));
    const [g1, g2] = [tf.grads(f1)([a, b]), tf.grads(f2)([a, b])];
    g1.forEach((g, i) => expect(tf.max(tf.abs(tf.sub(g, g2[i]))).dataSync()[0]).toBeLessThan(1e-5));
    const table = tf.randomNormal([6, 2]) as tf.Tensor2D, ids = tf.tensor1d([1, 4, 1, 1], 'int32');
    const up = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embeddingLookup(t as tf.Tensor2D, ids), up)))(table);
    expect(Array.from(g.dataSync())).toEqual([0, 0, 13, 16, 0, 0, 0, 0, 3, 4, 0, 0]);
  });

  it('leaks no tensors across forward passes', () => {
    const m = new LlamaModel(cfg, undefined, 5);
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    tf.tidy(() => { m.logits(ids); }); // builds the cached tables
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.tidy(() => { m.logits(ids); });
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});
