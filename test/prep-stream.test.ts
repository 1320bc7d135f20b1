import { describe, expect, it, beforeAll, vi } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { loadCorpus, readBrown } from '../lib/data/corpus.js';
import { buildStream, packWindows, readWindowsMeta, splitDocuments } from '../lib/data/windows.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainTokenizer } from '../lib/tokenizer/train.js';
import { run as prep } from '../stages/prep.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kd-stream-'));
const paragraphs = () => readBrown(undefined, 6).flatMap((d) => d.text.split('\n')).filter((p) => p.length > 80);

function parquet(path: string, texts: (string | null)[], rowGroupSize: number, field = 'text'): void {
  writeFileSync(path, Buffer.from(parquetWriteBuffer({
    columnData: [{ name: 'id', data: texts.map((_, i) => i), type: 'INT32' }, { name: field, data: texts, type: 'STRING' }],
    rowGroupSize,
  })));
}

describe('corpora streamed by kind', () => {
  let dir: string, texts: string[];
  beforeAll(() => {
    dir = tmp();
    texts = paragraphs().slice(0, 50);
    const jsonl = texts.map((text) => JSON.stringify({ text, n: 1 })).join('\n') + '\n';
    writeFileSync(join(dir, 'a.jsonl'), jsonl);
    writeFileSync(join(dir, 'a.jsonl.gz'), gzipSync(jsonl));
    writeFileSync(join(dir, 'a.txt.gz'), gzipSync(texts.join('\n\n') + '\n'));
    mkdirSync(join(dir, 'shards', 'train'), { recursive: true });
    parquet(join(dir, 'shards', 'train', 'part-00000.parquet'), [...texts.slice(0, 20), null, '  '], 7);
    parquet(join(dir, 'shards', 'train', 'part-00001.parquet'), texts.slice(20), 11);
  });

  it('.jsonl.gz and .txt.gz read like the plain files; ids name file and line', async () => {
    expect((await loadCorpus(join(dir, 'a.jsonl.gz'))).map((d) => d.text)).toEqual(texts);
    const txt = await loadCorpus(join(dir, 'a.txt.gz'));
    expect(txt.map((d) => d.text)).toEqual(texts);
    expect(txt[1].id).toBe('a.txt.gz:3');
    writeFileSync(join(dir, 'bad.jsonl.gz'), Buffer.from('not gzip at all'));
    await expect(loadCorpus(join(dir, 'bad.jsonl.gz'))).rejects.toThrow(`${join(dir, 'bad.jsonl.gz')}: not a valid gzip file`);
  });

  it('Parquet shards: a directory (recursive, sorted), a glob, row groups in order; nulls and blanks skipped', async () => {
    const fromDir = await loadCorpus(join(dir, 'shards'));
    expect(fromDir.map((d) => d.text)).toEqual(texts);
    expect(fromDir[0].id).toBe('part-00000.parquet:0');
    expect(fromDir[20].id).toBe('part-00001.parquet:0');
    expect((await loadCorpus(join(dir, 'shards', '*', 'part-*.parquet'))).map((d) => d.text)).toEqual(texts);
    expect((await loadCorpus(join(dir, 'shards', 'train', 'part-00001.parquet'), { limit: 3 })).map((d) => d.text)).toEqual(texts.slice(20, 23));
  });

  it('--text-field names the column or field; a missing one is refused listing what is there', async () => {
    const p = join(dir, 'content.parquet');
    parquet(p, texts.slice(0, 5), 2, 'content');
    expect((await loadCorpus(p, { textField: 'content' })).map((d) => d.text)).toEqual(texts.slice(0, 5));
    await expect(loadCorpus(p)).rejects.toThrow(`${p}: no column 'text' (columns: id, content); name the text column with --text-field`);
    await expect(loadCorpus(join(dir, 'a.jsonl'), { textField: 'body' })).rejects.toThrow(`${join(dir, 'a.jsonl')}:1: missing string field 'body'`);
    writeFileSync(join(dir, 'x.parquet'), 'PAR1 no footer');
    await expect(loadCorpus(join(dir, 'x.parquet'))).rejects.toThrow(`${join(dir, 'x.parquet')}: not a Parquet file`);
    await expect(loadCorpus(join(dir, 'nothing-*.jsonl'))).rejects.toThrow(`${join(dir, 'nothing-*.jsonl')}: no file matches`);
  });
});

