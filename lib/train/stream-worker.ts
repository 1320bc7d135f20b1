/**
 * The prefetch thread of streamed training: reads, checks and decodes each shard it is sent
 * (one at a time, so decoding transients stay one shard's worth) and transfers the block back.
 */
import { parentPort } from 'node:worker_threads';
import { blockBuffers } from '../shards/block.js';
import { readListedBlock } from '../shards/dataset.js';
import type { ShardRequest, ShardReply } from './stream-data.js';

let queue: Promise<void> = Promise.resolve();
parentPort!.on('message', (job: ShardRequest) => {
  queue = queue.then(() => readListedBlock(job.shard, job.layout).then(
    (block) => parentPort!.postMessage({ id: job.id, block } satisfies ShardReply, blockBuffers(block)),
    (err: Error) => parentPort!.postMessage({ id: job.id, error: err.message } satisfies ShardReply),
  ));
});
