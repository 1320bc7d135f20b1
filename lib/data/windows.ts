/**
 * Packed token windows (DESIGN §3.1): the prep stage's output and the input of precompute,
 * train and eval.
 *
 * On disk, a directory holding:
 * - `windows.json` — `WindowsMeta` (format `kd-windows`, version 1); written last, so a
 *   directory without it is incomplete.
 * - `train.bin`, `validation.bin` — raw little-endian token ids, shape [rows, seq_len + 1],
 *   row-major, `uint16` when vocab_size ≤ 65536 else `uint32`. input = row[0:L],
 *   target = row[1:L+1] (L = seq_len). With `bos.mode` none or document, row i is the packed
 *   stream `stream[i·L … i·L + L]`: consecutive windows share one token, so every stream token
 *   after the first is a target exactly once; with `window`, row i is BOS followed by
 *   `stream[i·L … i·L + L − 1]` (lib/data/window-writer.ts). No padding; the tail that does not
 *   fill a window is dropped.
 * - `validation.stream.bin` — the whole validation stream, unpacked (same dtype), and
 *   `validation.docs.json` — `[{ id, offset, tokens, bytes }]` per document, for
 *   sliding-window perplexity over complete documents (with `bos.mode` document, a document's
 *   `offset` is its BOS and `tokens` counts it).
 *
 * The stream of a split is `doc₁ EOS doc₂ EOS … docₙ EOS` (each doc preceded by BOS in
 * `document` mode), documents in corpus order.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import { SplitWriter, type BosSpec, type TokenDtype } from './window-writer.js';
import type { CropCounts, CropSpec } from './augment/crop.js';
import type { MixSpec } from './augment/mix.js';
import type { TokenNoiseSpec } from './augment/token-noise.js';

export { splitDocuments } from './split.js';
export { BOS_MODES, type BosMode, type BosSpec, type TokenDtype } from './window-writer.js';

export type SplitName = 'train' | 'validation';
export const SPLITS: SplitName[] = ['train', 'validation'];
export type TokenArray = Uint16Array | Uint32Array;

/** Per-split entry of `windows.json`. */
export interface SplitMeta {
  /** Window file name, relative to the directory. */
  file: string;
  /** Number of windows (rows of seq_len + 1 ids). */
  rows: number;
  /** Documents in the split. */
  documents: number;
  /** Tokens in the split's stream, EOS tokens included (before dropping the tail). */
  tokens: number;
  /** UTF-8 bytes of the split's document texts (for bits per byte). */
  bytes: number;
  /** sha256 (hex) of the window file. */
  sha256: string;
  /** The unpacked stream, when written (validation only). */
  stream?: { file: string; docs_file: string; sha256: string };
}

/** `windows.json`. */
export interface WindowsMeta {
  format: 'kd-windows';
  version: 1;
  seq_len: number;
  /** Offset between consecutive windows in the stream; always seq_len in version 1. */
  stride: number;
  dtype: TokenDtype;
  eos_id: number;
  vocab_size: number;
  tokenizer_sha256: string;
  /** Corpus name or path. */
  source: string;
  seed: number;
  val_fraction: number;
  /** Where BOS goes and its id (windows.json written before BOS was recorded reads as none). */
  bos: BosSpec;
  /** How prep read the corpus and trained the tokenizer (absent in older files). */
  prep?: PrepRecord;
  /** Train-data augmentation (lib/data/augment/); absent: none. The window files stay clean: token
   *  noise is applied when train inputs are read (precompute, teacher training). */
  augmentation?: Augmentation;
  splits: Record<SplitName, SplitMeta>;
}

/** windows.json `augmentation`: each entry present only when that augmentation is on. */
export interface Augmentation {
  token_noise?: TokenNoiseSpec;
  crop?: CropSpec & { counts: CropCounts };
  mix?: MixSpec;
}

