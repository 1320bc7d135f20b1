/**
 * Shard reader: one Parquet shard → LogitRow[], with the shard's shapes checked against
 * what the manifest expects before any row is decoded.
 */
import { createHash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { gunzipSync, brotliDecompressSync } from 'node:zlib';
import { parquetMetadata, parquetMetadataAsync, parquetRead, parquetReadObjects, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { fileBuffer } from '../util/file-buffer.js';
import { blockColumnsOf, allocBlock, blockColumn, columnShape, decodeBlob, type BlockColumn, type ShardBlock } from './block.js';
import { ListShapeError, listsSchemaProblem, readListsInto, readListsRows } from './lists-read.js';
import { decodeCompactSlots } from './compact.js';
import { unpackRow } from './packing.js';
import {
  columnsOf, SHARD_KV_KEY, SHARD_LAYOUTS, checkLayout, shardKv, type LayoutName, type LogitRow, type ShardLayout,
} from './schema.js';

const MAGIC = 0x31524150; // 'PAR1' little-endian

/** Decompressors beyond hyparquet's built-in SNAPPY. */
const DECOMPRESSORS = { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)), BROTLI: (input: Uint8Array) => new Uint8Array(brotliDecompressSync(input)) };

function corrupt(path: string, why: string): Error {
  return new Error(`${path}: truncated or corrupt shard (${why})`);
}

function mismatch(path: string, why: string): Error {
  return new Error(`${path}: shard does not match manifest (${why})`);
}

/** Footer metadata, or a truncated/corrupt error. */
function footer(path: string, file: ArrayBuffer): FileMetaData {
  const view = new DataView(file);
  if (file.byteLength < 12) throw corrupt(path, `${file.byteLength} bytes`);
  if (view.getUint32(0, true) !== MAGIC) throw corrupt(path, 'not a Parquet file: no PAR1 header');
  if (view.getUint32(file.byteLength - 4, true) !== MAGIC) throw corrupt(path, 'no PAR1 footer: file cut short?');
  try {
    return parquetMetadata(file);
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
}

/**
 * Compares the file's `kd.shard` metadata with the expected layout; throws on any difference.
 * Returns the byte layout the shard records (checked against `expect.layout` when that is given).
 */
function checkKv(path: string, meta: FileMetaData, expect: ShardLayout): LayoutName {
  const entry = meta.key_value_metadata?.find((kv) => kv.key === SHARD_KV_KEY);
  if (entry?.value === undefined) throw mismatch(path, `no '${SHARD_KV_KEY}' metadata: not a kd-logits shard`);
  let got: Record<string, unknown>;
  try {
    got = JSON.parse(entry.value) as Record<string, unknown>;
  } catch {
    throw corrupt(path, `'${SHARD_KV_KEY}' metadata is not JSON`);
  }
  const recorded = got.layout as LayoutName;
  const anyLayout = expect.layout === undefined && SHARD_LAYOUTS.includes(recorded);
  const want = shardKv(anyLayout ? { ...expect, layout: recorded } : expect) as unknown as Record<string, unknown>;
  const diffs = Object.keys(want)
    .filter((key) => got[key] !== want[key])
    .map((key) => `${key}=${JSON.stringify(got[key])} expected ${JSON.stringify(want[key])}`);
  if (diffs.length > 0) throw mismatch(path, diffs.join(', '));
  const names = meta.schema.slice(1).map((el) => el.name);
  const missing = columnsOf(expect).filter((c) => !names.includes(c));
  if (missing.length > 0) throw mismatch(path, `missing column ${missing.join(', ')}; layout ${recorded}`);
  return recorded;
}

/** Options of {@link readShard}. */
export interface ReadShardOptions {
  /** Expected lowercase hex sha256 of the file (from the manifest); checked before decoding. */
  sha256?: string;
}

/** True when `path` starts and ends with the Parquet magic: a complete file, not a cut one. */
export async function looksLikeParquet(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size < 12) return false;
    const head = Buffer.alloc(4), tail = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    await fh.read(tail, 0, 4, size - 4);
    return head.readUInt32LE(0) === MAGIC && tail.readUInt32LE(0) === MAGIC;
  } finally {
    await fh.close();
  }
}

/**
 * Reads every row of the shard at `path`.
 *
 * `expect` gives the shapes from the manifest ({@link ShardLayout}, e.g. via `layoutOf`); the
 * blobs are decoded by the byte layout the shard records (`packed-le` or `packed-le-split`),
 * which must equal `expect.layout` when that is set. Rows come back in file order with ids
 * widened to Uint32Array and fp16 logits decoded to Float32Array (exact). Errors (one line): `"<path>: truncated or corrupt shard (…)"` for a
 * short, cut or damaged file; `"<path>: shard does not match manifest (k=16 expected 32)"`
 * for a shard written with other shapes or not by kd, or (with `opts.sha256`) whose bytes are
 * not the listed ones (`"…: shard does not match manifest (sha256 … expected …: a shard from
 * another dataset, or damaged)"`); ENOENT-style errors name the path.
 */
