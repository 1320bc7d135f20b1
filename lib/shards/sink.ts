/**
 * Where finished shards go: written in this thread, or handed to a writer thread so that packing,
 * GZIP and fsync overlap the next teacher forward (onnxruntime-node's `run` blocks the main
 * thread while its own threads compute).
 */
import { Worker } from 'node:worker_threads';
import type { LogitRow } from './schema.js';
import { writeShard, type ShardWriteResult, type WriteShardMeta } from './writer.js';

/** Writes shards; `write` resolves when the file is complete under its final name. */
export interface ShardSink {
  write(path: string, rows: LogitRow[], meta: WriteShardMeta): Promise<ShardWriteResult>;
  /** Waits for nothing: call after every `write` has settled. Stops the thread, if any. */
  close(): Promise<void>;
}

/** A message to the writer thread. */
export interface ShardJob {
  id: number;
  path: string;
  rows: LogitRow[];
  meta: WriteShardMeta;
}

/** The writer thread's answer. */
export interface ShardJobResult {
  id: number;
  result?: ShardWriteResult;
  error?: string;
}

/** A sink that calls {@link writeShard} in this thread. */
export function inlineShardSink(): ShardSink {
  return { write: writeShard, close: async () => {} };
}

/**
 * A sink backed by one worker thread. Row arrays are transferred, not copied: the caller must
 * not use `rows` after `write`. Errors come back as the one-line messages of {@link writeShard}.
 */
export function threadShardSink(): ShardSink {
  const worker = new Worker(new URL('./write-worker.mjs', import.meta.url));
  worker.unref();
  const waiting = new Map<number, { resolve: (r: ShardWriteResult) => void; reject: (e: Error) => void }>();
  let next = 0;
  const failAll = (e: Error) => {
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('message', (m: ShardJobResult) => {
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (waiting.size === 0) worker.unref(); // idle: don't keep the process alive
    if (m.error !== undefined) w?.reject(new Error(m.error));
    else w?.resolve(m.result!);
  });
  worker.on('error', (e) => failAll(new Error(`shard writer thread failed: ${e.message}`)));
  worker.on('exit', (code) => failAll(new Error(`shard writer thread exited (code ${code})`)));
  return {
    write(path, rows, meta) {
      const id = next++;
      const transfer = rows.flatMap((r) => [r.input_ids, r.target_ids, r.topk_ids, r.topk_logits, r.log_z].map((a) => a.buffer));
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        worker.ref();
        worker.postMessage({ id, path, rows, meta } satisfies ShardJob, [...new Set(transfer)] as ArrayBuffer[]);
      });
    },
    async close() {
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}
