/**
 * manifest.json of a logit dataset (DESIGN §3.2): the type, atomic write, validated read,
 * and shard hashing.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { validateManifest } from './manifest-validate.js';
import type { Augmentation } from '../data/windows.js';
import { withPath } from '../util/errors.js';
import type { IdDtype, LayoutName, ShardLayout, ValueDtype } from './schema.js';
import type { ShardCodec } from './writer.js';

/** File name of the manifest inside a dataset directory. */
export const MANIFEST_FILE = 'manifest.json';

/** One shard file of the dataset. */
export interface ShardEntry {
  /** Plain file name inside the dataset directory, e.g. `shard-00000.parquet`. */
  file: string;
  rows: number;
  /** sample_id of the shard's first row, as a decimal string (int64-exact). */
  first_sample_id: string;
  /** File size in bytes. */
  bytes: number;
  /** Lowercase hex sha256 of the file. */
  sha256: string;
  /**
   * Layout `compact`: the codec's KL error over the shard's positions, in nats (mean and max of
   * KL(exact ‖ stored) per position at temperatures[0]; lib/logits/codec-error.ts).
   */
  kl_error?: { mean: number; max: number };
}

/** The manifest. Field names are snake_case as stored on disk. */
export interface LogitManifest {
  format: 'kd-logits';
  version: 1;
  teacher: {
    /** Path of the teacher .onnx as given by the user. */
    path: string;
    /** sha256 over the .onnx file and its external data. */
    sha256: string;
    /** 'fp32' | 'fp16' | 'int8' | 'int4'. */
    dtype: string;
    /** Execution provider actually used, e.g. 'cuda' or 'cpu'. */
    execution_provider: string;
    input_names: string[];
    output_names: string[];
    /**
     * sha256 of the teacher's tokenizer.json as the teacher records it (beside the .onnx or in its
     * metadata_props), which precompute checked equals `tokenizer.sha256`; null: the teacher
     * carries none (not checked); absent: written before kd recorded it.
     */
    tokenizer_sha256?: string | null;
  };
  tokenizer: {
    /** sha256 of tokenizer.json. */
    sha256: string;
    /** Vocab size as the model sees it (logit width, may include padding rows). */
    vocab_size: number;
    /** Number of real tokens; ids ≥ this never carry probability mass. */
    real_vocab_size: number;
  };
  /**
   * The token windows (prep output) the logits were computed on: windows.json, the train split's
   * sha256 and (absent in datasets written before it was recorded) the validation split's, so that
   * training can check that its validation windows come from the same prep; `bos`, the windows'
   * BOS mode (windows.json `bos.mode`; absent in older datasets: none), so the student is trained
   * on the ids the teacher saw.
   */
  windows: { source: string; sha256: string; validation_sha256?: string; bos?: 'document' | 'window' | 'none' };
  seq_len: number;
  k: number;
  /** `topk`: the k largest logits per position; `sampled`: k = n draws from p_τg (see `sampling`). */
  mode: 'topk' | 'sampled';
  /**
   * Sampled mode only (`kd precompute --mode sampled`): n = `samples` ids per position drawn with
   * replacement from softmax(z/τg), τg = `temperature` (one of `temperatures`), with the uniforms of
   * lib/logits/sampling.ts (`uniforms` names the generator) seeded by (`seed`, sample id). The k = n
   * slots of `topk_ids`/`topk_logits` hold the draws in run-length (id, count) order: sorted by
   * descending logit, an id drawn c times fills c adjacent slots (Anshumann et al., ACL 2025).
   */
  sampling?: SamplingInfo;
  /** Stored temperatures τ, in `log_z` column order. */
  temperatures: number[];
  /**
   * Blob dtypes, byte layout (`packed-le-split` as written by default; `packed-le` in older
   * datasets; `compact`, the lossy codec of lib/shards/compact.ts, with its step `value_step`) and
   * the page codec (absent in datasets written before it was recorded; readers take it from each page).
   */
  encoding: { ids: IdDtype; values: ValueDtype; layout: LayoutName; codec?: ShardCodec; value_step?: number };
  shards: ShardEntry[];
  /** rows = Σ shard rows, bytes = Σ shard bytes, positions = windows × seq_len. */
  totals: { rows: number; positions: number; bytes: number };
  tool_version: string;
  /** ISO 8601 time the dataset (or, while incomplete, the last shard) was written. */
  created_at: string;
  /**
   * false while precompute is still writing (per-worker progress manifests); absent or true
   * = every shard this manifest is responsible for is listed. `manifest.json` itself is only
   * ever written complete.
   */
  complete?: boolean;
  /** Set on a per-worker manifest: the worker's index and the number of workers. */
  worker?: WorkerInfo;
  /** How the whole dataset is cut into shards; resume and `kd merge` check it. */
  plan?: ShardPlanInfo;
  /** Teacher hidden states stored in the `hidden` column (`kd precompute --hidden-layers`); absent: none. */
  hidden?: HiddenInfo;
  /** Set by `kd convert`: the dataset whose shards these were rewritten from; absent: written by precompute. */
  converted_from?: ConvertedFrom;
  /** The prep's windows.json `augmentation`, copied: with `token_noise`, `input_ids` are the noisy inputs the teacher saw (targets clean); absent: none. */
  augmentation?: Augmentation;
  /** Byte spans of the input tokens in the `byte_spans` column (`kd precompute --spans`), for cross-tokenizer distillation; absent: none. */
  spans?: SpanInfo;
}

