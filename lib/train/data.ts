import { readWindows, WindowSet } from '../data/windows.js';
import { Batch } from './batch.js';

/** Training rows the trainer draws micro-batches from. */
export interface TrainingData {
  rows: number;
  seqLen: number;
  /** Builds the batch of the given row indices (teacher soft labels included when there are any). */
  batch(rows: ArrayLike<number>): Batch;
}

/** Hard-target batches straight from packed token windows (teacher training, no soft labels). */
export function windowData(set: WindowSet): TrainingData {
  const L = set.seqLen;
  return {
    rows: set.rows,
    seqLen: L,
    batch(rows) {
      const B = rows.length, inputIds = new Int32Array(B * L), targets = new Int32Array(B * L);
      for (let b = 0; b < B; b++) {
        const row = set.ids.subarray(rows[b] * (L + 1), (rows[b] + 1) * (L + 1));
        inputIds.set(row.subarray(0, L), b * L);
        targets.set(row.subarray(1), b * L);
      }
      return { B, L, inputIds, targets };
    },
  };
}

/** Validation windows of a prep directory as hard-target batches. */
export function validationData(prepDir: string): TrainingData {
  return windowData(readWindows(prepDir, 'validation'));
}