export async function readShard(path: string, expect: ShardLayout, opts: ReadShardOptions = {}): Promise<LogitRow[]> {
  checkLayout(expect, path);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new Error(`${path}: cannot read shard (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const meta = footer(path, file);
  const layout = { ...expect, layout: checkKv(path, meta, expect) };
  if (opts.sha256 !== undefined) {
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== opts.sha256) throw mismatch(path, `sha256 ${sha.slice(0, 12)}… expected ${opts.sha256.slice(0, 12)}…: a shard from another dataset, or damaged`);
  }
  if (layout.layout === 'lists') return readLists(path, file, meta, layout);
  let raw: Record<string, unknown>[];
  try {
    raw = await parquetReadObjects({ file, metadata: meta, compressors: DECOMPRESSORS, utf8: false, columns: columnsOf(layout) });
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
  if (raw.length !== Number(meta.num_rows)) throw corrupt(path, `${raw.length} rows decoded, footer says ${meta.num_rows}`);
  return raw.map((r, i) => {
    try {
      return unpackRow(r, layout, `row ${i}`);
    } catch (err) {
      throw mismatch(path, (err as Error).message);
    }
  });
}

/**
 * A `lists` shard (lists-read.ts): its schema checked, then every row as LogitRows, or into
 * `block`. Errors as readShard's: a mismatch for another schema or other list lengths, else corrupt.
 */
async function readLists(path: string, file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout): Promise<LogitRow[]>;
async function readLists(path: string, file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, block: ShardBlock): Promise<void>;
async function readLists(path: string, file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, block?: ShardBlock): Promise<LogitRow[] | void> {
  const problem = listsSchemaProblem(meta, layout);
  if (problem) throw mismatch(path, problem);
  try {
    return await (block ? readListsInto(file, meta, layout, block, DECOMPRESSORS) : readListsRows(file, meta, layout, DECOMPRESSORS));
  } catch (err) {
    throw err instanceof ListShapeError ? mismatch(path, err.message) : corrupt(path, (err as Error).message);
  }
}

/** sha256 of a whole open file, read in 4 MiB pieces. */
async function hashFile(fh: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256'), piece = Buffer.alloc(Math.min(size, 4 << 20));
  for (let at = 0; at < size;) {
    const { bytesRead } = await fh.read(piece, 0, Math.min(piece.length, size - at), at);
    if (bytesRead === 0) break;
    hash.update(piece.subarray(0, bytesRead));
    at += bytesRead;
  }
  return hash.digest('hex');
}

/** Footer metadata from the end of the file, after checking both magics; a corrupt error otherwise. */
async function footerOf(path: string, file: AsyncBuffer): Promise<FileMetaData> {
  if (file.byteLength < 12) throw corrupt(path, `${file.byteLength} bytes`);
  const head = new DataView(await file.slice(0, 4)), tail = new DataView(await file.slice(file.byteLength - 4));
  if (head.getUint32(0, true) !== MAGIC) throw corrupt(path, 'not a Parquet file: no PAR1 header');
  if (tail.getUint32(0, true) !== MAGIC) throw corrupt(path, 'no PAR1 footer: file cut short?');
  try {
    return await parquetMetadataAsync(file);
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
}

/** Decodes one column of every row into `block`, checking each blob's length. */
async function readColumnInto(path: string, file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, column: BlockColumn, block: ShardBlock): Promise<void> {
  const { n, width } = columnShape(layout)[column];
  const dest = blockColumn(block, column), bytes = n * width;
  let seen = 0, problem: Error | undefined;
  const onChunk = ({ columnData, rowStart }: { columnData: ArrayLike<unknown>; rowStart: number }) => {
    for (let i = 0; i < columnData.length && !problem; i++) {
      const blob = columnData[i], row = rowStart + i;
      if (!(blob instanceof Uint8Array)) problem = mismatch(path, `row ${row}: ${column} is not a byte array`);
      else if (blob.byteLength !== bytes) problem = mismatch(path, `row ${row}: ${column} has ${blob.byteLength} bytes, expected ${bytes}`);
      else if (row >= block.rows) problem = corrupt(path, `row ${row} beyond the footer's ${block.rows} rows`);
      else decodeBlob(blob, dest.subarray(row * n, (row + 1) * n), width, layout.layout);
    }
    seen += columnData.length;
  };
  try {
    await parquetRead({ file, metadata: meta, compressors: DECOMPRESSORS, utf8: false, columns: [column], onChunk });
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
  if (problem) throw problem;
  if (seen !== block.rows) throw corrupt(path, `${seen} ${column} values decoded, footer says ${block.rows} rows`);
}

