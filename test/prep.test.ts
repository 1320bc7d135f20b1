import { describe, expect, it, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detokenize, readBrown, readTextCorpus, type Document } from '../lib/data/corpus.js';
import { buildStream, packWindows, readStream, readWindows, splitDocuments, windowAt, writeWindows, type TokenizedDoc } from '../lib/data/windows.js';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainTokenizer, truncateMerges, EOS_TOKEN } from '../lib/tokenizer/train.js';
import { resolvePrepConfig, run } from '../stages/prep.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kd-prep-test-'));
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let brown: Document[];
beforeAll(() => { brown = readBrown(); });

describe('Brown corpus reader', () => {
  it('yields the 500 documents in id order, tags stripped, readable text', () => {
    expect(brown).toHaveLength(500);
    expect(brown[0].id).toBe('ca01');
    expect(brown[499].id).toBe('cr09');
    expect(brown[0].text.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.\n')).toBe(true);
    expect(brown[0].text).toContain('the City Executive Committee, which had over-all charge of the election, "deserves the praise');
    // A few real words hold slashes (and/or, mg/l, /r/.), so look for the common tags only.
    const tagged = /\S\/(at|nn|nns|np|vbd|vbz|in|jj|cc|rb|cs|pps|dt)(-tl|-hl)?(\s|$)/;
    expect(brown.filter((d) => tagged.test(d.text)).map((d) => d.id)).toEqual([]);
    // Brown keeps inch marks like 1/2'' inside words, so only a non-digit '' is a leftover quote.
    const badPunct = /``|(?<!\d)''|;;|\?\?|!!| [,.;:?!)](\s|$)/;
    expect(brown.filter((d) => badPunct.test(d.text)).map((d) => d.id)).toEqual([]);
  });

  it('keeps paragraph breaks and splits off headlines', () => {
    const paragraphs = brown[0].text.split('\n');
    expect(paragraphs).toContain('Merger proposed');
    expect(paragraphs.length).toBeGreaterThan(20);
  });

  it('detokenizes quotes, brackets and Brown doubled punctuation', () => {
    expect(detokenize(['``', 'Hi', ',', "''", 'he', 'said', '(', 'twice', ')', ';', ';', 'Jr.', '.']))
      .toBe('"Hi," he said (twice); Jr.');
  });
});

describe('plain-text corpus reader', () => {
  it('reads a directory of .txt, a .txt by line and a .jsonl by line', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'b.txt'), 'second doc\n');
    writeFileSync(join(dir, 'docs', 'a.txt'), 'first doc\nline two');
    writeFileSync(join(dir, 'c.txt'), 'one\n\ntwo\n');
    writeFileSync(join(dir, 'c.jsonl'), '{"text":"x y"}\n\n{"text":"z"}\n');
    expect(await readTextCorpus(join(dir, 'docs'))).toEqual([{ id: 'a.txt', text: 'first doc\nline two' }, { id: 'b.txt', text: 'second doc' }]);
    expect(await readTextCorpus(join(dir, 'c.txt'))).toEqual([{ id: 'c.txt:1', text: 'one' }, { id: 'c.txt:3', text: 'two' }]);
    expect((await readTextCorpus(join(dir, 'c.jsonl'))).map((d) => d.text)).toEqual(['x y', 'z']);
  });

  it('rejects empty, missing and malformed corpora with the path', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'e.jsonl'), '\n\n');
    writeFileSync(join(dir, 'bad.jsonl'), '{"text":"ok"}\n{"txt":"no"}\n');
    await expect(readTextCorpus(join(dir, 'e.jsonl'))).rejects.toThrow(`${join(dir, 'e.jsonl')}: corpus is empty`);
    await expect(readTextCorpus(dir)).rejects.toThrow(`${dir}: corpus is empty`);
    await expect(readTextCorpus(join(dir, 'nope.txt'))).rejects.toThrow('corpus not found');
    await expect(readTextCorpus(join(dir, 'bad.jsonl'))).rejects.toThrow(`${join(dir, 'bad.jsonl')}:2: missing string field 'text'`);
  });
});

