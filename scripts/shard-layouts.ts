/**
 * Shard byte layouts × codecs (GZIP levels, BROTLI qualities), end to end (writeShard with fsync
 * → readShard), as the second table in lib/shards/schema.ts is measured: 256 rows × L = 128 ×
 * k = 32 × 7 temperatures, vocab 32000 (uint16 ids), synthetic rows (Zipf ids, random-walk fp16
 * logits, log_z from them); then, when a logit dataset is given, the first 256 rows of its first
 * shard. Per variant: write and read ms (best of 7, lowest over 3 interleaved passes), the
 * writer's CPU time (process.cpuUsage, user + system of all threads, around writeShard; lowest
 * of the same 21 writes) in ms and µs per position, file bytes, bytes per position, and packRow /
 * unpackRow µs per position (the byte-split itself). The CPU time is what precompute pays, since
 * its writer thread shares the cores with the teacher's ONNX Runtime threads. Usage:
 *   npx tsx scripts/shard-layouts.ts [runs/logits]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import { layoutOf, readManifest, readShard, rowBytes, writeShard, type LayoutName, type LogitRow, type ShardCodec, type ShardLayout, type WriteShardMeta } from '../lib/shards/index.js';
import { packRow, unpackRow } from '../lib/shards/packing.js';
import { mulberry32 } from '../lib/util/random.js';

/** Variants; `level` is the GZIP level or the BROTLI quality. */
const VARIANTS: { name: string; layout: LayoutName; codec: ShardCodec; level: number }[] = [
  { name: 'packed-le, GZIP-6 (until the split)', layout: 'packed-le', codec: 'GZIP', level: 6 },
  { name: 'packed-le, GZIP-1', layout: 'packed-le', codec: 'GZIP', level: 1 },
  { name: 'packed-le-split, GZIP-1 (until BROTLI)', layout: 'packed-le-split', codec: 'GZIP', level: 1 },
  { name: 'packed-le-split, GZIP-6', layout: 'packed-le-split', codec: 'GZIP', level: 6 },
  { name: 'packed-le-split, BROTLI-1 (now)', layout: 'packed-le-split', codec: 'BROTLI', level: 1 },
  { name: 'packed-le-split, BROTLI-2', layout: 'packed-le-split', codec: 'BROTLI', level: 2 },
];

const rng = mulberry32; // deterministic uniform [0, 1)

/** 256 synthetic windows: Zipf(1.1) ids (distinct per position), descending random-walk fp16 logits, log_z per τ. */
function syntheticRows(): { rows: LogitRow[]; layout: ShardLayout } {
  const layout: ShardLayout = { seqLen: 128, k: 32, numTemps: 7, idDtype: 'uint16', valueDtype: 'float16' };
  const { seqLen: L, k } = layout, V = 32000, temps = [1, 1.5, 2, 2.5, 3, 3.5, 4], r = rng(7);
  const cdf = new Float64Array(V);
  for (let i = 0, acc = 0; i < V; i++) cdf[i] = acc += 1 / (i + 1) ** 1.1;
  const zipf = () => {
    const u = r() * cdf[V - 1];
    let lo = 0, hi = V - 1;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
    return lo;
  };
  const rows = Array.from({ length: 256 }, (_, w): LogitRow => {
    const stream = Uint32Array.from({ length: L + 1 }, zipf);
    const ids = new Uint32Array(L * k), z = new Float32Array(L * k), logZ = new Float32Array(L * temps.length);
    for (let t = 0; t < L; t++) {
      const seen = new Set<number>();
      for (let j = 0, v = 0; j < k; j++, v -= r() * r() * 2) {
        let id = zipf();
        while (seen.has(id)) id = zipf();
        seen.add(id);
        ids[t * k + j] = id;
        z[t * k + j] = v;
      }
    }
    const logits = decodeHalf(encodeHalf(z));
    for (let t = 0; t < L; t++) {
      temps.forEach((tau, s) => {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += Math.exp(logits[t * k + j] / tau);
        logZ[t * temps.length + s] = Math.log(sum);
      });
    }
    return { sample_id: BigInt(w), input_ids: stream.subarray(0, L), target_ids: Int32Array.from(stream.subarray(1)), topk_ids: ids, topk_logits: logits, log_z: logZ };
  });
  return { rows, layout };
}

