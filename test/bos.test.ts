import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBrown } from '../lib/data/corpus.js';
import { encodeInPieces } from '../lib/data/chunks.js';
import { openWindowFile, readStream, readWindows, readWindowsMeta, writeWindows } from '../lib/data/windows.js';
import { postProcessorBos } from '../lib/tokenizer/bos.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainTokenizer } from '../lib/tokenizer/train.js';
import { checkPrepProvenance } from '../lib/train/provenance.js';
import type { LogitManifest } from '../lib/shards/index.js';
import { run as prep } from '../stages/prep.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kd-bos-'));
const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const template = (bos: string, id: number) => ({
  type: 'TemplateProcessing', single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: { [bos]: { id: bos, ids: [id], tokens: [bos] } },
});

/** A Llama-2-style tokenizer.json: SentencePiece BPE with byte fallback, `<s>` = 1 added by a TemplateProcessing, `</s>` = 2, Prepend "▁" normalizer. */
function llama2Tokenizer(path: string): void {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let id = 259;
  for (const c of '▁abcdefghijklmnopqrstuvwxyzTAIHS,.') vocab[c] = id++;
  const merges = ['▁ t', 'h e', '▁t he', '▁ a', 'i n', '▁ o', '▁ s', 'e r', '▁ w', 'a n', 'o n'];
  for (const m of merges) vocab[m.replace(' ', '')] = id++;
  writeFileSync(path, JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null, post_processor: template('<s>', 1),
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  }));
}

/** A Llama-3-style tokenizer.json: byte-level BPE (trained here) with `<|begin_of_text|>` = 128000 added by a Sequence[ByteLevel, TemplateProcessing], `<|end_of_text|>` = 128001. */
async function llama3Tokenizer(path: string): Promise<void> {
  await trainTokenizer(readBrown(undefined, 10).map((d) => d.text), path, { vocabSize: 400 });
  const json = JSON.parse(readFileSync(path, 'utf8'));
  json.added_tokens = [special(128000, '<|begin_of_text|>'), special(128001, '<|end_of_text|>')];
  delete json.model.vocab['<|endoftext|>'];
  json.model.vocab['<|begin_of_text|>'] = 128000;
  json.model.vocab['<|end_of_text|>'] = 128001;
  json.post_processor = { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }, template('<|begin_of_text|>', 128000)] };
  writeFileSync(path, JSON.stringify(json));
}

