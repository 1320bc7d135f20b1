/**
 * Data augmentation in prep (issue 12, §5.3): token noise applied at read time to train inputs
 * (precompute's teacher inputs = the shards' input_ids = the student's inputs), crop of train
 * documents; validation windows never change.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cropSpan, type CropSpec } from '../lib/data/augment/crop.js';
import { keepProbabilities, parseCorpusList } from '../lib/data/augment/mix.js';
import { loadTokenNoise, TokenNoise, UNIGRAM_FILE, type TokenNoiseSpec } from '../lib/data/augment/token-noise.js';
import { readWindows, readWindowsMeta } from '../lib/data/windows.js';
import { batchIds, windowInputs } from '../lib/precompute/teacher-rows.js';
import { openLogitDataset } from '../lib/shards/index.js';
import { trainWindowData } from '../lib/train/data.js';
import { shardData } from '../lib/train/shard-data.js';
import { run as precompute } from '../stages/precompute.js';
import { resolvePrepConfig, run as prep } from '../stages/prep.js';
import { makePrep, runKd, SEQ_LEN, VOCAB, writeTeacher } from './precompute-fixture.js';

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const PREP = { max_documents: 40, vocab_size: VOCAB, seq_len: SEQ_LEN, quiet: true };

let base: { dir: string; prep: string };
beforeAll(async () => { base = await makePrep('augment'); }, 120_000);

describe('TokenNoise', () => {
  const spec = (over: Partial<TokenNoiseSpec> = {}): TokenNoiseSpec => ({ rate: 0.1, distribution: 'uniform', seed: 7, protected_ids: [0, 1], ...over });
  const inputs = () => Array.from({ length: 20000 }, (_, t) => (t % 50 === 0 ? 0 : t % 97 === 0 ? 1 : 2 + (t % 400)));

  it('replaces a share r of positions (within binomial error), identically on re-run, differently with another seed', () => {
    const clean = inputs();
    const a = clean.slice(), b = clean.slice(), c = clean.slice();
    const noise = new TokenNoise(spec(), VOCAB);
    const n = noise.apply(3, a);
    new TokenNoise(spec(), VOCAB).apply(3, b);
    new TokenNoise(spec({ seed: 8 }), VOCAB).apply(3, c);
    const eligible = clean.filter((x) => x > 1).length;
    // replaced counts positions whose draw fell under r; a replacement equal to the clean id is possible (1/V)
    expect(Math.abs(n - 0.1 * eligible)).toBeLessThan(4 * Math.sqrt(eligible * 0.1 * 0.9));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const d = clean.slice();
    noise.apply(4, d);
    expect(d).not.toEqual(a); // another row, other positions
  });

  it('never replaces a special token and never draws one (uniform and unigram)', () => {
    const counts = new Float64Array(VOCAB).fill(1);
    for (const s of [spec({ rate: 0.9 }), spec({ rate: 0.9, distribution: 'unigram' })]) {
      const clean = inputs(), x = clean.slice();
      new TokenNoise(s, VOCAB, counts).apply(0, x);
      clean.forEach((id, t) => { if (id <= 1) expect(x[t]).toBe(id); else expect(x[t]).toBeGreaterThan(1); });
    }
  });

  it('unigram draws follow the counts (ids without counts never drawn)', () => {
    const counts = new Float64Array(VOCAB);
    counts[5] = 3; counts[9] = 1;
    const x = new Array(8000).fill(100);
    new TokenNoise(spec({ rate: 0.5, distribution: 'unigram' }), VOCAB, counts).apply(0, x);
    const n5 = x.filter((v) => v === 5).length, n9 = x.filter((v) => v === 9).length;
    expect(n5 + n9 + x.filter((v) => v === 100).length).toBe(8000);
    expect(n5 / (n5 + n9)).toBeGreaterThan(0.7);
    expect(n5 / (n5 + n9)).toBeLessThan(0.8);
  });
});

describe('kd prep --token-noise', () => {
  let noisy: string;
  beforeAll(async () => {
    noisy = join(base.dir, 'noisy');
    await prep({ ...PREP, out: noisy, token_noise: 0.1, token_noise_distribution: 'unigram' });
  }, 120_000);

  it('records augmentation.token_noise; the windows on disk stay clean (train and validation unchanged)', () => {
    const meta = readWindowsMeta(noisy), clean = readWindowsMeta(base.prep);
    const tn = meta.augmentation!.token_noise!;
    expect(tn).toMatchObject({ rate: 0.1, distribution: 'unigram', seed: 1234, protected_ids: [meta.eos_id], unigram: { file: UNIGRAM_FILE } });
    expect(sha(join(noisy, UNIGRAM_FILE))).toBe(tn.unigram!.sha256);
    expect(meta.splits.train.sha256).toBe(clean.splits.train.sha256);
    expect(meta.splits.validation.sha256).toBe(clean.splits.validation.sha256);
    expect(clean.augmentation).toBeUndefined();
    const { positions, replaced } = tn.realized!;
    expect(positions).toBe(meta.splits.train.rows * SEQ_LEN);
    expect(Math.abs(replaced / positions - 0.1)).toBeLessThan(4 * Math.sqrt(0.09 / positions) + 0.01); // + EOS positions never replaced
  });

  it('teacher input in precompute == shard input_ids == student input in training == the noisy ids; targets clean', async () => {
    const teacher = writeTeacher(join(base.dir, 'teacher.onnx'));
    const out = join(base.dir, 'logits-noisy');
    await precompute({ teacher, prep: noisy, out, k: 4, max_windows: 24, rows_per_shard: 8, batch_size: 4, device: 'cpu', quiet: true });
    const w = readWindows(noisy, 'train'), meta = w.meta, L = w.seqLen;
    const noise = loadTokenNoise(noisy, meta.augmentation!.token_noise!, meta.vocab_size);
    const ds = await openLogitDataset(out);
    expect(ds.manifest.augmentation).toEqual(meta.augmentation);
    const rows = await ds.readAll();
    let differ = 0;
    for (const r of rows) {
      const i = Number(r.sample_id), row = w.ids.subarray(i * (L + 1), (i + 1) * (L + 1));
      const expected = windowInputs(w, i, noise);
      expect(Array.from(r.input_ids)).toEqual(Array.from(expected));
      expect(Array.from(r.target_ids)).toEqual(Array.from(row.subarray(1)));
      if (expected.some((x, t) => x !== row[t])) differ++;
    }
    expect(differ).toBeGreaterThan(rows.length / 2); // 32 positions at r = 0.1: most windows carry noise
    // The teacher's int64 batch is built from the same ids (low words).
    const words = new Uint32Array(batchIds(w, 4, 2, noise).buffer);
    expect(Array.from({ length: 2 * L }, (_, j) => words[2 * j])).toEqual([...windowInputs(w, 4, noise), ...windowInputs(w, 5, noise)]);
    // The student's streamed batches: every row's inputs are the noisy ids of the window its clean targets name.
    const byTargets = new Map(rows.map((r) => [Array.from(r.target_ids).join(','), r]));
    const data = await shardData(ds, { thread: false });
    try {
      const b = await data.batchAt(1, 0, 0, rows.length);
      for (let i = 0; i < b.B; i++) {
        const r = byTargets.get(Array.from(b.targets.subarray(i * L, (i + 1) * L)).join(','))!;
        expect(Array.from(b.inputIds.subarray(i * L, (i + 1) * L))).toEqual(Array.from(r.input_ids));
      }
    } finally {
      await data.close();
    }
    // Hard-target training on the windows (kd teacher) reads the same noisy inputs.
    const hard = trainWindowData(noisy).batch([4, 5]);
    expect(Array.from(hard.inputIds)).toEqual([...windowInputs(w, 4, noise), ...windowInputs(w, 5, noise)]);
    expect(Array.from(hard.targets.subarray(0, L))).toEqual(Array.from(w.ids.subarray(5 * (L + 1) - L, 5 * (L + 1))));
    // The clean prep has the same train.bin: a re-run over it into this dataset must not reuse the noisy shards.
    await expect(precompute({ teacher, prep: base.prep, out, k: 4, max_windows: 24, rows_per_shard: 8, batch_size: 4, device: 'cpu', quiet: true }))
      .rejects.toThrow(/augmentation differs/);
  }, 120_000);

  it('precompute without augmentation: manifest has none and input_ids are the clean windows', async () => {
    const teacher = writeTeacher(join(base.dir, 'teacher2.onnx'));
    const out = join(base.dir, 'logits-clean');
    await precompute({ teacher, prep: base.prep, out, k: 4, max_windows: 8, rows_per_shard: 8, batch_size: 4, device: 'cpu', quiet: true });
    const ds = await openLogitDataset(out), w = readWindows(base.prep, 'train'), L = w.seqLen;
    expect(ds.manifest.augmentation).toBeUndefined();
    for (const r of await ds.readAll()) {
      const i = Number(r.sample_id);
      expect(Array.from(r.input_ids)).toEqual(Array.from(w.ids.subarray(i * (L + 1), i * (L + 1) + L)));
    }
  }, 120_000);
});

describe('kd prep --crop-rate', () => {
  it('cropSpan: lengths in [min, min(max, n)], about a share `rate` of documents cropped, seeded', () => {
    const spec: CropSpec = { rate: 0.5, min_tokens: 64, max_tokens: 512, start: 'random', seed: 3 };
    let cropped = 0;
    const N = 4000;
    for (let i = 0; i < N; i++) {
      const n = 100 + (i % 900), [s, e] = cropSpan(spec, i, n);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(e).toBeLessThanOrEqual(n);
      if (e - s === n) continue;
      cropped++;
      expect(e - s).toBeGreaterThanOrEqual(64);
      expect(e - s).toBeLessThanOrEqual(Math.min(512, n));
      expect(cropSpan({ ...spec, start: 'head' }, i, n)[0]).toBe(0);
    }
    expect(Math.abs(cropped / N - 0.5)).toBeLessThan(4 * Math.sqrt(0.25 / N) + 0.01);
    expect(cropSpan(spec, 17, 800)).toEqual(cropSpan({ ...spec }, 17, 800));
  });

  it('crops train documents only, records the counts; validation windows unchanged', async () => {
    const out = join(base.dir, 'crop');
    await prep({ ...PREP, out, crop_rate: 0.5, crop_min_tokens: 16, crop_max_tokens: 64, tokenizer: join(base.prep, 'tokenizer.json') });
    const meta = readWindowsMeta(out), clean = readWindowsMeta(base.prep);
    const c = meta.augmentation!.crop!;
    expect(c).toMatchObject({ rate: 0.5, min_tokens: 16, max_tokens: 64, start: 'random', seed: 1234 });
    expect(c.counts.documents).toBe(meta.splits.train.documents);
    expect(Math.abs(c.counts.cropped / c.counts.documents - 0.5)).toBeLessThan(4 * Math.sqrt(0.25 / c.counts.documents));
    expect(c.counts.tokens_after).toBeLessThan(c.counts.tokens_before);
    expect(meta.splits.train.tokens).toBe(c.counts.tokens_after + c.counts.documents);
    expect(meta.splits.validation.sha256).toBe(clean.splits.validation.sha256);
    expect(meta.splits.validation.stream!.sha256).toBe(clean.splits.validation.stream!.sha256);
  }, 120_000);
});

describe('kd prep --corpus a:w --corpus b:w (mixing)', () => {
  const FULL = { vocab_size: VOCAB, seq_len: SEQ_LEN, quiet: true };
  let full: string;
  beforeAll(async () => {
    full = join(base.dir, 'full');
    await prep({ ...FULL, out: full });
  }, 120_000);

  it('downsamples train documents to the weights (recorded); validation and tokenizer are the default prep\'s', async () => {
    const out = join(base.dir, 'mix');
    await prep({ ...FULL, out, corpus: ['brown/informative:0.5', 'brown/imaginative:0.5'] });
    const meta = readWindowsMeta(out), clean = readWindowsMeta(full);
    expect(meta.tokenizer_sha256).toBe(clean.tokenizer_sha256);
    expect(meta.splits.validation.sha256).toBe(clean.splits.validation.sha256);
    expect(meta.splits.validation.stream!.sha256).toBe(clean.splits.validation.stream!.sha256);
    expect(meta.source).toBe('brown/informative:0.5 + brown/imaginative:0.5');
    const mix = meta.augmentation!.mix!;
    expect(mix.by).toBe('documents');
    const [inf, ima] = mix.corpora;
    expect(inf.documents + ima.documents).toBe(clean.splits.train.documents);
    expect(ima.probability).toBe(1); // the scarcer corpus keeps everything
    expect(inf.probability).toBeCloseTo(ima.documents / inf.documents, 12);
    expect(ima.kept_documents).toBe(ima.documents);
    const n = inf.documents, p = inf.probability;
    expect(Math.abs(inf.kept_documents - n * p)).toBeLessThan(4 * Math.sqrt(n * p * (1 - p)));
    expect(meta.splits.train.documents).toBe(inf.kept_documents + ima.kept_documents);
    // A re-run keeps the same documents.
    await prep({ ...FULL, out: join(base.dir, 'mix2'), corpus: ['brown/informative:0.5', 'brown/imaginative:0.5'] });
    expect(readWindowsMeta(join(base.dir, 'mix2')).splits.train.sha256).toBe(meta.splits.train.sha256);
  }, 120_000);

  it('--mix-by tokens shares out train tokens', async () => {
    const out = join(base.dir, 'mix-tokens');
    await prep({ ...FULL, out, corpus: ['brown/informative:0.7', 'brown/imaginative:0.3'], mix_by: 'tokens', tokenizer: join(full, 'tokenizer.json') });
    const meta = readWindowsMeta(out), mix = meta.augmentation!.mix!;
    expect(mix.by).toBe('tokens');
    expect(mix.corpora.map((c) => c.weight)).toEqual([0.7, 0.3]);
    const kept = mix.corpora.map((c) => c.kept_tokens), share = kept[0] / (kept[0] + kept[1]);
    expect(Math.abs(share - 0.7)).toBeLessThan(0.05); // documents of ~2,000 words: a few percent
    expect(meta.splits.validation.sha256).toBe(readWindowsMeta(full).splits.validation.sha256);
  }, 120_000);
});

describe('augmentation errors', () => {
  it('--corpus values: weights that are not positive numbers, the same corpus twice', () => {
    expect(() => resolvePrepConfig({ corpus: ['a.jsonl:abc', 'b.jsonl:1'] })).toThrow(/^--corpus 'a.jsonl:abc': weight must be a positive number$/);
    expect(() => resolvePrepConfig({ corpus: ['a.jsonl:0', 'b.jsonl:0'] })).toThrow(/--corpus 'a.jsonl:0': weight must be a positive number/);
    expect(() => resolvePrepConfig({ corpus: ['a.jsonl:1', 'a.jsonl:2'] })).toThrow(/given twice/);
    expect(resolvePrepConfig({ corpus: ['brown'] }).corpus).toBe('brown');
  });

  it('min > max names both flags', () => {
    expect(() => resolvePrepConfig({ crop_rate: 0.5, crop_min_tokens: 600, crop_max_tokens: 512 })).toThrow(/--crop-min-tokens 600 is larger than --crop-max-tokens 512/);
  });

  it('rates outside [0, 1) are refused naming the flag', async () => {
    const r = await runKd(['prep', '--token-noise', '1', '--out', join(base.dir, 'x')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--token-noise = 1 must be a number in \[0, 1\)/);
    const r2 = await runKd(['prep', '--crop-rate', '-0.1', '--out', join(base.dir, 'x')]);
    expect(r2.stderr).toMatch(/--crop-rate = -0.1 must be a number in \[0, 1\)/);
  }, 60_000);
});

// The primitives' unit tests (commit 0e774ea), kept.
describe('augmentation primitives', () => {
  it('token noise: realized rate within binomial error, seeded, specials kept', () => {
    const spec = { rate: 0.1, distribution: 'uniform' as const, seed: 7, protected_ids: [0, 1] };
    const noise = new TokenNoise(spec, 50);
    const n = 20000, clean = Array.from({ length: n }, (_, t) => 2 + (t % 40));
    clean[5] = 0; clean[9] = 1;
    const a = clean.slice(), b = clean.slice(), c = clean.slice();
    const r = noise.apply(3, a);
    noise.apply(3, b);
    new TokenNoise({ ...spec, seed: 8 }, 50).apply(3, c);
    expect(Math.abs(r / n - 0.1)).toBeLessThan(4 * Math.sqrt(0.09 / n));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a[5]).toBe(0); expect(a[9]).toBe(1);
    expect(a.every((x, t) => x === clean[t] || (x !== 0 && x !== 1))).toBe(true);
  });
  it('crop lengths in range', () => {
    const spec = { rate: 1, min_tokens: 10, max_tokens: 20, start: 'random' as const, seed: 1 };
    for (let i = 0; i < 200; i++) {
      const [s, e] = cropSpan(spec, i, 100);
      expect(e - s).toBeGreaterThanOrEqual(10); expect(e - s).toBeLessThanOrEqual(20);
      expect(s).toBeGreaterThanOrEqual(0); expect(e).toBeLessThanOrEqual(100);
    }
  });
  it('mix: weights parsed, bad weights refused, keep probabilities', () => {
    expect(parseCorpusList(['a.jsonl:0.7', 'b/:0.3'])).toEqual([{ source: 'a.jsonl', weight: 0.7 }, { source: 'b/', weight: 0.3 }]);
    expect(() => parseCorpusList(['a.jsonl:-1'])).toThrow(/weight must be a positive number/);
    expect(() => parseCorpusList(['a.jsonl:abc'])).toThrow(/--corpus 'a.jsonl:abc'/);
    expect(() => parseCorpusList(['a.jsonl:0'])).toThrow(/positive/);
    const q = keepProbabilities([{ source: 'a', weight: 0.7 }, { source: 'b', weight: 0.3 }], [700, 600]);
    expect(q[0]).toBeCloseTo(1); expect(q[1]).toBeCloseTo(0.5);
  });
});
