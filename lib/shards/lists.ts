/**
 * Shard layout `lists` (schema.ts): every array column a typed Parquet LIST, so DuckDB, pyarrow
 * and Hugging Face `datasets` read a shard with plain SQL / `load_dataset("parquet", …)`, no kd
 * macros. Per row (one window of L positions, k ids per position, T temperatures):
 *
 * | column        | Parquet type (3-level LIST, all REQUIRED)                 | shape  |
 * | ------------- | --------------------------------------------------------- | ------ |
 * | `sample_id`   | INT64                                                     | scalar |
 * | `input_ids`   | list<INT32 (UINT_16 or UINT_32, manifest encoding.ids)>    | [L]    |
 * | `target_ids`  | list<INT32>, −100 = no target                             | [L]    |
 * | `topk_ids`    | list<list<INT32 (UINT_16 or UINT_32)>>                    | [L][k] |
 * | `topk_logits` | list<list<FLOAT16 or FLOAT (encoding.values)>>            | [L][k] |
 * | `log_z`       | list<list<FLOAT>>, BYTE_STREAM_SPLIT                      | [L][T] |
 * | `hidden`      | optional: list<list<FLOAT16>>                             | [L][n·w] |
 *
 * The unsigned ids carry the legacy ConvertedType UINT_16 / UINT_32 and no LogicalType:
 * hyparquet-writer 0.17 serialises IntType.bitWidth as an i32 where Parquet's Thrift says i8,
 * and DuckDB then refuses the whole footer ("TProtocolException: Invalid data"); readers derive
 * the logical type from the converted type (DuckDB: USMALLINT / UINTEGER, pyarrow: uint16 /
 * uint32). FLOAT16 is FIXED_LEN_BYTE_ARRAY(2) with LogicalType FLOAT16 (DuckDB 1.5 reads it as
 * FLOAT). BYTE_STREAM_SPLIT only on FLOAT leaves: DuckDB 1.5 refuses it on INT32 and FLOAT16
 * ("only supported for FLOAT or DOUBLE data").
 *
 * Pages are written here, not by hyparquet-writer's row API, whose Dremel encoder walks every
 * value as a JS object (63–81 CPU-µs per position against 2.6 here; schema.ts): every
 * list has a fixed length, so the repetition levels of a row are one short run pattern and the
 * definition levels one run, and the values are the little-endian words themselves (PLAIN). Data
 * pages are v1, so the page codec also compresses the levels (v2 stores them raw, ~4 bytes per
 * position per nested column); a page holds whole rows, ~1 MiB of values. The footer is written
 * with hyparquet-writer's Thrift serialiser (writeMetadata).
 */
import type { ColumnChunk, Encoding, FileMetaData, RowGroup, SchemaElement } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer/src/bytewriter.js';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { encodeHalf } from '../logits/fp16.js';
import { splitBytes } from './packing.js';
import { SHARD_KV_KEY, hiddenValues, shardKv, type LogitRow, type ShardLayout } from './schema.js';

/** A page codec: the codec's name as Parquet records it and its compressor (none = UNCOMPRESSED). */
export interface PageCodec {
  name: 'GZIP' | 'BROTLI' | 'SNAPPY' | 'UNCOMPRESSED';
  compress?: (input: Uint8Array) => Uint8Array;
}

/** Options of {@link encodeListsShard}. */
export interface ListsOptions {
  /** Row-group cap in rows (from the caps in bytes and rows). */
  rowGroupRows: number;
  /** Parquet `created_by`. */
  createdBy: string;
  /** Uncompressed values per data page, cut at whole rows (at least one). Default 1 MiB. */
  pageBytes?: number;
  /**
   * false: `topk_ids`, `topk_logits`, `log_z`, `hidden` as flat lists of L·k (L·T, L·n·w)
   * values instead of [L][k]; only for the measurement in schema.ts (kd reads and writes nested).
   */
  nested?: boolean;
}

type Words = Uint16Array | Uint32Array | Int32Array | Float32Array;

