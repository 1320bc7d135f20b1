/**
 * Training batches streamed from a logit dataset: shards are read as training goes, in the order
 * of lib/train/stream-order.ts (shards permuted per (seed, epoch), grouped G at a time into
 * shuffle buffers, rows permuted inside a buffer). While the trainer draws from one buffer, a
 * worker thread reads, checks (size, sha256 against the manifest, shapes, rows, first sample id)
 * and decodes the next one into compact blocks (lib/shards/block.ts: uint16 ids, fp16 bits), so
 * at most two buffers are held whatever the dataset's size. G is as many shards as fit in the
 * buffer budget (decoded block bytes, at least one shard).
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { fromHalfBits } from '../logits/fp16.js';
import { blockBytes, type ShardBlock } from '../shards/block.js';
import { readListedBlock, type DatasetShard, type LogitDataset } from '../shards/dataset.js';
import type { ShardLayout } from '../shards/schema.js';
import { Batch } from './batch.js';
import { TrainingData } from './data.js';
import { BufferPlan, bufferRowOrder, bufferUnitsFor, checkOrderSpec, epochPlan, EpochPlan, locate, StreamOrderSpec, unitRowOf } from './stream-order.js';

/** Decoded bytes one shuffle buffer may hold by default (two are held: current and next). */
export const DEFAULT_BUFFER_BYTES = 32 * 2 ** 20;

/** Options of {@link streamData}. */
export interface StreamOptions {
  /** Budget of one shuffle buffer's decoded rows, bytes (default {@link DEFAULT_BUFFER_BYTES}); G = how many shards fit, ≥ 1. */
  bufferBytes?: number;
  /** Decode in a worker thread (default true); false decodes in this thread, between steps. */
  thread?: boolean;
}

/** {@link TrainingData} of a stream, with counters of its work. */
export interface StreamData extends TrainingData {
  /** Shards loaded so far, and the most shuffle buffers held (loaded or loading) at once. */
  stats(): { loads: number; maxHeld: number };
}

/** A message to the prefetch thread. */
export interface ShardRequest {
  id: number;
  shard: DatasetShard;
  layout: ShardLayout;
}

/** The prefetch thread's answer: the decoded block, or the one-line error. */
export interface ShardReply {
  id: number;
  block?: ShardBlock;
  error?: string;
}

/** Reads and decodes listed shards. */
interface BlockLoader {
  load(shard: DatasetShard): Promise<ShardBlock>;
  close(): Promise<void>;
}

function inlineLoader(layout: ShardLayout): BlockLoader {
  return { load: (shard) => readListedBlock(shard, layout), close: async () => {} };
}

/** A loader backed by one worker thread, started at the first load; it does not keep the process alive when idle. */
function threadLoader(layout: ShardLayout): BlockLoader {
  let worker: Worker | undefined, next = 0, dead: Error | undefined;
  const waiting = new Map<number, { resolve: (b: ShardBlock) => void; reject: (e: Error) => void }>();
  const refIfBusy = () => (waiting.size > 0 ? worker?.ref() : worker?.unref());
  const failAll = (e: Error) => {
    dead = e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  const start = () => {
    const w = new Worker(new URL('./stream-worker.mjs', import.meta.url));
    w.on('message', (m: ShardReply) => {
      const entry = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error !== undefined) entry?.reject(new Error(m.error));
      else entry?.resolve(m.block!);
      refIfBusy();
    });
    w.on('error', (e) => failAll(new Error(`training data thread failed: ${e.message}`)));
    w.on('exit', (code) => failAll(new Error(`training data thread exited (code ${code})`)));
    return w;
  };
  return {
    load(shard) {
      if (dead) return Promise.reject(dead);
      worker ??= start();
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        refIfBusy();
        worker!.postMessage({ id, shard, layout } satisfies ShardRequest);
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (!w) return;
      w.removeAllListeners('exit');
      await w.terminate();
      for (const entry of waiting.values()) entry.reject(new Error('training data closed'));
      waiting.clear();
    },
  };
}

/** A shuffle buffer in memory: its shards' blocks (in the plan's order) and its row permutation. */
interface LoadedBuffer {
  plan: BufferPlan;
  blocks: ShardBlock[];
  order: Uint32Array;
}

let halfTable: Float32Array | undefined;
/** fp16 bits → float32, all 65536 patterns (exact; 256 KiB). */
const halfToFloat = (): Float32Array => (halfTable ??= Float32Array.from({ length: 65536 }, (_, h) => fromHalfBits(h)));

/**
 * Streams the rows of `ds` as {@link TrainingData}; see the module comment. `order` records
 * { kind: 'shard-buffers', shards, buffer_shards: G, rows }. Shard errors are the one-line
 * messages of readListedShard, raised by the batch that needs the shard.
 * @throws Error `<dir>/manifest.json: …` when a shard lists no rows
 */