/** Best of `n` timings of `f`, in ms: wall clock, and process CPU time (user + system, all threads). */
async function bestWithCpu(n: number, f: () => unknown): Promise<{ ms: number; cpu: number }> {
  let ms = Infinity, cpu = Infinity;
  for (let i = 0; i < n; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await f();
    ms = Math.min(ms, performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu = Math.min(cpu, (c.user + c.system) / 1000);
  }
  return { ms, cpu };
}

/** Best of `n` wall-clock timings of `f`, in ms. */
async function best(n: number, f: () => unknown): Promise<number> {
  return (await bestWithCpu(n, f)).ms;
}

async function measure(title: string, rows: LogitRow[], shapes: ShardLayout): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kd-layouts-'));
  const positions = rows.length * shapes.seqLen;
  const raw = (rowBytes(shapes) / shapes.seqLen).toFixed(1);
  type Result = { write: number; writeCpu: number; read: number; bytes: number; pack: number; unpack: number };
  const res = new Map<string, Result>();
  try {
    for (let pass = 0; pass < 3; pass++) {
      for (const v of VARIANTS) {
        const meta: WriteShardMeta = { ...shapes, layout: v.layout, codec: v.codec, ...(v.codec === 'GZIP' ? { gzipLevel: v.level } : { brotliQuality: v.level }) };
        const path = join(dir, `${v.layout}-${v.codec}-${v.level}.parquet`);
        let bytes = 0;
        const { ms: write, cpu: writeCpu } = await bestWithCpu(7, async () => { bytes = (await writeShard(path, rows, meta)).bytes; });
        const read = await best(7, () => readShard(path, meta));
        const packed = rows.map((row) => packRow(row, meta, 'x'));
        const pack = await best(7, () => rows.map((row) => packRow(row, meta, 'x')));
        const unpack = await best(7, () => packed.map((p) => unpackRow(p as unknown as Record<string, unknown>, meta, 'x')));
        const back = await readShard(path, meta);
        if (back.length !== rows.length || back[7].topk_ids[5] !== rows[7].topk_ids[5]) throw new Error(`${v.name}: rows differ`);
        const old = res.get(v.name);
        const now: Result = { write, writeCpu, read, bytes, pack, unpack };
        res.set(v.name, old ? { write: Math.min(old.write, write), writeCpu: Math.min(old.writeCpu, writeCpu), read: Math.min(old.read, read), bytes, pack: Math.min(old.pack, pack), unpack: Math.min(old.unpack, unpack) } : now);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n${title}: ${rows.length} rows × L=${shapes.seqLen} × k=${shapes.k} × ${shapes.numTemps} temps, ${shapes.idDtype} ids, ${shapes.valueDtype} values; raw ${raw} bytes/position`);
  console.log('| layout, codec | write ms | write CPU ms | write CPU µs/pos | read ms | file bytes | bytes/position | pack µs/pos | unpack µs/pos |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, m] of res) {
    const us = (ms: number) => ((1000 * ms) / positions).toFixed(2);
    console.log(`| ${name} | ${m.write.toFixed(0)} | ${m.writeCpu.toFixed(0)} | ${us(m.writeCpu)} | ${m.read.toFixed(0)} | ${m.bytes.toLocaleString('en-US')} | ${(m.bytes / positions).toFixed(1)} | ${us(m.pack)} | ${us(m.unpack)} |`);
  }
}

const synth = syntheticRows();
await measure('synthetic (as in lib/shards/schema.ts)', synth.rows, synth.layout);
const data = process.argv[2];
if (data) {
  const m = await readManifest(data);
  const shapes = { ...layoutOf(m), layout: undefined };
  const rows = (await readShard(join(data, m.shards[0].file), layoutOf(m))).slice(0, 256);
  await measure(`${join(data, m.shards[0].file)} (first ${rows.length} rows)`, rows, shapes);
}
