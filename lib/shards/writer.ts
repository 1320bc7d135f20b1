/**
 * Shard writer: LogitRow[] → one Parquet file (layout in schema.ts), written crash-safe and
 * byte-deterministic (same rows + meta → same bytes: no timestamps, fixed created_by,
 * gzip header without mtime/OS).
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { writeFileAtomic } from './atomic.js';
import { packRow, type PackedRow } from './packing.js';
import { SHARD_KV_KEY, SHARD_LAYOUT, checkLayout, rowBytes, shardKv, type LogitRow, type ShardLayout } from './schema.js';

/** Page compression. GZIP (default) is the smallest codec writable here; see schema.ts. */
export type ShardCodec = 'GZIP' | 'SNAPPY' | 'UNCOMPRESSED';

/** Shapes of the rows plus writing options. */
export interface WriteShardMeta extends ShardLayout {
  /** Default 'GZIP'. */
  codec?: ShardCodec;
  /**
   * zlib level of GZIP pages, 1–9. Default 1: byte-split blobs at level 1 are smaller than
   * `packed-le` ones at level 6 (the level kd used before) and faster to write; see schema.ts.
   */
  gzipLevel?: number;
  /** Row-group cap in uncompressed payload bytes. Default 64 MiB. */
  maxRowGroupBytes?: number;
  /** Row-group cap in rows. Default 4096. */
  maxRowGroupRows?: number;
}

/** What was written: row count, file size in bytes, lowercase hex sha256 of the file. */
export interface ShardWriteResult {
  rows: number;
  bytes: number;
  sha256: string;
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
    ],
    codec: meta.codec ?? 'GZIP',
    compressors: { GZIP: gzipAt(meta.gzipLevel ?? DEFAULT_GZIP_LEVEL) },
    statistics: false, // min/max of opaque blobs is useless; sample_id keeps its own
    rowGroupSize: rowGroupRows(meta, meta.maxRowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES,
      meta.maxRowGroupRows ?? DEFAULT_ROW_GROUP_ROWS),
    kvMetadata: [{ key: SHARD_KV_KEY, value: JSON.stringify(shardKv(meta)) }],
    createdBy: SHARD_CREATED_BY,
  });
  return new Uint8Array(buffer);
}

/**
 * Writes `rows` (each of the shapes in `meta`, blobs in `meta.layout`, default
 * {@link SHARD_LAYOUT}) as one Parquet shard at `path`, via `path + '.tmp'`, fsync and
 * rename. Errors, one line each, name the path: bad layout or gzip level, no rows, a row of the wrong shape (`"<path>: row 3: topk_ids has 100 values, expected
 * 4096"`), an id too large for uint16. Nothing is left under `path` on error.
 */
export async function writeShard(path: string, rows: readonly LogitRow[], meta: WriteShardMeta): Promise<ShardWriteResult> {
  checkLayout(meta, path);
  const level = meta.gzipLevel ?? DEFAULT_GZIP_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new Error(`${path}: gzipLevel must be an integer 1..9 (got ${level})`);
  if (rows.length === 0) throw new Error(`${path}: refusing to write a shard with no rows`);
  const packed = rows.map((row, i) => packRow(row, meta, `${path}: row ${i}`));
  const bytes = encodeShard(packed, meta);
  await writeFileAtomic(path, bytes);
  return { rows: rows.length, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}