describe('byte-level BPE tokenizer', () => {
  let dir: string;
  let tok: Tokenizer;
  const texts = () => brown.slice(0, 30).map((d) => d.text);
  beforeAll(async () => {
    dir = tmp();
    await trainTokenizer(texts(), join(dir, 'a.json'), { vocabSize: 512 });
    tok = loadTokenizer(join(dir, 'a.json'));
  });

  it('has exactly the requested vocab size, bytes first, EOS at 256', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.eosId).toBe(256);
    expect(tok.idToToken(32)).toBe('Ġ'); // byte 0x20 (space) in GPT-2's byte alphabet
    expect(tok.idToToken(65)).toBe('A');
    expect(tok.idToToken(511)).not.toBeNull();
    const json = JSON.parse(readFileSync(join(dir, 'a.json'), 'utf8'));
    expect(json.pre_tokenizer).toMatchObject({ type: 'ByteLevel', add_prefix_space: false });
    expect(json.decoder.type).toBe('ByteLevel');
    expect(json.added_tokens).toEqual([expect.objectContaining({ id: 256, content: EOS_TOKEN, special: true })]);
    expect(Object.values(json.model.vocab).sort((a, b) => (a as number) - (b as number))).toEqual([...Array(512).keys()]);
  });

  it('round-trips text, including text unseen in training', async () => {
    for (const text of [...texts().slice(0, 5), brown[400].text, 'naïve café — 東京 🙂\n\ttabs']) {
      expect(await tok.decode(await tok.encode(text))).toBe(text);
    }
    expect(await tok.encode(EOS_TOKEN)).toEqual([256]);
  });

  it('encodes deterministically and trains deterministically', async () => {
    const a = await tok.encode(brown[0].text);
    expect(await tok.encode(brown[0].text)).toEqual(a);
    expect((await tok.encodeBatch([brown[0].text, 'x']))[0]).toEqual(a);
    expect(a.length).toBeLessThan(brown[0].text.length / 2); // merges compress
    await trainTokenizer(texts(), join(dir, 'b.json'), { vocabSize: 512 });
    expect(sha(join(dir, 'b.json'))).toBe(sha(join(dir, 'a.json')));
  });

  it('truncates merges by vocabulary size, keeping duplicate-result merges', () => {
    const merges: [string, string][] = [['a', 'b'], ['b', 'c'], ['ab', 'c'], ['a', 'bc'], ['c', 'c'], ['d', 'd']];
    const bpe = truncateMerges(merges, 261, [EOS_TOKEN]);
    expect(bpe.merges).toEqual(merges.slice(0, 5)); // 'a'+'bc' = 'abc' again: merge kept, no new id
    expect([bpe.vocab.ab, bpe.vocab.bc, bpe.vocab.abc, bpe.vocab.cc]).toEqual([257, 258, 259, 260]);
    expect(() => truncateMerges(merges, 300, [EOS_TOKEN])).toThrow('corpus too small for vocab_size 300');
  });

  it('names a missing tokenizer.json', () => {
    expect(() => loadTokenizer('/nope/tokenizer.json')).toThrow('/nope/tokenizer.json: tokenizer.json not found');
  });
});