describe('streamed prep equals the in-memory reference', () => {
  let dir: string, tokPath: string;
  beforeAll(async () => {
    dir = tmp();
    tokPath = join(dir, 'tok.json');
    await trainTokenizer(readBrown(undefined, 8).map((d) => d.text), tokPath, { vocabSize: 500 });
  });

  it('train.bin and validation.bin are the bytes of split → tokenize → join → pack, from .jsonl and from Parquet', async () => {
    const texts = paragraphs().slice(0, 300);
    writeFileSync(join(dir, 'c.jsonl'), texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    parquet(join(dir, 'c.parquet'), texts, 64);
    const tok = loadTokenizer(tokPath);
    const docs = await Promise.all(texts.map(async (t, i) => ({ id: String(i), ids: await tok.encode(t), bytes: Buffer.byteLength(t) })));
    const split = splitDocuments(docs, 0.1, 42);
    for (const [name, corpus] of [['j', 'c.jsonl'], ['p', 'c.parquet']]) {
      const out = join(dir, name);
      const s = await prep({ corpus: join(dir, corpus), tokenizer: tokPath, seq_len: 24, val_fraction: 0.1, seed: 42, out, quiet: true });
      expect(s.splits.validation.documents).toBe(30);
      for (const which of ['train', 'validation'] as const) {
        const expected = packWindows(buildStream(split[which], tok.eosId), 24, 'uint16');
        expect(new Uint16Array(new Uint8Array(readFileSync(join(out, `${which}.bin`))).buffer)).toEqual(expected);
      }
      const docsJson = JSON.parse(readFileSync(join(out, 'validation.docs.json'), 'utf8')) as { id: string }[];
      expect(docsJson.map((d) => Number(d.id.split(':')[1]) - (name === 'j' ? 1 : 0))).toEqual(split.validation.map((d) => Number(d.id)));
    }
  });

  it('progress reports documents and tokens/s on stderr; windows.json records the corpus pass and BOS', async () => {
    writeFileSync(join(dir, 'p.jsonl'), paragraphs().slice(0, 40).map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { lines.push(String(chunk)); return true; });
    try {
      await prep({ corpus: join(dir, 'p.jsonl'), tokenizer: tokPath, seq_len: 16, out: join(dir, 'prog') });
    } finally { spy.mockRestore(); }
    const text = lines.join('');
    expect(text).toMatch(/prep tokenize: 40\/40 docs \(100%\), [\d.]+ docs\/s [\d,]+ tok\/s/);
    expect(text).toMatch(/tokenize [\d.]+ s \([\d,]+ tokens\/s\)/);
    expect(readWindowsMeta(join(dir, 'prog'))).toMatchObject({ bos: { mode: 'none', id: null }, prep: { documents: 40, text_field: 'text' } });
  });

  it('the tokenizer is trained on a seeded sample of train documents, recorded in windows.json, the same for the same seed', async () => {
    writeFileSync(join(dir, 's.jsonl'), paragraphs().slice(0, 400).map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const run = (out: string, seed: number) => prep({ corpus: join(dir, 's.jsonl'), vocab_size: 300, tokenizer_sample_bytes: 20_000, seq_len: 16, seed, out: join(dir, out), quiet: true });
    await run('s1', 3);
    await run('s2', 3);
    await run('s3', 4);
    const sample = readWindowsMeta(join(dir, 's1')).prep!.tokenizer_sample!;
    expect(sample.probability).toBeGreaterThan(0);
    expect(sample.probability).toBeLessThan(1);
    expect(sample.bytes).toBeGreaterThan(10_000); // about max_bytes: each train document drawn with p = max_bytes / train bytes
    expect(sample.bytes).toBeLessThan(20_000 + 2_000); // the document that crosses the limit is the last one
    expect(sample.documents).toBeLessThan(readWindowsMeta(join(dir, 's1')).splits.train.documents / 2);
    expect(readFileSync(join(dir, 's2', 'tokenizer.json'))).toEqual(readFileSync(join(dir, 's1', 'tokenizer.json')));
    const other = readWindowsMeta(join(dir, 's3')).prep!.tokenizer_sample!;
    expect([other.documents, other.bytes]).not.toEqual([sample.documents, sample.bytes]);
  });

  it('a failing corpus leaves no windows.json and no temporary files', async () => {
    const out = join(dir, 'fail');
    writeFileSync(join(dir, 'short.jsonl'), '{"text":"a b"}\n{"text":"c"}\n');
    await expect(prep({ corpus: join(dir, 'short.jsonl'), tokenizer: tokPath, seq_len: 64, out, quiet: true }))
      .rejects.toThrow(`${out}: train split too small for one window`);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(out).sort()).toEqual(['tokenizer.json']);
  });
});
