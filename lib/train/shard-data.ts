import { LogitDataset } from '../shards/dataset.js';
import { TrainingData } from './data.js';
import { streamData, StreamOptions } from './stream-data.js';

/**
 * Training batches with soft labels from a logit dataset, streamed shard by shard
 * (lib/train/stream-data.ts): memory holds two shuffle buffers, not the dataset.
 * Call `close()` when training is done (stops the prefetch thread). The student's inputs are the
 * shards' `input_ids`, the teacher's: noisy when the prep had token noise (manifest `augmentation`).
 */
export async function shardData(ds: LogitDataset, opts: StreamOptions = {}): Promise<TrainingData> {
  return streamData(ds, opts);
}
