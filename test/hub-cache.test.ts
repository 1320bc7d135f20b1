/**
 * A teacher laid out as the Hugging Face hub cache does it: `snapshots/<rev>/model.onnx` and its
 * external data are symlinks into `../../blobs/`. ORT refuses external data that resolves outside
 * the model's directory; kd opens such a model through a directory of hard links and gets the
 * same top-k signal as from a plain copy, leaving nothing behind.
 */
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { addTopKOutputs, openDerivedSession, openOnnxSession, readOnnx, runTopK, writeLlamaOnnx } from '../lib/onnx/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-hub-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hub-cache teacher', () => {
  const cfg = resolveLlamaConfig({ vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 });
  const weights = initLlamaWeights(cfg, 3);
  const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 64);
  const topk = { k: 4, temperatures: [1, 2] };

  it('opens a model whose model.onnx and model.onnx.data are symlinks into blobs/, with the plain copy\'s signal', async () => {
    const plain = join(dir, 'plain', 'model.onnx');
    writeLlamaOnnx(plain, cfg, weights, { externalData: true });
    const repo = join(dir, 'models--org--teacher'), blobs = join(repo, 'blobs'), snap = join(repo, 'snapshots', 'abc123');
    mkdirSync(blobs, { recursive: true }); mkdirSync(snap, { recursive: true });
    writeLlamaOnnx(join(blobs, 'model.onnx'), cfg, weights, { externalData: true });
    renameSync(join(blobs, 'model.onnx'), join(blobs, 'sha-model'));
    renameSync(join(blobs, 'model.onnx.data'), join(blobs, 'sha-data'));
    symlinkSync('../../blobs/sha-model', join(snap, 'model.onnx'));
    symlinkSync('../../blobs/sha-data', join(snap, 'model.onnx.data'));
    const teacher = join(snap, 'model.onnx');

    await openOnnxSession(teacher, { device: 'cpu' }); // the original opens (ORT resolves the model's own link first)...
    // ...but a derived model written beside it would not: its data resolves out of snapshots/abc123.
    const want = await runTopK(await openDerivedSession(plain, addTopKOutputs(readOnnx(plain), topk), { device: 'cpu' }), ids, 2, 8);
    const h = await openDerivedSession(teacher, addTopKOutputs(readOnnx(teacher), topk), { device: 'cpu' });
    expect(h.source).toBe(teacher);
    const got = await runTopK(h, ids, 2, 8);
    expect(got.topkIds).toEqual(want.topkIds);
    expect(got.logZ).toEqual(want.logZ);
    expect(readdirSync(blobs).sort()).toEqual(['sha-data', 'sha-model']); // the staging directory is gone
    expect(readdirSync(snap).sort()).toEqual(['model.onnx', 'model.onnx.data']);
  });
});
