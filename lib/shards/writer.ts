/**
 * Shard writer: LogitRow[] → one Parquet file (layout in schema.ts), written crash-safe and
 * byte-deterministic (same rows + meta → same bytes: no timestamps, fixed created_by,
 * gzip header without mtime/OS).
 */
import { createHash } from 'node:crypto';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';
import { writeFileAtomic } from './atomic.js';
import { encodeListsShard, listsRowBytes } from './lists.js';
import { addKlError, emptyKlTotals, type KlErrorTotals } from '../logits/codec-error.js';
import { compactValues } from './compact.js';
import { packRow, type PackedRow } from './packing.js';
import { SHARD_KV_KEY, SHARD_LAYOUT, checkLayout, rowBytes, shardKv, type LogitRow, type ShardLayout } from './schema.js';

/** Page compression. BROTLI (default, quality 1) is GZIP-1's size at 0.34–0.57× its write CPU (two measurements); see schema.ts. */
export type ShardCodec = 'GZIP' | 'BROTLI' | 'SNAPPY' | 'UNCOMPRESSED';

/** Shapes of the rows plus writing options. */
export interface WriteShardMeta extends ShardLayout {
  /** Default 'BROTLI'. */
  codec?: ShardCodec;
  /**
   * zlib level of GZIP pages, 1–9. Default 1: byte-split blobs at level 1 are smaller than
   * `packed-le` ones at level 6 (the level kd used before) and faster to write; see schema.ts.
   */
  gzipLevel?: number;
  /**
   * Brotli quality of BROTLI pages, 0–11. Default 1: quality 2 is ~4% smaller but costs ~25%
   * more write CPU, which precompute pays while sharing the cores with the teacher; see schema.ts.
   */
  brotliQuality?: number;
  /** Row-group cap in uncompressed payload bytes. Default 64 MiB. */
  maxRowGroupBytes?: number;
  /** Row-group cap in rows. Default 4096. */
  maxRowGroupRows?: number;
  /**
   * Layout `compact`: τ of `log_z` column 0 (the dataset's first temperature), at which the
   * codec's KL error is measured (ShardWriteResult `klError`). Default 1.
   */
  errorTemperature?: number;
}

/** What was written: row count, file size in bytes, lowercase hex sha256 of the file. */
export interface ShardWriteResult {
  rows: number;
  bytes: number;
  sha256: string;
  /** Layout `compact`: per-position KL(exact ‖ stored) of the codec (lib/logits/codec-error.ts). */
  klError?: KlErrorTotals;
}

/** Parquet `created_by` of every shard; fixed so that output bytes are reproducible. */
export const SHARD_CREATED_BY = 'kd (hyparquet-writer)';
const DEFAULT_ROW_GROUP_BYTES = 64 * 2 ** 20;
const DEFAULT_ROW_GROUP_ROWS = 4096;

const DEFAULT_GZIP_LEVEL = 1;

/** gzip at `level` with the header's mtime and OS bytes fixed, so output is platform-independent. */
function gzipAt(level: number): (input: Uint8Array) => Uint8Array {
  return (input) => {
    const out = new Uint8Array(gzipSync(input, { level }));
    out.fill(0, 4, 8); // MTIME
    out[9] = 0xff; // OS = unknown
    return out;
  };
}

/**
 * Default brotli quality of BROTLI pages (`brotliQuality`). Measured on 128 windows of the
 * default teacher's shards (byte-split): quality 1 108.5 bytes/position at 2.5 CPU-µs/position
 * to write, quality 2 104.5 at 3.2, GZIP-1 109.5 at 7.4 (end to end with
 * `scripts/shard-layouts.ts` on 256 windows: 108.1 at 2.57, 104.1 at 3.21, 109.3 at 4.51; table
 * in schema.ts). The writer competes with the teacher for the cores, so its CPU time is what
 * precompute pays.
 */
const DEFAULT_BROTLI_QUALITY = 1;

/** Brotli at `quality` (deterministic: no header fields vary). */
function brotliAt(quality: number): (input: Uint8Array) => Uint8Array {
  return (input) => {
    const params = { [zlibConstants.BROTLI_PARAM_QUALITY]: quality, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: input.length };
    return new Uint8Array(brotliCompressSync(input, { params }));
  };
}

/** Rows per row group so that a group stays under both caps (at least 1). */
export function rowGroupRows(layout: ShardLayout, maxBytes: number, maxRows: number): number {
  return Math.max(1, Math.min(maxRows, Math.floor(maxBytes / rowBytes(layout))));
}