function corpus(dir: string, n = 12): string {
  const path = join(dir, 'c.jsonl');
  const docs = readBrown(undefined, 3).flatMap((d) => d.text.split('\n')).filter((p) => p.length > 200).slice(0, n);
  writeFileSync(path, docs.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  return path;
}

describe('BOS as the tokenizer does it', () => {
  let dir: string, l2: string, l3: string, kdTok: string;
  beforeAll(async () => {
    dir = tmp();
    l2 = join(dir, 'llama2.json'); llama2Tokenizer(l2);
    l3 = join(dir, 'llama3.json'); await llama3Tokenizer(l3);
    kdTok = join(dir, 'kd.json'); await trainTokenizer(readBrown(undefined, 5).map((d) => d.text), kdTok, { vocabSize: 300 });
  });

  it("finds the post-processor's BOS: <s> = 1 (Llama-2), <|begin_of_text|> = 128000 (Llama-3), none for kd's byte-level BPE", async () => {
    expect(await postProcessorBos(loadTokenizer(l2))).toEqual({ id: 1, token: '<s>', from: 'post-processor' });
    expect(await postProcessorBos(loadTokenizer(l3))).toEqual({ id: 128000, token: '<|begin_of_text|>', from: 'post-processor' });
    expect(await postProcessorBos(loadTokenizer(kdTok))).toBeUndefined();
  });

  it('Llama-2 style: by default every document starts with <s>, its ids exactly those of tokenizer(text) with special tokens, then </s>', async () => {
    const out = join(dir, 'p2');
    const s = await prep({ corpus: corpus(dir), tokenizer: l2, seq_len: 32, val_fraction: 0.3, out, quiet: true });
    expect(s.bos).toEqual({ mode: 'document', id: 1, token: '<s>' });
    const meta = readWindowsMeta(out);
    expect(meta.bos).toEqual({ mode: 'document', id: 1 });
    expect(meta.eos_id).toBe(2);
    const tok = loadTokenizer(l2);
    const { ids, docs } = readStream(out);
    const texts = (await import('../lib/data/corpus.js')).loadCorpus(join(dir, 'c.jsonl'));
    const byId = new Map((await texts).map((d) => [d.id, d.text]));
    expect(docs.length).toBe(4);
    for (const d of docs) {
      expect(Array.from(ids.subarray(d.offset, d.offset + d.tokens))).toEqual(await tok.encodeWithSpecialTokens(byId.get(d.id)!));
      expect(ids[d.offset + d.tokens]).toBe(2);
    }
    expect(readWindows(out, 'train').ids[0]).toBe(1);
  });

  it('Llama-3 style: <|begin_of_text|> = 128000 at each document start, ids stored as uint32', async () => {
    const out = join(dir, 'p3');
    await prep({ corpus: corpus(dir), tokenizer: l3, seq_len: 32, val_fraction: 0.3, out, quiet: true });
    const meta = readWindowsMeta(out);
    expect(meta).toMatchObject({ bos: { mode: 'document', id: 128000 }, eos_id: 128001, dtype: 'uint32' });
    const { ids, docs } = readStream(out);
    expect(docs.map((d) => ids[d.offset])).toEqual(docs.map(() => 128000));
    expect(docs.map((d) => ids[d.offset + d.tokens])).toEqual(docs.map(() => 128001));
    expect(readWindows(out, 'train').ids[0]).toBe(128000);
  });

  it('--bos window: every window is BOS then seq_len real tokens, no target is the inserted BOS, the windows tile the stream', async () => {
    const out = join(dir, 'pw');
    await prep({ corpus: corpus(dir), tokenizer: l2, seq_len: 16, val_fraction: 0.3, out, quiet: true, bos: 'window' });
    expect(readWindowsMeta(out).bos).toEqual({ mode: 'window', id: 1 });
    const set = readWindows(out, 'validation');
    const { ids: stream } = readStream(out);
    expect(Array.from(stream).filter((id) => id === 1)).toEqual([]); // the stream itself has no BOS
    const real: number[] = [];
    for (let r = 0; r < set.rows; r++) {
      const row = Array.from(set.ids.subarray(r * 17, (r + 1) * 17));
      expect(row[0]).toBe(1);
      expect(row.slice(1)).not.toContain(1); // targets = row[1:]
      real.push(...row.slice(1));
    }
    expect(real).toEqual(Array.from(stream.subarray(0, set.rows * 16)));
    expect(set.rows).toBe(Math.floor(stream.length / 16));
  });

  it('window and document packing of a tiny stream (exact rows)', () => {
    const docs = [{ id: 'a', ids: [3, 4, 5], bytes: 3 }, { id: 'b', ids: [6, 7], bytes: 2 }];
    const spec = (mode: 'window' | 'document') => ({ seq_len: 3, eos_id: 0, vocab_size: 10, tokenizer_sha256: 'x', source: 't', seed: 1, val_fraction: 0.5, bos: { mode, id: 9 } });
    const w = tmp(), d = tmp();
    writeWindows(w, spec('window'), { train: docs, validation: docs });
    expect(Array.from(openWindowFile(w, 'train').read(0, 2))).toEqual([9, 3, 4, 5, /**/ 9, 0, 6, 7]); // stream 3 4 5 0 6 7 0: tail [0] dropped
    writeWindows(d, spec('document'), { train: docs, validation: docs });
    expect(Array.from(openWindowFile(d, 'train').read(0, 2))).toEqual([9, 3, 4, 5, /**/ 5, 0, 9, 6]); // stream 9 3 4 5 0 9 6 7 0
    expect(readStream(d).docs).toEqual([{ id: 'a', offset: 0, tokens: 4, bytes: 3 }, { id: 'b', offset: 5, tokens: 3, bytes: 2 }]);
  });

  it('--bos none with a Llama tokenizer writes no BOS; --bos document with a tokenizer that has none is refused', async () => {
    const out = join(dir, 'pn');
    await prep({ corpus: corpus(dir), tokenizer: l2, seq_len: 16, val_fraction: 0.3, out, quiet: true, bos: 'none' });
    expect(readWindowsMeta(out).bos).toEqual({ mode: 'none', id: null });
    expect(Array.from(readWindows(out, 'train').ids)).not.toContain(1);
    await expect(prep({ corpus: corpus(dir), tokenizer: kdTok, seq_len: 16, out: join(dir, 'px'), quiet: true, bos: 'document' }))
      .rejects.toThrow(`--bos document: ${join(dir, 'px', 'tokenizer.json')} has no BOS token (its post-processor adds none, and none of <s>, <|begin_of_text|>, <bos>, <|startoftext|> is in its vocabulary)`);
    // kd's own tokenizer: none by default, as before
    const s = await prep({ corpus: corpus(dir), tokenizer: kdTok, seq_len: 16, out: join(dir, 'pk'), quiet: true });
    expect(s.bos.mode).toBe('none');
  });

  it('a long document tokenized in pieces by a Prepend-normalizer (Llama-2) tokenizer has the ids of the whole', async () => {
    const tok = loadTokenizer(l2);
    expect(tok.prependsToEveryInput).toBe(true);
    const long = readBrown(undefined, 2).map((d) => d.text.replace(/\n/g, ' ')).join(' ');
    const [pieced] = await encodeInPieces([long], (t) => tok.encodeBatch(t), 3000, 10000, tok.prependsToEveryInput);
    expect(Array.from(pieced)).toEqual(await tok.encode(long));
  });

  it('kd train refuses logits computed on windows of another BOS mode', async () => {
    const out = join(dir, 'p2'); // document mode, from the Llama-2 test above
    const meta = readWindowsMeta(out);
    const m = { windows: { source: join(out, 'windows.json'), sha256: meta.splits.train.sha256, validation_sha256: meta.splits.validation.sha256, bos: 'none' } } as unknown as LogitManifest;
    await expect(checkPrepProvenance(out, m, 'data/manifest.json')).rejects.toThrow(`${join(out, 'windows.json')}: BOS mode document, but the logits in data/manifest.json were computed on windows with BOS mode none; give --prep the prep precompute read`);
    m.windows.bos = 'document';
    await expect(checkPrepProvenance(out, m, 'data/manifest.json')).resolves.toBeUndefined();
  });
});
