/**
 * The precompute loop: teacher forwards for shard j+1 run while shard j is packed, compressed
 * and written (by a writer thread), with at most one shard in flight so memory stays bounded.
 */
import { join } from 'node:path';
import type { TokenNoise } from '../data/augment/token-noise.js';
import type { WindowSet } from '../data/windows.js';
import type { OnnxSession } from '../onnx/index.js';
import type { ShardSink, ShardSlice, WriteShardMeta } from '../shards/index.js';
import type { DatasetOutput } from './output.js';
import { teacherRows, type SamplingRows, type SpanRows } from './teacher-rows.js';

/** Options of {@link computeShards}. */
export interface ComputeShardsOptions {
  batchSize: number;
  realVocab: number;
  /** The prep's tokenizer.json and the teacher's logits width, for teacherRows' checks (see there). */
  tokenizer?: string;
  vocabWidth?: number;
  layout: WriteShardMeta;
  sink: ShardSink;
  /** Windows finished by the teacher so far in this call (for progress). */
  onWindows?: (done: number) => void;
  /** Accumulates seconds in the teacher's forward and in writing shards (the sink's own clock). */
  timing?: { forward: number; write: number };
  /** Stops between batches: the shard being computed is dropped, the one being written finishes. */
  signal?: AbortSignal;
  /** The prep's token noise, applied to the teacher's inputs (and stored as `input_ids`). */
  noise?: TokenNoise;
  /** Bytes per id and window starts, when the layout stores `byte_spans`. */
  spans?: SpanRows;
  /** Sampled mode (see teacherRows). */
  sampling?: SamplingRows;
}

/**
 * Computes and writes the shards `todo`, recording each in `out` once its file is complete.
 * On any error — or an abort of `o.signal`, which throws its reason — the shard being computed
 * is not written, a shard already handed to the writer finishes (and is listed) first, and the
 * error is rethrown: nothing unlisted looks complete.
 */
export async function computeShards(h: OnnxSession, w: WindowSet, todo: ShardSlice[], out: DatasetOutput, o: ComputeShardsOptions): Promise<void> {
  let inFlight: Promise<void> | undefined;
  let done = 0;
  try {
    for (const s of todo) {
      const rows = await teacherRows(h, w, s.start, s.end, { batchSize: o.batchSize, realVocab: o.realVocab, tokenizer: o.tokenizer, vocabWidth: o.vocabWidth, hidden: o.layout.hidden, onBatch: (n) => o.onWindows?.(done + n), timing: o.timing, signal: o.signal, noise: o.noise, sampling: o.sampling, spans: o.spans });
      done += s.rows;
      await inFlight;
      inFlight = o.sink.write(join(out.dir, s.file), rows, o.layout)
        .then((r) => {
          if (o.timing) o.timing.write += r.seconds;
          const klError = r.klError && r.klError.positions > 0 ? { kl_error: { mean: r.klError.sum / r.klError.positions, max: r.klError.max } } : {};
          return out.record(s.index, { file: s.file, rows: r.rows, first_sample_id: s.first_sample_id, bytes: r.bytes, sha256: r.sha256, ...klError });
        });
      inFlight.catch(() => {}); // handled when awaited above; avoids an unhandled-rejection crash meanwhile
    }
    await inFlight;
  } catch (err) {
    await inFlight?.catch(() => {});
    throw err;
  }
}
