/**
 * Teacher forward passes over token windows → logit rows. The hot loop avoids per-element
 * BigInt conversions (ids are written as the low words of an int64 buffer) and gives every
 * row array its own buffer, so rows can be transferred to a writer thread without copies.
 */
import type { TokenNoise } from '../data/augment/token-noise.js';
import type { WindowSet } from '../data/windows.js';
import { runSampled, runTopK, type OnnxSession } from '../onnx/index.js';
import { sampleUniforms, sortDraws } from '../logits/sampling.js';
import type { LogitRow } from '../shards/index.js';
import { byteSpans } from '../tokenizer/align.js';

/**
 * The input ids [L] of train window `r` as the teacher (and, through the shards, the student) sees
 * them: row[0:L], with the prep's token noise applied when there is one (targets stay clean).
 */
export function windowInputs(w: WindowSet, r: number, noise?: TokenNoise): Uint32Array {
  const L = w.seqLen, x = Uint32Array.from(w.ids.subarray(r * (L + 1), r * (L + 1) + L));
  noise?.apply(r, x);
  return x;
}

/**
 * Input ids of windows [b0, b0 + B) as int64 [B, L] ({@link windowInputs}): each id is stored in
 * the low 32-bit word of its little-endian int64 (ids are non-negative and < 2^32), so no BigInt
 * is created.
 */
export function batchIds(w: WindowSet, b0: number, B: number, noise?: TokenNoise): BigInt64Array {
  const L = w.seqLen, out = new BigInt64Array(B * L);
  const words = new Uint32Array(out.buffer); // [B·L·2], zero-filled: high words stay 0
  for (let b = 0; b < B; b++) {
    const x = windowInputs(w, b0 + b, noise);
    for (let t = 0; t < L; t++) words[2 * (b * L + t)] = x[t];
  }
  return out;
}

/** Options of {@link teacherRows}. */
export interface TeacherRowsOptions {
  batchSize: number;
  /** Real vocabulary size: a top-k id ≥ this (a padded teacher row) stops the run. */
  realVocab: number;
  /** The prep's tokenizer.json, named in the error for an id ≥ realVocab. */
  tokenizer?: string;
  /** The teacher's logits width as recorded in the manifest: a batch whose width differs stops the run. */
  vocabWidth?: number;
  /** Layers × width of the graph's `hidden` output, when the dataset stores hidden states: a batch of another shape stops the run. */
  hidden?: { layers: number; width: number };
  /** Called after each batch with the number of windows done so far in this call. */
  onBatch?: (windowsDone: number) => void;
  /** Accumulates the seconds spent in the teacher's forward (`runTopK`), if given. */
  timing?: { forward: number };
  /** Checked before each batch: once aborted, throws the signal's reason. */
  signal?: AbortSignal;
  /** The prep's token noise (windows.json `augmentation.token_noise`), applied to the inputs. */
  noise?: TokenNoise;
  /** Bytes per id and each window's start in the train text: rows get `byte_spans` of their inputs (lib/tokenizer/align.ts). */
  spans?: SpanRows;
  /** Sampled mode: the graph is an addSampledOutputs graph drawing `samples` ids per position with uniforms seeded by (seed, sample id). */
  sampling?: SamplingRows;
}

/** What teacherRows needs to write `byte_spans`: bytes per id and each window's start in the train text. */
export interface SpanRows {
  byteLength: Uint32Array;
  /** [rows] byte offset of each window's first token in the train split's text (lib/tokenizer/align.ts windowStarts). */
  starts: Float64Array;
}

/** What teacherRows needs to feed a sampled graph. */
export interface SamplingRows {
  samples: number;
  seed: number;
}

/** Uniforms [B·L·n] for windows [b0, b0 + B): window r's come from sampleUniforms(seed, r). */
function batchUniforms(s: SamplingRows, b0: number, B: number, L: number): Float32Array {
  const n = s.samples, u = new Float32Array(B * L * n);
  for (let b = 0; b < B; b++) sampleUniforms(s.seed, b0 + b, L, n, u.subarray(b * L * n, (b + 1) * L * n));
  return u;
}

/**
 * Throws naming the window and both files when a top-k id is beyond the tokenizer: either the
 * teacher was trained with another tokenizer (the usual cause) or its padded vocabulary rows carry
 * mass; either way its soft labels cannot be used with this tokenizer.
 */
