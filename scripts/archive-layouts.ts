/**
 * Shard layouts for archiving a logit dataset (README "Logit archives", lib/shards/schema.ts):
 * `packed-le-split` (kd's default) against `lists` (typed Parquet lists, lib/shards/lists.ts), the
 * lossy `compact` codec (lib/shards/compact.ts, δ = 1/16) and
 * its flat variant (topk columns as [L·k] instead of [L][k]), every shard of a real dataset
 * rewritten per variant, BROTLI quality 1. Per variant: file bytes per position; the writer's CPU
 * time per position (process.cpuUsage, user + system of all threads, around the whole write:
 * encoding, compression, sha256, fsync; per shard the lowest of `reps` writes, summed); readShard
 * and readShardBlock wall ms per shard (lowest of `reps`); then, on the first 256 windows, the
 * same lists written through hyparquet-writer's row API (parquetWriteBuffer), which kd does not
 * use; and DuckDB's time for one plain-SQL query (mean p(top-1) at τ = 1) on lists shards
 * against the same query through kd's macros on packed shards. Usage:
 *   npx tsx scripts/archive-layouts.ts <logit dataset> [scratch dir, default runs/archive-layouts] [reps, default 3]
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants as zc } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { DUCKDB_MACROS, SHARD_CREATED_BY, layoutOf, readManifest, readShard, writeFileAtomic, writeShard, type LogitRow, type ShardLayout } from '../lib/shards/index.js';
import { encodeListsShard, listsSchema } from '../lib/shards/lists.js';
import { readShardBlock } from '../lib/shards/reader.js';

const [data, scratch = 'runs/archive-layouts', repsArg = '3'] = process.argv.slice(2);
if (!data) throw new Error('usage: npx tsx scripts/archive-layouts.ts <logit dataset> [scratch dir] [reps]');
const reps = Number(repsArg);
const brotli1 = (input: Uint8Array) => new Uint8Array(brotliCompressSync(input, { params: { [zc.BROTLI_PARAM_QUALITY]: 1, [zc.BROTLI_PARAM_SIZE_HINT]: input.length } }));

type Variant = { name: string; write: (path: string, rows: LogitRow[], layout: ShardLayout) => Promise<number>; layout?: 'lists'; read?: Partial<ShardLayout> };
/** kd's lossy codec (lib/shards/compact.ts) at its default step, for the bytes and CPU it costs beside the exact layouts. */
const COMPACT: Partial<ShardLayout> = { layout: 'compact', valueStep: 1 / 16 };
const VARIANTS: Variant[] = [
  { name: 'packed-le-split (kd default)', write: async (p, rows, l) => (await writeShard(p, rows, { ...l, layout: 'packed-le-split' })).bytes },
  { name: 'compact, δ = 1/16 (kd `compact`, lossy)', write: async (p, rows, l) => (await writeShard(p, rows, { ...l, ...COMPACT })).bytes, read: COMPACT },
  { name: 'lists, nested [L][k] (kd `lists`)', write: async (p, rows, l) => (await writeShard(p, rows, { ...l, layout: 'lists' })).bytes, layout: 'lists' },
  { // as writeShard does it: encode, atomic write with fsync, sha256
    name: 'lists, flat [L·k]', write: async (p, rows, l) => {
      const bytes = encodeListsShard(rows, l, { name: 'BROTLI', compress: brotli1 }, { rowGroupRows: 4096, createdBy: SHARD_CREATED_BY, nested: false }, p);
      await writeFileAtomic(p, bytes);
      createHash('sha256').update(bytes).digest('hex');
      return bytes.length;
    },
  },
];

/** Lowest CPU ms (user + system) and wall ms of `reps` calls of `f`, and f's last result. */
async function lowest<T>(f: () => Promise<T>): Promise<{ cpu: number; ms: number; value: T }> {
  let cpu = Infinity, ms = Infinity, value!: T;
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    value = await f();
    const c = process.cpuUsage(c0);
    ms = Math.min(ms, performance.now() - t0);
    cpu = Math.min(cpu, (c.user + c.system) / 1000);
  }
  return { cpu, ms, value };
}

