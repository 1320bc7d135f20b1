import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run as prep } from '../stages/prep.js';
import { readStream } from '../lib/data/windows.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { evaluateOnnx } from '../lib/metrics/onnx-eval.js';
import { exportLlamaOnnx, writeOnnx } from '../lib/onnx/index.js';

// Perplexity through ONNX Runtime on a random model: invariances of DESIGN §5.
describe('evaluateOnnx', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-eval-'));
  const p = join(dir, 'prep'), onnx = join(dir, 'm.onnx');
  beforeAll(async () => {
    await prep({ out: p, max_documents: 40, vocab_size: 300, seq_len: 16, quiet: true });
    const cfg = resolveLlamaConfig({ vocab_size: 300, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 32 });
    const w = initLlamaWeights(cfg, 4);
    for (const t of w.values()) for (let i = 0; i < t.data.length; i++) t.data[i] *= 20; // logits of order 1
    writeOnnx(onnx, exportLlamaOnnx(cfg, w));
  });

  it('sliding windows score every token of each document but the first, whatever the batch size', async () => {
    const { docs } = readStream(p, 'validation');
    const expected = docs.reduce((n, d) => n + d.tokens, 0); // tokens + EOS − the unscored first token
    const one = await evaluateOnnx(onnx, { prep: p, batchSize: 1, maxWindows: 0, stride: 8 });
    const many = await evaluateOnnx(onnx, { prep: p, batchSize: 5, maxWindows: 0, stride: 8 });
    expect(one.scored_tokens).toBe(expected);
    expect(many.scored_tokens).toBe(expected);
    expect(many.ppl).toBeCloseTo(one.ppl, 3);
    expect(one.ppl).toBeGreaterThan(1);
  });

  it('a longer context (smaller stride) never scores more or fewer tokens', async () => {
    const a = await evaluateOnnx(onnx, { prep: p, batchSize: 4, maxWindows: 0, stride: 16 });
    const b = await evaluateOnnx(onnx, { prep: p, batchSize: 4, maxWindows: 0, stride: 4 });
    expect(a.scored_tokens).toBe(b.scored_tokens);
    expect(Number.isFinite(a.bpb) && a.bpb > 0).toBe(true);
  });

  it('packed windows: batch size does not change the result', async () => {
    const a = await evaluateOnnx(onnx, { prep: p, batchSize: 1, maxWindows: 12, stride: 0 });
    const b = await evaluateOnnx(onnx, { prep: p, batchSize: 7, maxWindows: 12, stride: 0 });
    expect(a.scored_tokens).toBe(12 * 16);
    expect(b.ppl).toBeCloseTo(a.ppl, 3);
  });
});