export function streamData(ds: LogitDataset, opts: StreamOptions = {}): StreamData {
  const { layout } = ds, { seq_len: L, k, temperatures } = ds.manifest, T = temperatures.length;
  const unitRows = ds.shards.map((s) => s.entry.rows);
  const G = bufferUnitsFor(ds.shards.map((s) => blockBytes(layout, s.entry.rows)), opts.bufferBytes ?? DEFAULT_BUFFER_BYTES);
  const spec: StreamOrderSpec = { unitRows, bufferUnits: G };
  checkOrderSpec(spec, join(ds.dir, 'manifest.json'));
  const rows = unitRows.reduce((a, b) => a + b, 0);
  const loader = opts.thread === false ? inlineLoader(layout) : threadLoader(layout);
  const plans = new Map<string, EpochPlan>();
  const buffers = new Map<string, Promise<LoadedBuffer>>();
  let loads = 0, maxHeld = 0;

  const planOf = (seed: number, epoch: number): EpochPlan => {
    const key = `${seed}:${epoch}`;
    let plan = plans.get(key);
    if (!plan) {
      plan = epochPlan(spec, seed, epoch);
      plans.set(key, plan);
      if (plans.size > 2) plans.delete(plans.keys().next().value!); // this epoch and the next are enough
    }
    return plan;
  };
  const loadBuffer = async (plan: EpochPlan, b: number): Promise<LoadedBuffer> => {
    const buf = plan.buffers[b];
    loads += buf.units.length;
    const blocks = await Promise.all(buf.units.map((u) => loader.load(ds.shards[u])));
    return { plan: buf, blocks, order: bufferRowOrder(plan, b) };
  };
  /** Buffer b of (seed, epoch), loading (or prefetching) it when it is not held yet. */
  const bufferOf = (seed: number, epoch: number, b: number): Promise<LoadedBuffer> => {
    const key = `${seed}:${epoch}:${b}`;
    let p = buffers.get(key);
    if (!p) {
      p = loadBuffer(planOf(seed, epoch), b);
      p.catch(() => {}); // a failed prefetch is reported by the batch that needs the buffer
      buffers.set(key, p);
      maxHeld = Math.max(maxHeld, buffers.size);
    }
    return p;
  };

  return {
    rows, seqLen: L,
    order: { kind: 'shard-buffers', shards: unitRows.length, buffer_shards: G, rows },
    async batchAt(seed, epoch, start, count) {
      const plan = planOf(seed, epoch);
      const first = locate(plan, start).buffer, last = locate(plan, start + count - 1).buffer;
      const keep = new Set<string>();
      for (let b = first; b <= last; b++) keep.add(`${seed}:${epoch}:${b}`);
      const next = last + 1 < plan.buffers.length ? { epoch, b: last + 1 } : { epoch: epoch + 1, b: 0 };
      if (first === last) keep.add(`${seed}:${next.epoch}:${next.b}`); // prefetch, unless two are held already
      for (const key of [...buffers.keys()]) if (!keep.has(key)) buffers.delete(key);
      const held: LoadedBuffer[] = [];
      for (let b = first; b <= last; b++) held.push(await bufferOf(seed, epoch, b));
      if (first === last) bufferOf(seed, next.epoch, next.b);
      return assemble(held, first, plan, start, count);
    },
    close: () => { buffers.clear(); return loader.close(); },
    stats: () => ({ loads, maxHeld }),
  };

  /** Copies (and widens) the rows of positions [start, start + count) out of the held buffers. */
  function assemble(held: LoadedBuffer[], first: number, plan: EpochPlan, start: number, count: number): Batch {
    const N = count * L, inputIds = new Int32Array(N), targets = new Int32Array(N);
    const ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N * T);
    const half = layout.valueDtype === 'float16' ? halfToFloat() : undefined;
    const H = layout.hidden ? L * layout.hidden.layers * layout.hidden.width : 0; // hidden values per row
    const hidden = H > 0 ? new Float32Array(count * H) : undefined;
    const spans = layout.spans ? new Uint32Array(N * 2) : undefined;
    for (let i = 0; i < count; i++) {
      const { buffer, offset } = locate(plan, start + i);
      const lb = held[buffer - first], { slot, row } = unitRowOf(lb.plan, lb.order[offset]), blk = lb.blocks[slot];
      inputIds.set(blk.inputIds.subarray(row * L, (row + 1) * L), i * L);
      targets.set(blk.targets.subarray(row * L, (row + 1) * L), i * L);
      ids.set(blk.topkIds.subarray(row * L * k, (row + 1) * L * k), i * L * k);
      const src = blk.topkLogits.subarray(row * L * k, (row + 1) * L * k);
      if (half) for (let j = 0, o = i * L * k; j < src.length; j++) logits[o + j] = half[src[j]];
      else logits.set(src, i * L * k);
      logZ.set(blk.logZ.subarray(row * L * T, (row + 1) * L * T), i * L * T);
      if (hidden) {
        const table = halfToFloat(), src16 = blk.hidden!.subarray(row * H, (row + 1) * H);
        for (let j = 0, o = i * H; j < H; j++) hidden[o + j] = table[src16[j]];
      }
      if (spans) spans.set(blk.byteSpans!.subarray(row * L * 2, (row + 1) * L * 2), i * L * 2);
    }
    const states = hidden && ds.manifest.hidden ? { hidden: { layers: ds.manifest.hidden.layers, width: ds.manifest.hidden.width, values: hidden } } : {};
    return { B: count, L, inputIds, targets, teacher: { k, temperatures, ids, logits, logZ, ...states, ...(spans ? { spans } : {}) } };
  }
}