/** What windows.json records of how the windows were made. */
export interface PrepRecord {
  /** Documents read (non-blank, after --max-documents). */
  documents: number;
  /** Text field/column of .jsonl and Parquet corpora. */
  text_field: string;
  /** The tokenizer-training sample, when prep trained the tokenizer: each train document drawn
   *  with `probability` by a seeded hash of its index, up to `max_bytes`. */
  tokenizer_sample?: { seed: number; probability: number; max_bytes: number; documents: number; bytes: number; seconds: number };
}

/** One tokenized document, as handed to `writeWindows`. */
export interface TokenizedDoc {
  id: string;
  ids: ArrayLike<number>;
  /** UTF-8 bytes of the document's text. */
  bytes: number;
}

/** Everything of `WindowsMeta` the caller decides (bos default: none); the rest is computed. */
export type WindowsSpec = Omit<WindowsMeta, 'format' | 'version' | 'stride' | 'dtype' | 'splits' | 'bos'> & { bos?: BosSpec };

/** BOS of a windows.json written before it was recorded. */
export const NO_BOS: BosSpec = { mode: 'none', id: null };

/** A split read back into memory. */
export interface WindowSet {
  meta: WindowsMeta;
  split: SplitName;
  rows: number;
  seqLen: number;
  /** [rows, seqLen + 1] ids, row-major. */
  ids: TokenArray;
}

/** uint16 when every id fits (vocab ≤ 65536), else uint32. */
export const dtypeFor = (vocabSize: number): TokenDtype => (vocabSize <= 65536 ? 'uint16' : 'uint32');
const BYTES: Record<TokenDtype, number> = { uint16: 2, uint32: 4 };

/** The packed stream of a split: each document followed by `eosId`. */
export function buildStream(docs: TokenizedDoc[], eosId: number): Uint32Array {
  const total = docs.reduce((n, d) => n + d.ids.length + 1, 0);
  const stream = new Uint32Array(total);
  let at = 0;
  for (const d of docs) {
    stream.set(d.ids, at);
    at += d.ids.length;
    stream[at++] = eosId;
  }
  return stream;
}

/** Windows of `seqLen + 1` ids with stride `seqLen`; the partial tail is dropped. */
export function packWindows(stream: ArrayLike<number>, seqLen: number, dtype: TokenDtype): TokenArray {
  const rows = Math.max(0, Math.floor((stream.length - 1) / seqLen));
  const out = dtype === 'uint16' ? new Uint16Array(rows * (seqLen + 1)) : new Uint32Array(rows * (seqLen + 1));
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j <= seqLen; j++) out[r * (seqLen + 1) + j] = stream[r * seqLen + j];
  }
  return out;
}

/** Input and target of window `i` (views, no copy): input = row[0:L], target = row[1:L+1]. */
export function windowAt(set: WindowSet, i: number): { input: TokenArray; target: TokenArray } {
  if (!Number.isInteger(i) || i < 0 || i >= set.rows) throw new Error(`window ${i} out of range [0, ${set.rows})`);
  const row = set.ids.subarray(i * (set.seqLen + 1), (i + 1) * (set.seqLen + 1));
  return { input: row.subarray(0, set.seqLen), target: row.subarray(1) };
}

/**
 * Packs and writes both splits and `windows.json` into `dir` (which must exist), from documents
 * held in memory (tests and small tools; prep streams through {@link openSplitWriters}). Files are
 * written under temporary names and renamed; `windows.json` comes last.
 * @throws Error naming the split when it is too short for one window or an id is ≥ vocab_size.
 */
export function writeWindows(dir: string, spec: WindowsSpec, splits: Record<SplitName, TokenizedDoc[]>): WindowsMeta {
  const writers = openSplitWriters(dir, spec);
  try {
    for (const split of SPLITS) for (const d of splits[split]) writers[split].addDocument(d.id, d.ids, d.bytes);
  } catch (e) {
    for (const w of Object.values(writers)) w.abort();
    throw e;
  }
  return commitWindows(dir, spec, writers);
}

