/**
 * Every IO convention `kd teacher export` writes (DESIGN §3.4: Optimum plain / with past / merged,
 * onnxruntime-genai, external data) gives the same top-k signal through the precompute path
 * (openOnnxSession → buildFeeds → addTopKOutputs → runTopK), and the KV cache really is a cache.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  addTopKOutputs, exportLlamaOnnx, externalDataFiles, ioNamesOf, ONNX_IOS, openDerivedSession, openOnnxSession, OnnxIo, readOnnx,
  runLogits, runTopK, TopKResult, writeDerivedOnnx, writeLlamaOnnx,
} from '../lib/onnx/index.js';
import { maxAbsDiff, randomIds, testWeights, tinyConfig } from './fixtures/llama.js';

const cfg = tinyConfig(false), w = testWeights(cfg, 21), V = cfg.vocab_size;
const B = 2, L = 7, ids = randomIds(B * L, V, 22);
const topk = { k: 5, temperatures: [1, 2, 4] };

const kvNames = (prefix: string) => [0, 1].flatMap((i) => [`${prefix}.${i}.key`, `${prefix}.${i}.value`]);
const EXPECTED_IO: Record<OnnxIo, { inputs: string[]; outputs: string[] }> = {
  optimum: { inputs: ['input_ids', 'attention_mask', 'position_ids'], outputs: ['logits'] },
  'optimum-kv': { inputs: ['input_ids', 'attention_mask', 'position_ids', ...kvNames('past_key_values')], outputs: ['logits', ...kvNames('present')] },
  merged: { inputs: ['input_ids', 'attention_mask', 'position_ids', ...kvNames('past_key_values'), 'use_cache_branch'], outputs: ['logits', ...kvNames('present')] },
  genai: { inputs: ['input_ids', 'attention_mask', ...kvNames('past_key_values')], outputs: ['logits', ...kvNames('present')] },
};

function expectSameSignal(got: TopKResult, want: TopKResult): void {
  expect([...got.topkIds]).toEqual([...want.topkIds]);
  expect(maxAbsDiff(got.topkLogits, want.topkLogits)).toBeLessThanOrEqual(1e-5);
  expect(maxAbsDiff(got.logZ, want.logZ)).toBeLessThanOrEqual(1e-5);
}

describe('kd teacher export IO variants', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-variants-'));
  const reference = (async () => runTopK(await openOnnxSession(addTopKOutputs(exportLlamaOnnx(cfg, w), topk), { device: 'cpu' }), ids, B, L))();

  it.each(ONNX_IOS)('%s: declared IO names and identical top-k / log_z', async (io) => {
    const bytes = exportLlamaOnnx(cfg, w, { io });
    expect(ioNamesOf(bytes)).toEqual(EXPECTED_IO[io]);
    const h = await openOnnxSession(bytes, { device: 'cpu' });
    expect(h.inputNames).toEqual(EXPECTED_IO[io].inputs);
    const pastMeta = h.session.inputMetadata.find((m) => m.name === 'past_key_values.1.value');
    if (io !== 'optimum') expect(pastMeta && 'shape' in pastMeta ? pastMeta.shape : []).toEqual(['batch_size', 2, 'past_sequence_length', 8]);
    expectSameSignal(await runTopK(await openOnnxSession(addTopKOutputs(bytes, topk), { device: 'cpu' }), ids, B, L), await reference);
  });

  it.each(['optimum', 'merged'] as const)('external data (%s): weights in model.onnx.data, surgery result opened by path', async (io) => {
    const src = join(dir, `ext-${io}`), path = join(src, 'model.onnx');
    const sizes = writeLlamaOnnx(path, cfg, w, { io, externalData: true });
    expect(readdirSync(src).sort()).toEqual(['model.onnx', 'model.onnx.data']);
    expect(sizes.dataBytes).toBeGreaterThan(4 * sizes.modelBytes); // the weights moved out (small constants and norms stay)
    const derived = addTopKOutputs(readOnnx(path), topk);
    expect(externalDataFiles(derived)).toEqual(['model.onnx.data']);
    const out = join(dir, `out-${io}`, 'topk.onnx');
    writeDerivedOnnx(path, derived, out);
    expectSameSignal(await runTopK(await openOnnxSession(out, { device: 'cpu' }), ids, B, L), await reference);
    const h = await openDerivedSession(path, derived, { device: 'cpu' }); // what precompute/eval do
    expect(h.source).toBe(path);
    expectSameSignal(await runTopK(h, ids, B, L), await reference);
    expect(readdirSync(src).sort()).toEqual(['model.onnx', 'model.onnx.data']); // the temporary model is gone
  });

  it('genai derives HF positions from a left-padded mask like buildFeeds does for Optimum', async () => {
    const mask = Int32Array.from([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const plain = await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, w), { device: 'cpu' }), ids, B, L, mask);
    const genai = await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, w, { io: 'genai' }), { device: 'cpu' }), ids, B, L, mask);
    expect(maxAbsDiff(genai.logits, plain.logits)).toBeLessThanOrEqual(1e-5);
  });
});

/** Feeds for a one-row decoder step: ids after `past` (present tensors of the previous step, or empty). */
function stepFeeds(ioNames: string[], stepIds: number[], start: number, past: Record<string, ort.Tensor>, useCache: boolean): Record<string, ort.Tensor> {
  const n = stepIds.length, total = start + n;
  const i64 = (v: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), dims);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(stepIds, [1, n]), attention_mask: i64(Array(total).fill(1), [1, total]),
    position_ids: i64(Array.from({ length: n }, (_, t) => start + t), [1, n]),
    use_cache_branch: new ort.Tensor('bool', Uint8Array.of(useCache ? 1 : 0), [1]),
  };
  for (const name of ioNames.filter((x) => x.startsWith('past_key_values'))) {
    feeds[name] = past[name.replace('past_key_values', 'present')] ?? new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 8]);
  }
  return Object.fromEntries(ioNames.map((x) => [x, feeds[x]]));
}

describe('KV cache', () => {
  const row = [...ids.subarray(0, L)];

  it.each(['optimum-kv', 'merged', 'genai'] as const)('%s: prefix then one cached step = full forward', async (io) => {
    const full = await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, w), { device: 'cpu' }), Int32Array.from(row), 1, L);
    const h = await openOnnxSession(exportLlamaOnnx(cfg, w, { io }), { device: 'cpu' });
    const first = await h.session.run(stepFeeds(h.inputNames, row.slice(0, L - 1), 0, {}, false));
    expect(first['present.1.key'].dims).toEqual([1, 2, L - 1, 8]);
    const step = await h.session.run(stepFeeds(h.inputNames, row.slice(L - 1), L - 1, first, true));
    expect(step['present.0.value'].dims).toEqual([1, 2, L, 8]);
    const want = full.logits.subarray((L - 1) * V, L * V);
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1);
    expect(maxAbsDiff(step.logits.data as Float32Array, want)).toBeLessThan(1e-4);
  });

  it('merged: use_cache_branch = false ignores a non-empty past', async () => {
    const h = await openOnnxSession(exportLlamaOnnx(cfg, w, { io: 'merged' }), { device: 'cpu' });
    const prefix = await h.session.run(stepFeeds(h.inputNames, row.slice(0, 3), 0, {}, false));
    const fresh = await h.session.run(stepFeeds(h.inputNames, row, 0, {}, false));
    const stale = await h.session.run(stepFeeds(h.inputNames, row, 0, prefix, false));
    expect(maxAbsDiff(stale.logits.data as Float32Array, fresh.logits.data as Float32Array)).toBe(0);
  });
});
