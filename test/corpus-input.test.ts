import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeInPieces, splitAtWordBoundaries } from '../lib/data/chunks.js';
import { readBrown, readTextCorpus } from '../lib/data/corpus.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { trainTokenizer } from '../lib/tokenizer/train.js';
import { run as prep } from '../stages/prep.js';
import { kdCli, ParsedCommandLine } from '../pipelines/cli.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kd-corpus-'));

describe('corpus bytes that are not UTF-8 are refused, naming the file and the offset', () => {
  it('Latin-1 text: refused with the first bad byte; read with encoding latin1', async () => {
    const dir = tmp(), path = join(dir, 'latin1.txt');
    writeFileSync(path, Buffer.concat([Buffer.from('first line\nun caf'), Buffer.from([0xe9]), Buffer.from(' noir\n')]));
    await expect(readTextCorpus(path)).rejects.toThrow(`${path}: not UTF-8 text: byte 0xe9 at byte offset 17 (a binary file, or Latin-1 text: give --encoding latin1)`);
    expect((await readTextCorpus(path, Infinity, 'latin1')).map((d) => d.text)).toEqual(['first line', 'un café noir']);
  });

  it('a binary file among .txt documents, a .jsonl and a sequence cut off at the end', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'a.txt'), 'fine text ✓');
    writeFileSync(join(dir, 'docs', 'b.txt'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    await expect(readTextCorpus(join(dir, 'docs'))).rejects.toThrow(`${join(dir, 'docs', 'b.txt')}: not UTF-8 text: byte 0x89 at byte offset 0`);
    writeFileSync(join(dir, 'c.jsonl'), Buffer.concat([Buffer.from('{"text":"ok"}\n{"text":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}\n')]));
    await expect(readTextCorpus(join(dir, 'c.jsonl'))).rejects.toThrow(`${join(dir, 'c.jsonl')}: not UTF-8 text: byte 0xed at byte offset 23`); // a surrogate
    writeFileSync(join(dir, 'cut.txt'), Buffer.concat([Buffer.from('abc '), Buffer.from('漢').subarray(0, 2)]));
    await expect(readTextCorpus(join(dir, 'cut.txt'))).rejects.toThrow(`${join(dir, 'cut.txt')}: not UTF-8 text: a UTF-8 sequence cut off at the end of the file at byte offset 4`);
  });

  it('characters across the 1 MiB read chunks decode; a bad byte past the first chunk has its exact offset', async () => {
    const dir = tmp(), path = join(dir, 'long.txt');
    const text = 'é漢🙂 '.repeat(150_000); // 1.5 MB, every chunk boundary falls inside some character
    writeFileSync(path, `${text}\nsecond\n`);
    expect((await readTextCorpus(path)).map((d) => d.text)).toEqual([text.trim(), 'second']);
    const bad = Buffer.concat([Buffer.from(text), Buffer.from([0xff]), Buffer.from('\n')]);
    writeFileSync(path, bad);
    await expect(readTextCorpus(path)).rejects.toThrow(`${path}: not UTF-8 text: byte 0xff at byte offset ${Buffer.byteLength(text)}`);
  });

  it('kd prep takes --encoding latin1 and --overwrite', async () => {
    const parsed = async (args: string[]) => { try { await (await kdCli(args, true)).parseAsync(); } catch (e) { return e instanceof ParsedCommandLine ? 'ok' : (e as Error).message; } };
    expect(await parsed(['prep', '--encoding', 'latin1', '--overwrite'])).toBe('ok');
    expect(await parsed(['prep', '--encoding', 'cp1252'])).toMatch(/encoding/);
  });
});