/** A writer per split (validation also writes its unpacked stream). @throws Error naming a file that cannot be created */
export function openSplitWriters(dir: string, spec: WindowsSpec): Record<SplitName, SplitWriter> {
  const base = { dir, seqLen: spec.seq_len, dtype: dtypeFor(spec.vocab_size), vocabSize: spec.vocab_size, eosId: spec.eos_id, bos: spec.bos ?? NO_BOS };
  const train = new SplitWriter({ ...base, split: 'train', stream: false });
  try {
    return { train, validation: new SplitWriter({ ...base, split: 'validation', stream: true }) };
  } catch (e) {
    train.abort();
    throw e;
  }
}

/**
 * Commits both splits (after checking that each holds a window) and then writes `windows.json`.
 * @throws Error `<dir>: <split> split too small for one window (…)`; the temporary files are removed.
 */
export function commitWindows(dir: string, spec: WindowsSpec, writers: Record<SplitName, SplitWriter>): WindowsMeta {
  try {
    for (const split of SPLITS) writers[split].checkNotEmpty();
    const entries = { train: writers.train.commit(), validation: writers.validation.commit() };
    const meta: WindowsMeta = { format: 'kd-windows', version: 1, ...spec, bos: spec.bos ?? NO_BOS, stride: spec.seq_len, dtype: dtypeFor(spec.vocab_size), splits: entries };
    writeFileAtomic(join(dir, 'windows.json'), JSON.stringify(meta, null, 2) + '\n');
    return meta;
  } catch (e) {
    for (const w of Object.values(writers)) w.abort();
    throw e;
  }
}

/**
 * Reads `windows.json` of a window directory.
 * @throws Error naming the file when it is missing or not a kd-windows v1 file.
 */
export function readWindowsMeta(dir: string): WindowsMeta {
  const path = join(dir, 'windows.json');
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Error(`${dir}: is a file, expected a prep output directory (holding windows.json)`);
  if (!existsSync(path)) throw new Error(`${path}: not found (not a prep output directory?)`);
  let meta: WindowsMeta;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8')) as WindowsMeta;
  } catch {
    throw new Error(`${path}: invalid JSON`);
  }
  if (meta.format !== 'kd-windows' || meta.version !== 1) {
    throw new Error(`${path}: not a kd-windows version 1 file (format ${meta.format}, version ${meta.version})`);
  }
  return { ...meta, bos: meta.bos ?? NO_BOS };
}

/**
 * Reads one split's windows into memory (a plain read, no mmap).
 * @returns ids [rows, seqLen + 1] of the split's dtype.
 * @throws Error naming the file when it is missing, empty (`empty window file`) or not
 *   shorter than rows·(L+1)·bytes (`truncated window file (expected N bytes, found M)`) or longer.
 */
export function readWindows(dir: string, split: SplitName): WindowSet {
  const meta = readWindowsMeta(dir);
  const entry = meta.splits[split];
  const path = join(dir, entry.file);
  const data = readSized(path, entry.rows * (meta.seq_len + 1) * BYTES[meta.dtype], 'window file');
  return { meta, split, rows: entry.rows, seqLen: meta.seq_len, ids: typedView(data, meta.dtype) };
}

/** A split's window file opened for positional reads (any size: nothing is read up front). */
export interface WindowFile {
  meta: WindowsMeta;
  split: SplitName;
  path: string;
  rows: number;
  seqLen: number;
  /**
   * Windows `first … first + count − 1` ([count, seqLen + 1] ids of the split's dtype), read at
   * their offset (the file is opened for each call: no descriptor is held).
   * @throws Error when the range is outside [0, rows) or the file is shorter than it was
   */
  read(first: number, count: number): TokenArray;
}

/**
 * Opens one split's windows for positional reads: `windows.json` is read and the file's size
 * checked now (the errors of {@link readWindows}), rows are read as they are asked for.
 */
