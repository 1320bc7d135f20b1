/**
 * --device on a machine without a usable CUDA provider (this one: onnxruntime-node installed with
 * ONNXRUNTIME_NODE_INSTALL=skip): 'auto' says so once and runs on CPU, 'cuda' is a one-line error,
 * and what ran is what the outputs record. Its own file: the CUDA failure is remembered per process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { writeWindows } from '../lib/data/windows.js';
import { compareOnnx } from '../lib/metrics/onnx-compare.js';
import { evaluateOnnx } from '../lib/metrics/onnx-eval.js';
import { exportLlamaOnnx, openOnnxSession, writeOnnx } from '../lib/onnx/index.js';
import { randomIds, testWeights, tinyConfig } from './fixtures/llama.js';

const cfg = tinyConfig(true), bytes = exportLlamaOnnx(cfg, testWeights(cfg, 5));
const cudaLoads = await openOnnxSession(bytes, { device: 'cuda', source: 'probe' }).then(() => true, () => false);

describe.skipIf(cudaLoads)('--device without CUDA', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-device-')), model = join(dir, 'model.onnx');
  writeOnnx(model, bytes);
  const docs = [0, 1, 2].map((i) => ({ id: `d${i}`, ids: randomIds(40, cfg.vocab_size, i), bytes: 100 }));
  writeWindows(dir, { seq_len: 8, eos_id: 0, vocab_size: cfg.vocab_size, tokenizer_sha256: 'x', source: 'test', seed: 1, val_fraction: 0.5 },
    { train: docs, validation: docs });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordLevel', vocab: Object.fromEntries(Array.from({ length: cfg.vocab_size }, (_, i) => [`t${i}`, i])) } })); // every prep has one (bits per byte)
  afterEach(() => { vi.restoreAllMocks(); });

  it("'cuda' is a one-line error naming the model, for sessions, compare and eval", async () => {
    const err = await openOnnxSession(model, { device: 'cuda' }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(new RegExp(`^${model}: CUDA execution provider is not available \\([^\\n]+\\)$`));
    await expect(compareOnnx(model, model, { prep: dir, batchSize: 2, maxWindows: 2, device: 'cuda' }))
      .rejects.toThrow(`${model}: CUDA execution provider is not available`);
    await expect(evaluateOnnx(model, { prep: dir, batchSize: 2, maxWindows: 2, device: 'cuda' }))
      .rejects.toThrow(`${model}: CUDA execution provider is not available`);
  });

  it("'auto' says once why CUDA is unavailable, then runs on CPU; results record 'cpu'", async () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { lines.push(String(chunk)); return true; });
    const h = await openOnnxSession(model, { device: 'auto' });
    expect(h.executionProvider).toBe('cpu');
    const r = await compareOnnx(model, model, { prep: dir, batchSize: 2, maxWindows: 3, device: 'auto' });
    expect([r.a.execution_provider, r.b.execution_provider]).toEqual(['cpu', 'cpu']);
    expect((await evaluateOnnx(model, { prep: dir, batchSize: 2, maxWindows: 2, device: 'auto' })).execution_provider).toBe('cpu');
    const notes = lines.filter((l) => l.includes('CUDA'));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/^kd: CUDA execution provider unavailable \([^\n]+\); using CPU\n$/);
  });
});
