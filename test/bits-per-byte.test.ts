import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStream, readWindows } from '../lib/data/windows.js';
import { evaluateOnnx } from '../lib/metrics/onnx-eval.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { exportLlamaOnnx, writeOnnx } from '../lib/onnx/index.js';
import { tokenByteLengths } from '../lib/tokenizer/byte-lengths.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { run as prep } from '../stages/prep.js';

// Bits per byte counts the UTF-8 bytes of the scored target tokens only: not the end-of-document
// tokens, not the first token of a document (never a target), not the documents --max-windows skips.
describe('bits per byte', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-bpb-'));
  const p = join(dir, 'prep'), onnx = join(dir, 'm.onnx');
  const corpus = join(dir, 'corpus.txt');
  const lines = Array.from({ length: 24 }, (_, i) =>
    `Line ${i}: café au lait, naïve façade — 漢字 and emoji 🙂 ${'the quick brown fox jumps over the lazy dog '.repeat(1 + (i % 4))}`);
  beforeAll(async () => {
    writeFileSync(corpus, lines.join('\n') + '\n');
    await prep({ corpus, out: p, vocab_size: 300, seq_len: 16, val_fraction: 0.25, quiet: true });
    const cfg = resolveLlamaConfig({ vocab_size: 300, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 32 });
    const w = initLlamaWeights(cfg, 4);
    for (const t of w.values()) for (let i = 0; i < t.data.length; i++) t.data[i] *= 20;
    writeOnnx(onnx, exportLlamaOnnx(cfg, w));
  });

  it('the per-token byte table sums to each document\'s UTF-8 length (multi-byte characters split across tokens included)', async () => {
    const table = tokenByteLengths(join(p, 'tokenizer.json'));
    const tok = loadTokenizer(join(p, 'tokenizer.json'));
    expect(table[tok.eosId]).toBe(0);
    for (const text of lines) {
      const ids = await tok.encode(text);
      expect(ids.reduce((n, id) => n + table[id], 0)).toBe(Buffer.byteLength(text));
    }
  });

  it('sliding windows over --max-windows documents: bytes of those documents minus each first token', async () => {
    const tok = loadTokenizer(join(p, 'tokenizer.json'));
    const { ids, docs } = readStream(p, 'validation');
    for (const n of [2, 0]) {
      const r = await evaluateOnnx(onnx, { prep: p, batchSize: 4, maxWindows: n, stride: 8 });
      const used = n > 0 ? docs.slice(0, n) : docs;
      // independent of the table: the documents' own text lengths and the binding's decode of the first token
      let bytes = 0;
      for (const d of used) bytes += d.bytes - Buffer.byteLength(await tok.decode([ids[d.offset]], true));
      expect(r.scored_bytes).toBe(bytes);
      expect(r.bpb).toBeCloseTo((r.nll * r.scored_tokens) / Math.LN2 / bytes, 10);
    }
  });

  it('packed windows: the decoded text of the scored targets of the first N windows, EOS excluded', async () => {
    const tok = loadTokenizer(join(p, 'tokenizer.json'));
    const w = readWindows(p, 'validation');
    const n = Math.min(3, w.rows);
    const r = await evaluateOnnx(onnx, { prep: p, batchSize: 2, maxWindows: n, stride: 0 });
    const targets: number[] = [];
    for (let i = 0; i < n; i++) targets.push(...w.ids.subarray(i * (w.seqLen + 1) + 1, (i + 1) * (w.seqLen + 1)));
    const bytes = Buffer.byteLength(await tok.decode(targets, true)); // one decode: characters split across windows join up
    expect(r.scored_bytes).toBe(bytes);
    expect(r.bpb).toBeCloseTo((r.nll * r.scored_tokens) / Math.LN2 / bytes, 10);
  });
});