/** Serialises packed rows to Parquet bytes. */
function encodeShard(packed: PackedRow[], meta: WriteShardMeta): Uint8Array {
  const blob = (name: Exclude<keyof PackedRow, 'sample_id'>) => ({
    // Every blob is distinct: PLAIN skips the writer's dictionary trial (it hashes sampled blobs).
    name, data: packed.map((r) => r[name]), type: 'BYTE_ARRAY' as const, nullable: false, encoding: 'PLAIN' as const,
  });
  const buffer = parquetWriteBuffer({
    columnData: [
      { name: 'sample_id', data: packed.map((r) => r.sample_id), type: 'INT64', nullable: false, statistics: true },
      blob('input_ids'), blob('target_ids'), blob('topk_ids'), blob('topk_logits'), blob('log_z'),
      ...(meta.hidden ? [{ ...blob('hidden'), data: packed.map((r) => r.hidden!) }] : []),
      ...(meta.spans ? [{ ...blob('byte_spans'), data: packed.map((r) => r.byte_spans!) }] : []),
    ],
    codec: meta.codec ?? 'BROTLI',
    compressors: { GZIP: gzipAt(meta.gzipLevel ?? DEFAULT_GZIP_LEVEL), BROTLI: brotliAt(meta.brotliQuality ?? DEFAULT_BROTLI_QUALITY) },
    statistics: false, // min/max of opaque blobs is useless; sample_id keeps its own
    rowGroupSize: rowGroupRows(meta, meta.maxRowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES,
      meta.maxRowGroupRows ?? DEFAULT_ROW_GROUP_ROWS),
    kvMetadata: [{ key: SHARD_KV_KEY, value: JSON.stringify(shardKv(meta)) }],
    createdBy: SHARD_CREATED_BY,
  });
  return new Uint8Array(buffer);
}

/** A `lists` shard (lib/shards/lists.ts) with the codec and row-group caps of `meta`. */
function encodeLists(rows: readonly LogitRow[], meta: WriteShardMeta, path: string): Uint8Array {
  const name = meta.codec ?? 'BROTLI';
  const compress = { GZIP: gzipAt(meta.gzipLevel ?? DEFAULT_GZIP_LEVEL), BROTLI: brotliAt(meta.brotliQuality ?? DEFAULT_BROTLI_QUALITY), SNAPPY: snappyCompress, UNCOMPRESSED: undefined }[name];
  const groupRows = Math.max(1, Math.min(meta.maxRowGroupRows ?? DEFAULT_ROW_GROUP_ROWS, Math.floor((meta.maxRowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES) / listsRowBytes(meta))));
  return encodeListsShard(rows, meta, { name, compress }, { rowGroupRows: groupRows, createdBy: SHARD_CREATED_BY }, path);
}

/**
 * Writes `rows` (each of the shapes in `meta`, blobs in `meta.layout`, default
 * {@link SHARD_LAYOUT}) as one Parquet shard at `path`, via `path + '.tmp'`, fsync and
 * rename. Errors, one line each, name the path: bad layout, gzip level or brotli quality, no
 * rows, a row of the wrong shape (`"<path>: row 3: topk_ids has 100 values, expected 4096"`),
 * an id too large for uint16. Nothing is left under `path` on error.
 */
export async function writeShard(path: string, rows: readonly LogitRow[], meta: WriteShardMeta): Promise<ShardWriteResult> {
  checkLayout(meta, path);
  const level = meta.gzipLevel ?? DEFAULT_GZIP_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new Error(`${path}: gzipLevel must be an integer 1..9 (got ${level})`);
  const quality = meta.brotliQuality ?? DEFAULT_BROTLI_QUALITY;
  if (!Number.isInteger(quality) || quality < 0 || quality > 11) throw new Error(`${path}: brotliQuality must be an integer 0..11 (got ${quality})`);
  if (rows.length === 0) throw new Error(`${path}: refusing to write a shard with no rows`);
  const bytes = meta.layout === 'lists' ? encodeLists(rows, meta, path) : encodeShard(rows.map((row, i) => packRow(row, meta, `${path}: row ${i}`)), meta);
  await writeFileAtomic(path, bytes);
  const result: ShardWriteResult = { rows: rows.length, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
  return meta.layout === 'compact' ? { ...result, klError: codecError(rows, meta) } : result;
}

/** The compact codec's KL error over `rows` at τ = meta.errorTemperature (log_z column 0). */
function codecError(rows: readonly LogitRow[], meta: WriteShardMeta): KlErrorTotals {
  const totals = emptyKlTotals();
  for (const r of rows) {
    addKlError(totals, r.topk_ids, r.topk_logits, compactValues(r.topk_logits, meta.valueStep!), r.log_z, meta.k, 0, meta.errorTemperature ?? 1);
  }
  return totals;
}

/**
 * Packs and encodes (in memory, nothing written) a small synthetic shard so the JIT has compiled
 * the packing and encoding loops before the first real shard: a fresh writer thread otherwise
 * writes its first shard ~3× slower, while it competes with the teacher for the cores.
 */
export function warmUpShardWriter(): void {
  const L = 128, k = 32, T = 3, meta: WriteShardMeta = { seqLen: L, k, numTemps: T, idDtype: 'uint16', valueDtype: 'float16' };
  const rows: LogitRow[] = Array.from({ length: 8 }, (_, r) => ({
    sample_id: BigInt(r),
    input_ids: Uint32Array.from({ length: L }, (_, i) => (i * 7 + r) % 4096),
    target_ids: Int32Array.from({ length: L }, (_, i) => (i * 7 + r + 1) % 4096),
    topk_ids: Uint32Array.from({ length: L * k }, (_, i) => (i * 131 + r) % 4096),
    topk_logits: Float32Array.from({ length: L * k }, (_, i) => -(i % k) * 0.37),
    log_z: Float32Array.from({ length: L * T }, (_, i) => 1 + (i % T)),
  }));
  for (let i = 0; i < 3; i++) encodeShard(rows.map((row) => packRow(row, meta, 'warm-up')), meta);
}