/** Unit of the `byte_spans` offsets. */
export const SPAN_UNIT = 'utf-8 bytes';
/** File name, beside manifest.json, of the tokenizer a dataset with spans carries. */
export const SPAN_TOKENIZER_FILE = 'tokenizer.json';

/**
 * The `byte_spans` column of a dataset (`kd precompute --spans`): per position, the [start, end)
 * offsets of its input token in the train split's text (lib/tokenizer/align.ts: UTF-8 bytes from
 * the split's first token; special tokens empty), and what a trainer needs to pair the windows
 * with another tokenization of the same text: the tokenizer.json beside the manifest (its sha256
 * is `tokenizer.sha256`), the ids of the windows' EOS and BOS, and the train split the windows
 * come from (windows.json `splits.train`: documents and bytes).
 */
export interface SpanInfo {
  unit: typeof SPAN_UNIT;
  /** Width of the stored offsets: uint16 when `text_bytes` ≤ 65535, else uint32. */
  dtype: IdDtype;
  tokenizer: typeof SPAN_TOKENIZER_FILE;
  eos_id: number;
  /** null: the windows have no BOS. */
  bos_id: number | null;
  /** Bytes of the text the dataset's windows cover, [0, text_bytes): where the last window's last target ends. */
  text_bytes: number;
  /** windows.json `splits.train.documents` and `.bytes` of the prep the windows come from. */
  train_documents: number;
  train_bytes: number;
}

/** Where a converted dataset came from (manifest `converted_from`). */
export interface ConvertedFrom {
  /** The source dataset directory, as given to `kd convert --in`. */
  dir: string;
  /** The source's `encoding.layout`. */
  layout: LayoutName;
  /** Lowercase hex sha256 of the source's manifest.json file (its shard list holds every source shard's sha256). */
  manifest_sha256: string;
}

/** The draws of a sampled dataset (manifest `sampling`). */
export interface SamplingInfo {
  samples: number;
  temperature: number;
  seed: number;
  uniforms: string;
}

/**
 * The `hidden` column of a dataset: per position, the teacher's residual stream at `layers` (HF
 * output_hidden_states indices: 0 = embeddings, i = after decoder layer i, before the final norm),
 * each `width` fp16 values, in `layers` order; with `projection`, h·P for the fixed P [rows, dim]
 * of lib/util/projection.ts (`kind` names that generator).
 */
export interface HiddenInfo {
  layers: number[];
  width: number;
  dtype: 'float16';
  /** The graph values read, one per layer. */
  tensors?: string[];
  projection: { kind: string; seed: number; rows: number; dim: number } | null;
}

/** A worker's place in a split run: it owns shards j with j mod count = index. */
export interface WorkerInfo {
  index: number;
  count: number;
}

/** The shard plan of a dataset: shard j holds windows [j·rows_per_shard, min(rows, (j+1)·rows_per_shard)). */
export interface ShardPlanInfo {
  /** Windows in the whole dataset. */
  rows: number;
  rows_per_shard: number;
  /** Shards in the whole dataset: ceil(rows / rows_per_shard). */
  shards: number;
  /** Windows per teacher forward (recorded; not part of the identity). */
  batch_size: number;
}

