import { loadTokenNoise, type TokenNoise } from '../data/augment/token-noise.js';
import { openWindowFile, TokenArray, WindowFile, WindowSet } from '../data/windows.js';
import { Batch } from './batch.js';
import { bufferRowOrder, checkOrderSpec, epochPlan, EpochPlan, locate, StreamOrderSpec, unitRowOf } from './stream-order.js';

/** Rows addressable by index, synchronously (validation windows; in-memory test data). */
export interface RowData {
  rows: number;
  seqLen: number;
  /** Builds the batch of the given row indices (teacher soft labels included when there are any). */
  batch(rows: ArrayLike<number>): Batch;
}

/** Training rows in epoch order (lib/train/stream-order.ts), read as training goes. */
export interface TrainingData {
  rows: number;
  seqLen: number;
  /**
   * What shapes the epoch order beside (seed, epoch) — e.g. the shuffle buffer's size in shards —
   * recorded in the trainer's trajectory and train.json: a resume with another order is refused.
   */
  order: Record<string, unknown>;
  /**
   * The micro-batch of epoch positions [start, start + count) of epoch `epoch`'s order for
   * `seed`: a pure function of its arguments (exact resume; equal data for baseline and distilled
   * runs). Calls in increasing position are the fast path (prefetched).
   */
  batchAt(seed: number, epoch: number, start: number, count: number): Promise<Batch>;
  /** Stops background work (a prefetch thread) and drops held buffers; a later batchAt starts again. */
  close(): Promise<void>;
}

/** Rows per unit and units per buffer of {@link orderedRows} (the order only holds [buffer rows] uint32). */
export const ROW_UNIT = 4096, ROW_BUFFER_UNITS = 256;

/**
 * Random-access rows in the streaming order: the rows are cut into units of `unitRows`
 * consecutive rows, shuffled as lib/train/stream-order.ts says with G = `bufferUnits` (the
 * defaults put up to 1 M rows, 4 MiB of order, in one buffer: a full shuffle of smaller sets).
 */
export function orderedRows<T extends RowData>(data: T, unitRows = ROW_UNIT, bufferUnits = ROW_BUFFER_UNITS): T & TrainingData {
  const units = Math.ceil(data.rows / unitRows);
  const spec: StreamOrderSpec = { unitRows: Array.from({ length: units }, (_, u) => Math.min(unitRows, data.rows - u * unitRows)), bufferUnits };
  checkOrderSpec(spec, 'training rows');
  let plan: EpochPlan | undefined, orderOf: { b: number; order: Uint32Array } | undefined;
  const rowAt = (seed: number, epoch: number, p: number) => {
    if (plan?.seed !== seed || plan.epoch !== epoch) { plan = epochPlan(spec, seed, epoch); orderOf = undefined; }
    const { buffer, offset } = locate(plan, p);
    if (orderOf?.b !== buffer) orderOf = { b: buffer, order: bufferRowOrder(plan, buffer) };
    const buf = plan.buffers[buffer], { slot, row } = unitRowOf(buf, orderOf.order[offset]);
    return buf.units[slot] * unitRows + row;
  };
  return Object.assign(data, {
    order: { kind: 'row-units', unit_rows: unitRows, buffer_units: bufferUnits, rows: data.rows },
    batchAt: async (seed: number, epoch: number, start: number, count: number) => data.batch(Array.from({ length: count }, (_, i) => rowAt(seed, epoch, start + i))),
    close: async () => {},
  });
}

/**
 * Hard-target batches from packed token windows (teacher training, validation; no soft labels):
 * rows of a {@link WindowFile} are read by positional reads as batches ask for them (a train.bin
 * of any size), rows of an in-memory {@link WindowSet} are copied.
 * @param noise the prep's token noise, applied to the inputs of window r as `noise.apply(r, …)`
 *   (train windows only; the targets stay the clean next tokens)
 */
export function windowData(source: WindowFile | WindowSet, noise?: TokenNoise): RowData & TrainingData {
  const L = source.seqLen;
  const rowIds = 'read' in source
    ? (r: number): TokenArray => source.read(r, 1)
    : (r: number): TokenArray => source.ids.subarray(r * (L + 1), (r + 1) * (L + 1));
  return orderedRows({
    rows: source.rows,
    seqLen: L,
    batch(rows: ArrayLike<number>): Batch {
      const B = rows.length, inputIds = new Int32Array(B * L), targets = new Int32Array(B * L);
      for (let b = 0; b < B; b++) {
        const row = rowIds(rows[b]);
        inputIds.set(row.subarray(0, L), b * L);
        targets.set(row.subarray(1), b * L);
        noise?.apply(rows[b], inputIds.subarray(b * L, (b + 1) * L));
      }
      return { B, L, inputIds, targets };
    },
  });
}

/** Validation windows of a prep directory as hard-target batches (positional reads, nothing held). */
export function validationData(prepDir: string): RowData {
  // Never noisy: every variant is measured on the same clean text.
  return windowData(openWindowFile(prepDir, 'validation'));
}

/**
 * Train windows of a prep directory as hard-target batches, with the prep's token noise
 * (windows.json `augmentation.token_noise`) applied to the inputs.
 */
export function trainWindowData(prepDir: string): RowData & TrainingData {
  const file = openWindowFile(prepDir, 'train');
  const spec = file.meta.augmentation?.token_noise;
  return windowData(file, spec ? loadTokenNoise(prepDir, spec, file.meta.vocab_size) : undefined);
}