export function openWindowFile(dir: string, split: SplitName): WindowFile {
  const meta = readWindowsMeta(dir);
  const entry = meta.splits[split];
  const path = join(dir, entry.file);
  const width = BYTES[meta.dtype], rowBytes = (meta.seq_len + 1) * width;
  checkSize(path, entry.rows * rowBytes, 'window file');
  const read = (first: number, count: number): TokenArray => {
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > entry.rows) {
      throw new Error(`${path}: windows ${first}..${first + count - 1} outside [0, ${entry.rows})`);
    }
    const out = meta.dtype === 'uint16' ? new Uint16Array(count * (meta.seq_len + 1)) : new Uint32Array(count * (meta.seq_len + 1));
    readAt(path, new Uint8Array(out.buffer), first * rowBytes);
    return out;
  };
  return { meta, split, path, rows: entry.rows, seqLen: meta.seq_len, read };
}

/** Fills `into` from `path` at byte `position` (loops over short reads). */
function readAt(path: string, into: Uint8Array, position: number): void {
  const fd = openSync(path, 'r');
  try {
    for (let at = 0; at < into.length;) {
      const n = readSync(fd, into, at, into.length - at, position + at);
      if (n === 0) throw new Error(`${path}: file ended at byte ${position + at} (shorter than windows.json says)`);
      at += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** A document of an unpacked stream: `tokens` ids at `offset`, followed by one EOS. */
export interface StreamDoc {
  id: string;
  offset: number;
  tokens: number;
  bytes: number;
}

/**
 * Reads the unpacked stream of a split (validation) and its document list.
 * @throws Error naming the file when the split has no stream or a file is missing or truncated.
 */
export function readStream(dir: string, split: SplitName = 'validation'): { ids: TokenArray; docs: StreamDoc[] } {
  const meta = readWindowsMeta(dir);
  const stream = meta.splits[split].stream;
  if (!stream) throw new Error(`${join(dir, 'windows.json')}: ${split} split has no unpacked stream`);
  const path = join(dir, stream.file);
  const data = readSized(path, meta.splits[split].tokens * BYTES[meta.dtype], 'stream file');
  const docsPath = join(dir, stream.docs_file);
  if (!existsSync(docsPath)) throw new Error(`${docsPath}: not found`);
  return { ids: typedView(data, meta.dtype), docs: JSON.parse(readFileSync(docsPath, 'utf8')) as StreamDoc[] };
}

/** Throws unless `path` exists and is exactly `expected` bytes long. */
function checkSize(path: string, expected: number, what: string): void {
  if (!existsSync(path)) throw new Error(`${path}: not found`);
  const found = statSync(path).size;
  if (found === 0) throw new Error(`${path}: empty ${what}`);
  if (found < expected) throw new Error(`${path}: truncated ${what} (expected ${expected} bytes, found ${found})`);
  if (found > expected) throw new Error(`${path}: oversized ${what} (expected ${expected} bytes, found ${found})`);
}

/**
 * Reads a file that must be exactly `expected` bytes long, in pieces by positional reads (a
 * whole-file readFileSync stops at 2 GiB; this reaches the typed-array limit).
 */
function readSized(path: string, expected: number, what: string): Buffer {
  checkSize(path, expected, what);
  const out = Buffer.allocUnsafeSlow(expected); // not from the pool: aligned for the typed view
  for (let at = 0; at < expected; at += 1 << 30) readAt(path, out.subarray(at, Math.min(expected, at + (1 << 30))), at);
  return out;
}

/** Typed view of little-endian ids; copies only when the buffer is not aligned. */
function typedView(data: Buffer, dtype: TokenDtype): TokenArray {
  const aligned = data.byteOffset % BYTES[dtype] === 0 ? data : new Uint8Array(data);
  return dtype === 'uint16'
    ? new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2)
    : new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}