/** One array column of the layout: its leaf type and how a row's values become PLAIN words. */
export interface ListColumn {
  name: string;
  /** Leaf element (without name and repetition). */
  leaf: Omit<SchemaElement, 'name' | 'repetition_type'>;
  /** 1 = list<leaf> of `outer` values, 2 = list<list<leaf>>: `outer` lists of `inner` values. */
  depth: 1 | 2;
  outer: number;
  inner: number;
  /** Bytes per leaf value. */
  width: 2 | 4 | 8;
  encoding: Encoding;
  /** The row's outer·inner values as little-endian words of `width` bytes. */
  words: (row: LogitRow, where: string) => Words;
}

const UINT16: ListColumn['leaf'] = { type: 'INT32', converted_type: 'UINT_16' };
const UINT32: ListColumn['leaf'] = { type: 'INT32', converted_type: 'UINT_32' };
const FLOAT16: ListColumn['leaf'] = { type: 'FIXED_LEN_BYTE_ARRAY', type_length: 2, logical_type: { type: 'FLOAT16' } };
const FLOAT: ListColumn['leaf'] = { type: 'FLOAT' };

/** Default uncompressed values per page (hyparquet-writer's default page size). */
const PAGE_BYTES = 1 << 20;

/** Ids as PLAIN INT32 words; throws when an id does not fit uint16 under a uint16 layout. */
function idWords(ids: Uint32Array, layout: ShardLayout, where: string): Uint32Array {
  if (layout.idDtype === 'uint16') {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] > 0xffff) throw new Error(`${where}: id ${ids[i]} at index ${i} does not fit uint16 (use idDtype 'uint32')`);
    }
  }
  return ids;
}

/** The array columns of `layout` in file order (nested = the kd layout; see {@link ListsOptions}). */
export function listColumns(layout: ShardLayout, nested = true): ListColumn[] {
  const { seqLen: L, k, numTemps: T } = layout;
  const ids = layout.idDtype === 'uint16' ? UINT16 : UINT32;
  const per = (inner: number) => (nested ? { depth: 2 as const, outer: L, inner } : { depth: 1 as const, outer: L * inner, inner: 1 });
  const fp16 = layout.valueDtype === 'float16';
  const cols: ListColumn[] = [
    { name: 'input_ids', leaf: ids, depth: 1, outer: L, inner: 1, width: 4, encoding: 'PLAIN', words: (r, w) => idWords(r.input_ids, layout, `${w}: input_ids`) },
    { name: 'target_ids', leaf: { type: 'INT32' }, depth: 1, outer: L, inner: 1, width: 4, encoding: 'PLAIN', words: (r) => r.target_ids },
    { name: 'topk_ids', leaf: ids, ...per(k), width: 4, encoding: 'PLAIN', words: (r, w) => idWords(r.topk_ids, layout, `${w}: topk_ids`) },
    {
      name: 'topk_logits', leaf: fp16 ? FLOAT16 : FLOAT, ...per(k), width: fp16 ? 2 : 4, encoding: fp16 ? 'PLAIN' : 'BYTE_STREAM_SPLIT',
      words: (r) => (fp16 ? encodeHalf(r.topk_logits) : r.topk_logits),
    },
    { name: 'log_z', leaf: FLOAT, ...per(T), width: 4, encoding: 'BYTE_STREAM_SPLIT', words: (r) => r.log_z },
  ];
  if (layout.hidden) {
    const nw = hiddenValues(layout) / L;
    cols.push({ name: 'hidden', leaf: FLOAT16, ...per(nw), width: 2, encoding: 'PLAIN', words: (r) => r.hidden! });
  }
  return cols;
}

