/**
 * The shard plan of a logit dataset: shard j holds windows [j·R, min(rows, (j+1)·R)) for
 * R = rows_per_shard, and in a run split across N workers belongs to worker j mod N. The plan
 * depends only on (rows, R), so one worker or N write the same files.
 */
import { shardFileName, type ShardPlanInfo, type WorkerInfo } from './manifest.js';
import type { PlannedShard } from './resume.js';

/** One planned shard with its window range. */
export interface ShardSlice extends PlannedShard {
  /** First window (= first sample id). */
  start: number;
  /** One past the last window. */
  end: number;
}

/** The plan record stored in manifests. */
export function planInfo(rows: number, rowsPerShard: number, batchSize: number): ShardPlanInfo {
  return { rows, rows_per_shard: rowsPerShard, shards: Math.ceil(rows / rowsPerShard), batch_size: batchSize };
}

/** Every shard of the plan, in order. */
export function planShards(rows: number, rowsPerShard: number): ShardSlice[] {
  if (!Number.isInteger(rowsPerShard) || rowsPerShard < 1) throw new Error(`rows_per_shard must be an integer ≥ 1 (got ${rowsPerShard})`);
  const out: ShardSlice[] = [];
  for (let index = 0, start = 0; start < rows; index++, start += rowsPerShard) {
    const end = Math.min(rows, start + rowsPerShard);
    out.push({ index, file: shardFileName(index), start, end, rows: end - start, first_sample_id: String(start) });
  }
  return out;
}

/** The shards of `plan` that `worker` writes: index mod count = worker index. */
export function workerShards<T extends { index: number }>(plan: T[], worker: WorkerInfo): T[] {
  return plan.filter((s) => s.index % worker.count === worker.index);
}