/** Blobs of every row of `column`, checked to be byte arrays of `bytes` bytes (any length when undefined). */
async function readBlobs(path: string, file: AsyncBuffer, meta: FileMetaData, column: string, rows: number, bytes?: number): Promise<Uint8Array[]> {
  const blobs: Uint8Array[] = [];
  try {
    await parquetRead({ file, metadata: meta, compressors: DECOMPRESSORS, utf8: false, columns: [column], onChunk: ({ columnData }) => {
      for (let i = 0; i < columnData.length; i++) blobs.push(columnData[i] as Uint8Array);
    } });
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
  if (blobs.length !== rows) throw corrupt(path, `${blobs.length} ${column} values decoded, footer says ${rows} rows`);
  blobs.forEach((blob, row) => {
    if (!(blob instanceof Uint8Array)) throw mismatch(path, `row ${row}: ${column} is not a byte array`);
    if (bytes !== undefined && blob.byteLength !== bytes) throw mismatch(path, `row ${row}: ${column} has ${blob.byteLength} bytes, expected ${bytes}`);
  });
  return blobs;
}

/**
 * Decodes the `compact` codec's two slot columns of every row into `block` (they decode together:
 * the ids' order comes from the values). Both columns' blobs of the whole shard are held at once,
 * about 2·L·k bytes per row (8 MiB for 1024 rows at L = 128, k = 32), besides the block.
 */
async function readCompactSlotsInto(path: string, file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, block: ShardBlock): Promise<void> {
  const n = layout.seqLen * layout.k;
  const codes = await readBlobs(path, file, meta, 'topk_logits', block.rows, n);
  const gaps = await readBlobs(path, file, meta, 'topk_ids', block.rows);
  for (let row = 0; row < block.rows; row++) {
    try {
      decodeCompactSlots({ ids: gaps[row], codes: codes[row] }, layout.k, layout.valueStep!, block.topkIds.subarray(row * n, (row + 1) * n), (block.topkLogits as Uint16Array).subarray(row * n, (row + 1) * n));
    } catch (err) {
      throw mismatch(path, `row ${row}: ${(err as Error).message}`);
    }
  }
}

/**
 * Reads the shard at `path` into one compact {@link ShardBlock}, column by column through
 * positional reads (at most one column chunk in memory besides the block, never the whole
 * file). The checks and one-line errors are those of {@link readShard}; with `opts.sha256` the
 * file is hashed (streamed) before any row is decoded. Values equal readShard's exactly (ids
 * kept in their stored width, fp16 logits as bits).
 */
export async function readShardBlock(path: string, expect: ShardLayout, opts: ReadShardOptions = {}): Promise<ShardBlock> {
  checkLayout(expect, path);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new Error(`${path}: cannot read shard (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const file = fileBuffer(fh, (await fh.stat()).size);
    const meta = await footerOf(path, file);
    const layout = { ...expect, layout: checkKv(path, meta, expect) };
    if (opts.sha256 !== undefined) {
      const sha = await hashFile(fh, file.byteLength);
      if (sha !== opts.sha256) throw mismatch(path, `sha256 ${sha.slice(0, 12)}… expected ${opts.sha256.slice(0, 12)}…: a shard from another dataset, or damaged`);
    }
    const block = allocBlock(layout, Number(meta.num_rows));
    if (block.rows === 0) throw corrupt(path, 'no rows');
    let first: unknown;
    try {
      await parquetRead({ file, metadata: meta, compressors: DECOMPRESSORS, columns: ['sample_id'], rowStart: 0, rowEnd: 1, onChunk: (c) => { first ??= c.columnData[0]; } });
    } catch (err) {
      throw corrupt(path, (err as Error).message);
    }
    if (typeof first !== 'bigint') throw mismatch(path, 'row 0: sample_id is not INT64');
    block.firstSampleId = first;
    if (layout.layout === 'lists') await readLists(path, file, meta, layout, block);
    else {
      const compact = layout.layout === 'compact';
      for (const column of blockColumnsOf(layout)) {
        if (!(compact && (column === 'topk_ids' || column === 'topk_logits'))) await readColumnInto(path, file, meta, layout, column, block);
      }
      if (compact) await readCompactSlotsInto(path, file, meta, layout, block);
    }
    return block;
  } finally {
    await fh.close();
  }
}

/**
 * Bytes the column chunks of `column` take in the shard at `path` (compressed, page headers
 * included; Parquet's total_compressed_size summed over row groups), 0 when it has no such column.
 * @throws Error "<path>: …" for a file that is not a complete Parquet file.
 */
export async function columnBytes(path: string, column: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const meta = await footerOf(path, fileBuffer(fh, (await fh.stat()).size));
    let total = 0;
    for (const group of meta.row_groups) {
      for (const chunk of group.columns) if (chunk.meta_data?.path_in_schema[0] === column) total += Number(chunk.meta_data.total_compressed_size); // [0]: a lists leaf is column.list.element
    }
    return total;
  } finally {
    await fh.close();
  }
}
