import { LogitDataset, LogitRow } from '../shards/index.js';
import { TrainingData } from './data.js';

/**
 * Training batches with soft labels from the rows of a logit dataset (held in memory: the rows
 * are compact, ~4 bytes per stored id and value).
 */
export async function shardData(ds: LogitDataset): Promise<TrainingData> {
  const rows: LogitRow[] = await ds.readAll();
  const { seq_len: L, k, temperatures } = ds.manifest;
  const T = temperatures.length;
  return {
    rows: rows.length,
    seqLen: L,
    batch(indices) {
      const B = indices.length, N = B * L;
      const inputIds = new Int32Array(N), targets = new Int32Array(N);
      const ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N * T);
      for (let b = 0; b < B; b++) {
        const r = rows[indices[b]];
        inputIds.set(r.input_ids, b * L);
        targets.set(r.target_ids, b * L);
        ids.set(r.topk_ids, b * L * k);
        logits.set(r.topk_logits, b * L * k);
        logZ.set(r.log_z, b * L * T);
      }
      return { B, L, inputIds, targets, teacher: { k, temperatures, ids, logits, logZ } };
    },
  };
}
