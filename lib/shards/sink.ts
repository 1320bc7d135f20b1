/**
 * Where finished shards go: written in this thread, or handed to a writer thread so that packing,
 * compression and fsync overlap the next teacher forward (onnxruntime-node's `run` blocks the main
 * thread while its own threads compute).
 */
import { Worker } from 'node:worker_threads';
import type { LogitRow } from './schema.js';
import { writeShard, type ShardWriteResult, type WriteShardMeta } from './writer.js';

/** What a sink wrote, and how long writing took on the writing thread (packing, compression, fsync). */
export type TimedWriteResult = ShardWriteResult & { seconds: number };

/** Timed {@link writeShard}. */
export async function writeShardTimed(path: string, rows: LogitRow[], meta: WriteShardMeta): Promise<TimedWriteResult> {
  const t0 = performance.now();
  const r = await writeShard(path, rows, meta);
  return { ...r, seconds: (performance.now() - t0) / 1000 };
}

/** Writes shards; `write` resolves when the file is complete under its final name. */
export interface ShardSink {
  write(path: string, rows: LogitRow[], meta: WriteShardMeta): Promise<TimedWriteResult>;
  /** Resolves once the sink can start writing (the writer thread has loaded). */
  ready(): Promise<void>;
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

/** The writer thread's answer; id −1 announces that the thread has loaded. */
export interface ShardJobResult {
  id: number;
  result?: TimedWriteResult;
  error?: string;
}

/** A sink that calls {@link writeShard} in this thread (between teacher forwards). */
export function inlineShardSink(): ShardSink {
  return { write: writeShardTimed, ready: async () => {}, close: async () => {} };
}

/**
 * A sink backed by one worker thread. Row arrays are transferred, not copied: the caller must
 * not use `rows` after `write`. Errors come back as the one-line messages of {@link writeShard}.
 */
export function threadShardSink(): ShardSink {
  const worker = new Worker(new URL('./write-worker.mjs', import.meta.url));
  const waiting = new Map<number, { resolve: (r: TimedWriteResult) => void; reject: (e: Error) => void }>();
  let next = 0, isLoaded = false;
  let loaded!: () => void, failed!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => { loaded = resolve; failed = reject; });
  ready.catch(() => {}); // reported through ready() or the writes
  /** Keeps the process alive only while the thread loads or has work. */
  const refIfBusy = () => (!isLoaded || waiting.size > 0 ? worker.ref() : worker.unref());
  const failAll = (e: Error) => {
    failed(e);
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('message', (m: ShardJobResult) => {
    if (m.id === -1) {
      isLoaded = true;
      loaded();
    } else {
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error !== undefined) w?.reject(new Error(m.error));
      else w?.resolve(m.result!);
    }
    refIfBusy();
  });
  worker.on('error', (e) => failAll(new Error(`shard writer thread failed: ${e.message}`)));
  worker.on('exit', (code) => failAll(new Error(`shard writer thread exited (code ${code})`)));
  return {
    write(path, rows, meta) {
      const id = next++;
      const transfer = rows.flatMap((r) => [r.input_ids, r.target_ids, r.topk_ids, r.topk_logits, r.log_z].map((a) => a.buffer));
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        refIfBusy();
        worker.postMessage({ id, path, rows, meta } satisfies ShardJob, [...new Set(transfer)] as ArrayBuffer[]);
      });
    },
    ready: () => ready,
    async close() {
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}