const m = await readManifest(data);
const layout = layoutOf(m), shapes = { ...layout, layout: undefined };
const positions = m.totals.positions;
const sums = new Map(VARIANTS.map((v) => [v.name, { bytes: 0, cpu: 0, read: 0, block: 0 }]));
mkdirSync(scratch, { recursive: true });
for (const entry of m.shards) {
  const rows = await readShard(join(data, entry.file), layout, { sha256: entry.sha256 });
  for (const v of VARIANTS) {
    const path = join(scratch, `${v.name.split(/[ ,]/)[0]}-${v.name.includes('flat') ? 'flat' : 'x'}-${entry.file}`);
    const w = await lowest(() => v.write(path, rows, shapes));
    const s = sums.get(v.name)!;
    s.bytes += w.value;
    s.cpu += w.cpu;
    if (v.name.includes('flat')) continue; // not a kd layout: kd's reader refuses it
    const as = { ...shapes, ...v.read };
    s.read += (await lowest(() => readShard(path, as))).ms / m.shards.length;
    s.block += (await lowest(() => readShardBlock(path, as))).ms / m.shards.length;
  }
}
console.log(`${data}: ${m.shards.length} shards, ${m.totals.rows} windows × L=${m.seq_len}, k=${m.k}, ${m.temperatures.length} temps, ${m.encoding.ids} ids, ${m.encoding.values} values; ${reps} writes per shard and variant`);
console.log('| layout | file bytes | bytes/position | writer CPU µs/position | readShard ms/shard | readShardBlock ms/shard |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [name, s] of sums) {
  const read = name.includes('flat') ? '–' : s.read.toFixed(0), block = name.includes('flat') ? '–' : s.block.toFixed(0);
  console.log(`| ${name} | ${s.bytes.toLocaleString('en-US')} | ${(s.bytes / positions).toFixed(1)} | ${((1000 * s.cpu) / positions).toFixed(2)} | ${read} | ${block} |`);
}

// hyparquet-writer's row API on the same lists schema (its Dremel encoder), first 256 windows
const first = (await readShard(join(data, m.shards[0].file), layout)).slice(0, 256);
const nest = (a: ArrayLike<number>, n: number) => Array.from({ length: a.length / n }, (_, t) => Array.from({ length: n }, (_, j) => a[t * n + j]));
for (const nested of [true, false]) {
  const shape = (a: ArrayLike<number>, n: number) => (nested ? nest(a, n) : Array.from(a));
  const w = await lowest(async () => parquetWriteBuffer({
    schema: listsSchema(shapes, nested), codec: 'BROTLI', compressors: { BROTLI: brotli1 }, statistics: false, rowGroupSize: 4096,
    columnData: [
      { name: 'sample_id', data: first.map((r) => r.sample_id) },
      { name: 'input_ids', data: first.map((r) => Array.from(r.input_ids)), encoding: 'PLAIN' },
      { name: 'target_ids', data: first.map((r) => Array.from(r.target_ids)), encoding: 'PLAIN' },
      { name: 'topk_ids', data: first.map((r) => shape(r.topk_ids, m.k)), encoding: 'PLAIN' },
      { name: 'topk_logits', data: first.map((r) => shape(r.topk_logits, m.k)), encoding: 'PLAIN' },
      { name: 'log_z', data: first.map((r) => shape(r.log_z, m.temperatures.length)), encoding: 'BYTE_STREAM_SPLIT' },
    ],
  }));
  const n = first.length * m.seq_len;
  console.log(`hyparquet-writer row API, lists ${nested ? 'nested' : 'flat'}, first ${first.length} windows: ${((1000 * w.cpu) / n).toFixed(2)} CPU-µs/position (encoding only), ${(w.value.byteLength / n).toFixed(1)} bytes/position`);
}

// DuckDB: mean p(top-1) at τ = temperatures[0] over every position, plain SQL on lists, macros on packed
const con = await (await DuckDBInstance.create(':memory:')).connect();
for (const stmt of DUCKDB_MACROS) await con.run(stmt);
const files = (kind: string) => `read_parquet('${join(scratch, `${kind}-x-shard-*.parquet`)}')`;
const queries: [string, string][] = [
  ['lists, plain SQL', `SELECT avg(exp(z[1]::DOUBLE - lz[1])) FROM (SELECT unnest(topk_logits) AS z, unnest(log_z) AS lz FROM ${files('lists')})`],
  ['packed-le-split, kd macros', `WITH d AS MATERIALIZED (SELECT kd_f16s(topk_logits) AS z, kd_f32s(log_z) AS lz FROM ${files('packed-le-split')})
     SELECT avg(exp(z[t * ${m.k} + 1]::DOUBLE - lz[t * ${m.temperatures.length} + 1])) FROM d, range(${m.seq_len}) AS r(t)`],
];
for (const [name, sql] of queries) {
  const q = await lowest(async () => (await con.runAndReadAll(sql)).getRows()[0][0] as number);
  console.log(`DuckDB ${name}: mean p(top-1) = ${q.value.toFixed(6)} in ${(q.ms / 1000).toFixed(2)} s`);
}
rmSync(scratch, { recursive: true, force: true });