describe('token windows', () => {
  const docs: TokenizedDoc[] = [
    { id: 'a', ids: [1, 2, 3], bytes: 3 }, { id: 'b', ids: [4, 5], bytes: 2 }, { id: 'c', ids: [6, 7, 8, 9], bytes: 4 },
  ];

  it('joins documents with EOS after each and packs windows of L+1 with stride L, no padding', () => {
    const stream = buildStream(docs, 0);
    expect(Array.from(stream)).toEqual([1, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9, 0]);
    expect(Array.from(packWindows(stream, 4, 'uint16'))).toEqual([1, 2, 3, 0, 4, /**/ 4, 5, 0, 6, 7]);
    expect(Array.from(packWindows(stream, 11, 'uint32'))).toEqual(Array.from(stream));
    expect(packWindows(stream, 12, 'uint16')).toHaveLength(0);
  });

  it('writes and reads windows; input/target are shifted by one', () => {
    const dir = tmp();
    const meta = writeWindows(dir, spec(), { train: docs, validation: docs.slice(0, 2) });
    expect(meta.splits.train).toMatchObject({ rows: 2, documents: 3, tokens: 12, bytes: 9 });
    expect(meta.dtype).toBe('uint16');
    const set = readWindows(dir, 'train');
    expect(set.ids).toBeInstanceOf(Uint16Array);
    const w = windowAt(set, 1);
    expect(Array.from(w.input)).toEqual([4, 5, 0, 6]);
    expect(Array.from(w.target)).toEqual([5, 0, 6, 7]);
    expect(() => windowAt(set, 2)).toThrow('out of range');
    const s = readStream(dir);
    expect(Array.from(s.ids)).toEqual([1, 2, 3, 0, 4, 5, 0]);
    expect(s.docs).toEqual([{ id: 'a', offset: 0, tokens: 3, bytes: 3 }, { id: 'b', offset: 4, tokens: 2, bytes: 2 }]);
  });

  it('refuses truncated, empty and missing window files and too-short splits', () => {
    const dir = tmp();
    writeWindows(dir, spec(), { train: docs, validation: docs });
    truncateSync(join(dir, 'train.bin'), 18);
    expect(() => readWindows(dir, 'train')).toThrow(`${join(dir, 'train.bin')}: truncated window file (expected 20 bytes, found 18)`);
    truncateSync(join(dir, 'train.bin'), 0);
    expect(() => readWindows(dir, 'train')).toThrow(`${join(dir, 'train.bin')}: empty window file`);
    expect(() => readWindows(join(dir, 'nope'), 'train')).toThrow('windows.json: not found');
    expect(() => writeWindows(dir, { ...spec(), seq_len: 12 }, { train: docs, validation: docs }))
      .toThrow('train split too small for one window (12 tokens < seq_len + 1 = 13)');
  });

  it('splits by document, deterministically for the seed, disjoint and complete', () => {
    const ids = [...Array(100).keys()];
    const a = splitDocuments(ids, 0.1, 7);
    expect(splitDocuments(ids, 0.1, 7)).toEqual(a);
    expect(a.validation).toHaveLength(10);
    expect([...a.train, ...a.validation].sort((x, y) => x - y)).toEqual(ids);
    expect(a.train.filter((i) => a.validation.includes(i))).toEqual([]);
    expect(splitDocuments(ids, 0.1, 8).validation).not.toEqual(a.validation);
    expect(splitDocuments([1, 2, 3], 0.01, 1).validation).toHaveLength(1);
    expect(splitDocuments([1, 2], 0.9, 1).train).toHaveLength(1);
    expect(() => splitDocuments([1], 0.5, 1)).toThrow('at least 2');
  });

  function spec() {
    return { seq_len: 4, eos_id: 0, vocab_size: 10, tokenizer_sha256: 'x', source: 'test', seed: 1, val_fraction: 0.5 };
  }
});

describe('prep stage', () => {
  it('runs corpus → tokenizer → windows on a Brown slice and reuses a tokenizer', async () => {
    const out = tmp();
    const s = await run({ max_documents: 40, vocab_size: 512, seq_len: 64, out, quiet: true });
    expect(s.splits.validation.documents).toBe(2); // round(40 · 0.05)
    expect(s.splits.train.documents).toBe(38);
    expect(s.tokenizer).toMatchObject({ vocab_size: 512, eos_id: 256, trained: true });
    const train = readWindows(out, 'train');
    expect(train.rows).toBe(s.splits.train.windows);
    expect(train.rows).toBe(Math.floor((s.splits.train.tokens - 1) / 64));
    expect(train.meta.tokenizer_sha256).toBe(sha(join(out, 'tokenizer.json')));
    const eos = Array.from(readStream(out).ids).filter((id) => id === 256).length;
    expect(eos).toBe(2);
    expect(JSON.parse(readFileSync(join(out, 'prep.json'), 'utf8'))).toMatchObject({ vocab_size: 512, seq_len: 64, seed: 1234, corpus: 'brown' });

    const out2 = tmp();
    const s2 = await run({ max_documents: 40, seq_len: 64, out: out2, quiet: true, tokenizer: join(out, 'tokenizer.json') });
    expect(s2.tokenizer).toMatchObject({ trained: false, sha256: s.tokenizer.sha256 });
    expect(sha(join(out2, 'train.bin'))).toBe(sha(join(out, 'train.bin')));
  });

  it('validates its config', () => {
    expect(() => resolvePrepConfig({ foo: 1 })).toThrow("prep config: unknown key 'foo' (valid: corpus, tokenizer, vocab_size");
    expect(() => resolvePrepConfig({ seq_len: 0 })).toThrow('prep config: seq_len = 0 must be');
    expect(() => resolvePrepConfig({ val_fraction: 1 })).toThrow('val_fraction');
    expect(() => resolvePrepConfig({ vocab_size: 40000 })).toThrow('vocab_size');
    expect(resolvePrepConfig({ seed: 5 })).toMatchObject({ seed: 5, vocab_size: 4096, corpus: 'brown', out: 'runs/prep' });
  });
});