describe('long documents are tokenized in pieces with the same ids', () => {
  it('pieces are cut before " <letter>" and join back to the text', () => {
    const text = 'aa bb  cc\tdd 12 ee'.repeat(50);
    const pieces = splitAtWordBoundaries(text, 40);
    expect(pieces.join('')).toBe(text);
    expect(pieces.length).toBeGreaterThan(10);
    for (const p of pieces.slice(1)) expect(p).toMatch(/^ \p{L}/u);
    expect(splitAtWordBoundaries('x'.repeat(100), 10)).toEqual(['x'.repeat(100)]); // no boundary: whole
  });

  it('ids of the pieces equal the ids of the whole text, and no encode call exceeds the batch budget', async () => {
    const dir = tmp();
    const docs = readBrown(undefined, 12).map((d) => d.text);
    await trainTokenizer(docs, join(dir, 'tok.json'), { vocabSize: 400 });
    const tok = loadTokenizer(join(dir, 'tok.json'));
    const long = docs.join(' ') + ' café 漢字 🙂 x';
    const calls: number[] = [];
    const [pieced, short] = await encodeInPieces([long, 'short one'], async (t) => { calls.push(t.reduce((n, x) => n + x.length, 0)); return tok.encodeBatch(t); }, 2000, 5000);
    expect(Array.from(pieced)).toEqual(await tok.encode(long));
    expect(Array.from(short)).toEqual(await tok.encode('short one'));
    expect(calls.length).toBeGreaterThan(5);
    expect(Math.max(...calls)).toBeLessThanOrEqual(5000 + 2000); // a piece ends at the first boundary after 2000 chars
  });

  it('a tokenizer trained on one long line equals one trained on the line unsplit (the merges do not change)', async () => {
    const dir = tmp();
    const line = readBrown(undefined, 30).map((d) => d.text.replace(/\n/g, ' ')).join(' '); // ~300 K chars > one piece
    expect(splitAtWordBoundaries(line).length).toBeGreaterThan(1);
    await trainTokenizer([line, 'a second document'], join(dir, 'pieces.json'), { vocabSize: 600 });
    // reference: the binding's trainer on the unsplit text (what trainTokenizer did before)
    const { spawnSync } = await import('node:child_process');
    const { createRequire } = await import('node:module');
    writeFileSync(join(dir, 'corpus.txt'), `${line}\na second document\n`);
    const script = `const tk = require(process.argv[1]); const t = new tk.Tokenizer(tk.BPE.empty()); t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true)); t.train([process.argv[2]]); t.save(process.argv[3], false);`;
    spawnSync(process.execPath, ['-e', script, createRequire(import.meta.url).resolve('tokenizers'), join(dir, 'corpus.txt'), join(dir, 'whole.json')], { stdio: 'ignore' });
    const merges = (f: string) => (JSON.parse(readFileSync(join(dir, f), 'utf8')).model.merges as (string | string[])[]).map((m) => (typeof m === 'string' ? m : m.join(' ')));
    const whole = merges('whole.json');
    const kept = merges('pieces.json');
    expect(kept.length).toBeGreaterThan(300);
    expect(kept).toEqual(whole.slice(0, kept.length));
  });
});

describe('kd prep refuses to overwrite an existing output', () => {
  it('a second prep into the same --out is refused unless overwrite', async () => {
    const out = join(tmp(), 'prep');
    const cfg = { max_documents: 6, vocab_size: 300, seq_len: 16, out, quiet: true };
    await prep(cfg);
    const before = readFileSync(join(out, 'windows.json'));
    await expect(prep({ ...cfg, seed: 7 })).rejects.toThrow(`${out}: holds a prep output already; --overwrite replaces it`);
    expect(readFileSync(join(out, 'windows.json'))).toEqual(before);
    const s = await prep({ ...cfg, seed: 7, overwrite: true });
    expect(s.splits.train.documents).toBe(5);
    expect(JSON.parse(readFileSync(join(out, 'windows.json'), 'utf8')).seed).toBe(7);
  });

  it('reusing the tokenizer.json that sits in --out alone is not an existing output', async () => {
    const first = join(tmp(), 'prep');
    await prep({ max_documents: 6, vocab_size: 300, seq_len: 16, out: first, quiet: true });
    const out = join(tmp(), 'prep2');
    mkdirSync(out);
    writeFileSync(join(out, 'tokenizer.json'), readFileSync(join(first, 'tokenizer.json')));
    const s = await prep({ max_documents: 6, seq_len: 16, out, quiet: true, tokenizer: join(out, 'tokenizer.json') });
    expect(s.tokenizer.trained).toBe(false);
  });
});
