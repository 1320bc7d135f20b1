/** The shard writer thread: writes each shard it is sent and answers with the result or the error. */
import { parentPort } from 'node:worker_threads';
import { writeShardTimed, type ShardJob, type ShardJobResult } from './sink.js';
import { warmUpShardWriter } from './writer.js';

warmUpShardWriter(); // before 'loaded': the caller starts its clock after ready()

parentPort!.postMessage({ id: -1 } satisfies ShardJobResult); // loaded
parentPort!.on('message', (job: ShardJob) => {
  writeShardTimed(job.path, job.rows, job.meta).then(
    (result) => parentPort!.postMessage({ id: job.id, result } satisfies ShardJobResult),
    (err: Error) => parentPort!.postMessage({ id: job.id, error: err.message } satisfies ShardJobResult),
  );
});