/** Schema elements of one list column (3-level LIST, Parquet LogicalTypes.md), leaf last. */
function listElements(c: ListColumn): SchemaElement[] {
  const group = (name: string): SchemaElement[] => [
    { name, repetition_type: 'REQUIRED', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  ];
  return [...group(c.name), ...(c.depth === 2 ? group('element') : []), { name: 'element', repetition_type: 'REQUIRED', ...c.leaf }];
}

/** The footer schema of a `lists` shard (root first), as written and as the reader expects it. */
export function listsSchema(layout: ShardLayout, nested = true): SchemaElement[] {
  const cols = listColumns(layout, nested);
  return [
    { name: 'root', num_children: 1 + cols.length },
    { name: 'sample_id', type: 'INT64', repetition_type: 'REQUIRED' },
    ...cols.flatMap(listElements),
  ];
}

/** Uncompressed bytes of one row as the lists layout holds it (ids widened to INT32), for row-group sizing. */
export function listsRowBytes(layout: ShardLayout): number {
  return 8 + listColumns(layout).reduce((n, c) => n + c.outer * c.inner * c.width, 0);
}

/** Parquet's RLE/bit-packing hybrid, RLE runs only, for level values < 256 (one byte each). */
class LevelRuns {
  private readonly bytes: number[] = [];
  private value = -1;
  private count = 0;

  /** Appends `count` copies of `value`, merged with a preceding run of the same value. */
  add(value: number, count: number): this {
    if (count === 0) return this;
    if (value !== this.value) this.flush();
    this.value = value;
    this.count += count;
    return this;
  }

  /** The encoded runs. */
  encode(): Uint8Array {
    this.flush();
    return Uint8Array.from(this.bytes);
  }

  private flush(): void {
    if (this.count === 0) return;
    for (let h = this.count * 2; ; h = Math.floor(h / 128)) { // ULEB128 of (count << 1): an RLE run
      if (h < 128) { this.bytes.push(h); break; }
      this.bytes.push((h & 0x7f) | 0x80);
    }
    this.bytes.push(this.value);
    this.count = 0;
  }
}

/**
 * Repetition levels of `rows` rows of column `c` (Dremel): 0 opens a row, 1 opens the next
 * position of a nested list, `depth` continues the innermost list.
 */
function repetitionLevels(c: ListColumn, rows: number): Uint8Array {
  const runs = new LevelRuns();
  for (let r = 0; r < rows; r++) {
    if (c.depth === 1) runs.add(0, 1).add(1, c.outer - 1);
    else for (let t = 0; t < c.outer; t++) runs.add(t === 0 ? 0 : 1, 1).add(2, c.inner - 1);
  }
  return runs.encode();
}

/** Appends a uint32 little-endian length and then `bytes` (how v1 pages carry RLE levels). */
function withLength(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length, true);
  out.set(bytes, 4);
  return out;
}