function checkIds(ids: Int32Array, realVocab: number, b0: number, L: number, k: number, source: string, tokenizer = 'the tokenizer'): void {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] >= realVocab) {
      const pos = Math.floor(i / k);
      throw new Error(`${source}: the teacher ranks id ${ids[i]} in its top-k (window ${b0 + Math.floor(pos / L)}, position ${pos % L}) but ${tokenizer} has only ${realVocab} tokens: a teacher/tokenizer mismatch (make the prep with the teacher's tokenizer: kd prep --tokenizer <its tokenizer.json>) or padded vocabulary rows that carry mass`);
    }
  }
}

/**
 * The real logits width of a top-k graph (its `logits_width` output) on window `index` of `w`.
 * @throws Error when the graph lacks that output (not made by addTopKOutputs).
 */
export async function measureLogitsWidth(h: OnnxSession, w: WindowSet, index = 0, sampling?: SamplingRows): Promise<number> {
  const x = batchIds(w, index, 1), L = w.seqLen;
  const r = sampling ? await runSampled(h, x, 1, L, batchUniforms(sampling, index, 1, L), sampling.samples) : await runTopK(h, x, 1, L);
  if (r.logitsWidth === undefined) throw new Error(`${h.source}: the top-k graph reports no logits width`);
  return r.logitsWidth;
}

/**
 * Runs the top-k teacher graph over windows [start, end) in batches of `batchSize` (batches
 * start at `start`, so a shard's batches are the same whichever worker computes it).
 * @throws Error `"<teacher>: teacher logits are NaN/Inf at window 1234, position 5"` naming the
 *   global window index; a teacher/tokenizer mismatch as {@link checkIds}; a logits width that
 *   differs from `vocabWidth`; session errors.
 */
export async function teacherRows(h: OnnxSession, w: WindowSet, start: number, end: number, o: TeacherRowsOptions): Promise<LogitRow[]> {
  const L = w.seqLen, rows: LogitRow[] = [];
  for (let b0 = start; b0 < end; b0 += o.batchSize) {
    const B = Math.min(o.batchSize, end - b0);
    o.signal?.throwIfAborted();
    let r;
    const t0 = performance.now();
    try {
      const x = batchIds(w, b0, B, o.noise);
      r = o.sampling ? await runSampled(h, x, B, L, batchUniforms(o.sampling, b0, B, L), o.sampling.samples) : await runTopK(h, x, B, L);
    } catch (e) {
      throw new Error((e as Error).message.replace(/batch row (\d+)/, (_, i: string) => `window ${b0 + Number(i)}`));
    }
    if (o.timing) o.timing.forward += (performance.now() - t0) / 1000;
    const { k, numTemperatures: T } = r;
    if (o.vocabWidth !== undefined && r.logitsWidth !== undefined && r.logitsWidth !== o.vocabWidth) {
      throw new Error(`${h.source}: teacher logits are ${r.logitsWidth} wide at window ${b0}, but the dataset records ${o.vocabWidth}`);
    }
    checkIds(r.topkIds, o.realVocab, b0, L, k, h.source, o.tokenizer);
    if (o.sampling) sortDraws(r.topkIds, r.topkLogits, k); // run-length (id, count) order, like top-k's descending
    const H = o.hidden ? o.hidden.layers * o.hidden.width : 0; // fp16 values per position
    if (o.hidden && (!r.hidden || r.hiddenShape?.layers !== o.hidden.layers || r.hiddenShape.width !== o.hidden.width)) {
      throw new Error(`${h.source}: the graph's hidden output is ${r.hiddenShape ? `${r.hiddenShape.layers}×${r.hiddenShape.width}` : 'missing'} per position, the dataset records ${o.hidden.layers}×${o.hidden.width}`);
    }
    for (let b = 0; b < B; b++) {
      const row = w.ids.subarray((b0 + b) * (L + 1), (b0 + b + 1) * (L + 1));
      const inputIds = windowInputs(w, b0 + b, o.noise);
      rows.push({
        sample_id: BigInt(b0 + b),
        input_ids: inputIds,
        target_ids: Int32Array.from(row.subarray(1)),
        topk_ids: new Uint32Array(r.topkIds.buffer, r.topkIds.byteOffset + b * L * k * 4, L * k).slice(), // ids ≥ 0: same bits
        topk_logits: r.topkLogits.slice(b * L * k, (b + 1) * L * k),
        log_z: r.logZ.slice(b * L * T, (b + 1) * L * T),
        ...(H > 0 ? { hidden: r.hidden!.slice(b * L * H, (b + 1) * L * H) } : {}),
        ...(o.spans ? { byte_spans: byteSpans(inputIds, o.spans.byteLength, o.spans.starts[b0 + b]) } : {}),
      });
    }
    o.onBatch?.(b0 + B - start);
  }
  return rows;
}