/** File name of worker `index` of `count`'s manifest: `manifest.worker-00001-of-00004.json`. */
export function workerManifestFile(index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `manifest.worker-${pad(index)}-of-${pad(count)}.json`;
}

/** Matches worker manifest file names; groups: index, count. */
export const WORKER_MANIFEST_RE = /^manifest\.worker-(\d{5})-of-(\d{5})\.json$/;

/** Zero-padded shard file name: `shard-00007.parquet`. */
export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}.parquet`;
}

/** The per-row shapes and byte layout every shard of the dataset must have. */
export function layoutOf(m: LogitManifest): ShardLayout {
  return {
    seqLen: m.seq_len, k: m.k, numTemps: m.temperatures.length,
    idDtype: m.encoding.ids, valueDtype: m.encoding.values, layout: m.encoding.layout,
    ...(m.encoding.layout === 'compact' ? { valueStep: m.encoding.value_step } : {}),
    ...(m.hidden ? { hidden: { layers: m.hidden.layers.length, width: m.hidden.width } } : {}),
    ...(m.spans ? { spans: m.spans.dtype } : {}),
  };
}

/**
 * Validates `m` and writes `<dir>/manifest.json` (or `<dir>/<file>`, e.g. a worker manifest) atomically (tmp + fsync + rename).
 * Throws the validation error (one line) without touching the existing file.
 */
export async function writeManifest(dir: string, m: LogitManifest, file = MANIFEST_FILE): Promise<void> {
  const path = join(dir, file);
  if (file === MANIFEST_FILE && (m.complete === false || m.worker !== undefined)) {
    throw new Error(`${path}: refusing to write an incomplete or per-worker manifest as ${MANIFEST_FILE}`);
  }
  const copy = validateManifest(structuredClone(m), path);
  await writeFileAtomic(path, JSON.stringify(copy, null, 2) + '\n');
}

/**
 * Reads and validates `<dir>/manifest.json`. One-line errors:
 * `"<dir>/manifest.json: not found"`, `"…: invalid JSON (…)"`, `"…: not a kd-logits
 * manifest (format …)"`, `"…: missing field 'k'"`, `"…: field 'k' must be …"`.
 */
export async function readManifest(dir: string): Promise<LogitManifest> {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) {
    const workers = existsSync(dir) ? readdirSync(dir).filter((f) => WORKER_MANIFEST_RE.test(f)) : [];
    if (workers.length > 0) {
      throw new Error(`${path}: not found, but ${workers.length} worker manifest(s) are (${workers[0]}…): precompute has not finished (re-run it to resume) or its workers' manifests were not merged (kd merge ${dir})`);
    }
  }
  return readManifestFile(path);
}

/**
 * Reads and validates one manifest file (`manifest.json` or a worker manifest); errors as
 * {@link readManifest}.
 */
export async function readManifestFile(path: string): Promise<LogitManifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${path}: not found (not a logit dataset directory?)` : `${path}: cannot read (${code})`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: invalid JSON (${(err as Error).message})`);
  }
  return validateManifest(obj, path);
}

/** Lowercase hex sha256 of a file, streamed (constant memory). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (e) {
    throw withPath(e, path); // a stream's EISDIR/EACCES carries no path of its own
  }
  return hash.digest('hex');
}

/**
 * Checks a listed shard on disk: exists, size and sha256 match the entry. Returns null
 * when it does, else a one-line problem naming the file (`"<dir>/shard-00001.parquet:
 * sha256 mismatch (…)"`), so a resumed run can redo it and `inspect` can report it.
 */
export async function verifyShard(dir: string, entry: ShardEntry): Promise<string | null> {
  const path = join(dir, entry.file);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return `${path}: missing`;
  }
  if (size !== entry.bytes) return `${path}: ${size} bytes, manifest says ${entry.bytes}`;
  const sha = await sha256File(path);
  if (sha !== entry.sha256) return `${path}: sha256 mismatch (file ${sha.slice(0, 12)}…, manifest ${entry.sha256.slice(0, 12)}…)`;
  return null;
}