/** Concatenation of byte arrays. */
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Writes one DATA_PAGE (v1) of `values` leaf values; returns its uncompressed size with header. */
function writePage(w: ByteWriter, raw: Uint8Array, values: number, encoding: Encoding, codec: PageCodec): number {
  const body = codec.compress ? codec.compress(raw) : raw;
  const start = w.offset;
  writePageHeader(w, {
    type: 'DATA_PAGE', uncompressed_page_size: raw.length, compressed_page_size: body.length,
    data_page_header: { num_values: values, encoding, definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
  });
  const header = w.offset - start;
  w.appendBytes(body);
  return header + raw.length;
}

/** One column chunk of rows [from, to) of list column `c`. */
function writeListChunk(w: ByteWriter, rows: readonly LogitRow[], from: number, to: number, c: ListColumn, codec: PageCodec, pageBytes: number, where: string): ColumnChunk {
  const offset = w.offset, perRow = c.outer * c.inner, rowBytes = perRow * c.width;
  const pageRows = Math.max(1, Math.floor(pageBytes / rowBytes));
  const path = c.depth === 2 ? [c.name, 'list', 'element', 'list', 'element'] : [c.name, 'list', 'element'];
  let uncompressed = 0;
  for (let p = from; p < to; p += pageRows) {
    const n = Math.min(pageRows, to - p);
    const values = new Uint8Array(n * rowBytes);
    for (let r = 0; r < n; r++) {
      const words = c.words(rows[p + r], `${where}: row ${p + r}`);
      if (words.length !== perRow) throw new Error(`${where}: row ${p + r}: ${c.name} has ${words.length} values, expected ${perRow}`);
      values.set(new Uint8Array(words.buffer, words.byteOffset, words.byteLength), r * rowBytes);
    }
    const data = c.encoding === 'BYTE_STREAM_SPLIT' ? splitBytes(new Float32Array(values.buffer)) : values;
    const def = new LevelRuns().add(c.depth, n * perRow).encode(); // every value present at the deepest level
    const raw = concat([withLength(repetitionLevels(c, n)), withLength(def), data]);
    uncompressed += writePage(w, raw, n * perRow, c.encoding, codec);
  }
  return {
    file_offset: BigInt(offset),
    meta_data: {
      type: c.leaf.type!, encodings: [c.encoding, 'RLE'], path_in_schema: path, codec: codec.name,
      num_values: BigInt((to - from) * perRow), total_uncompressed_size: BigInt(uncompressed),
      total_compressed_size: BigInt(w.offset - offset), data_page_offset: BigInt(offset),
    },
  };
}

/** The sample_id chunk of rows [from, to): INT64 PLAIN, one page, with min/max statistics. */
function writeSampleIds(w: ByteWriter, rows: readonly LogitRow[], from: number, to: number, codec: PageCodec, where: string): ColumnChunk {
  const ids = new BigInt64Array(to - from);
  for (let r = from; r < to; r++) {
    const id = rows[r].sample_id;
    if (typeof id !== 'bigint' || BigInt.asIntN(64, id) !== id) throw new Error(`${where}: row ${r}: sample_id must be an int64 bigint (got ${String(id)})`);
    ids[r - from] = id;
  }
  const offset = w.offset;
  const uncompressed = writePage(w, new Uint8Array(ids.buffer), ids.length, 'PLAIN', codec);
  let min = ids[0], max = ids[0];
  for (const id of ids) { if (id < min) min = id; if (id > max) max = id; }
  return {
    file_offset: BigInt(offset),
    meta_data: {
      type: 'INT64', encodings: ['PLAIN'], path_in_schema: ['sample_id'], codec: codec.name, num_values: BigInt(ids.length),
      total_uncompressed_size: BigInt(uncompressed), total_compressed_size: BigInt(w.offset - offset), data_page_offset: BigInt(offset),
      statistics: { min_value: min, max_value: max, null_count: 0n },
    },
  };
}

/**
 * Encodes `rows` (shapes of `layout`) as a `lists` shard: the bytes of a whole Parquet file,
 * byte-deterministic (same rows, layout and options → same bytes). Row groups of
 * `opts.rowGroupRows` rows; the footer's key-value metadata holds `kd.shard` as for the packed
 * layouts. Throws `"<where>: row 3: topk_ids has 100 values, expected 4096"` on a wrong shape,
 * and the like for an id beyond uint16 or a sample_id that is not an int64.
 */
export function encodeListsShard(rows: readonly LogitRow[], layout: ShardLayout, codec: PageCodec, opts: ListsOptions, where: string): Uint8Array {
  const cols = listColumns(layout, opts.nested ?? true);
  if (rows.some((r) => (r.hidden !== undefined) !== (layout.hidden !== undefined))) {
    throw new Error(`${where}: ${layout.hidden ? 'every row needs' : 'the layout has no'} a hidden column`);
  }
  const w = new ByteWriter();
  w.appendUint32(0x31524150); // 'PAR1'
  const groups: RowGroup[] = [];
  for (let from = 0; from < rows.length; from += opts.rowGroupRows) {
    const to = Math.min(rows.length, from + opts.rowGroupRows), start = w.offset;
    const columns = [writeSampleIds(w, rows, from, to, codec, where), ...cols.map((c) => writeListChunk(w, rows, from, to, c, codec, opts.pageBytes ?? PAGE_BYTES, where))];
    groups.push({
      columns, num_rows: BigInt(to - from), file_offset: BigInt(start), total_compressed_size: BigInt(w.offset - start),
      total_byte_size: columns.reduce((n, c) => n + c.meta_data!.total_uncompressed_size, 0n),
    });
  }
  const meta: FileMetaData = {
    version: 2, schema: listsSchema(layout, opts.nested ?? true), num_rows: BigInt(rows.length), row_groups: groups,
    key_value_metadata: [{ key: SHARD_KV_KEY, value: JSON.stringify(shardKv({ ...layout, layout: 'lists' })) }],
    created_by: opts.createdBy, metadata_length: 0, // not serialised
  };
  writeMetadata(w, meta);
  w.appendUint32(0x31524150);
  return new Uint8Array(w.getBuffer());
}
