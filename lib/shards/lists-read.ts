/**
 * Reading `lists` shards (lists.ts) into a {@link ShardBlock} or LogitRows. Lists are never
 * assembled into JS arrays of arrays: every list of the layout has a fixed length, so once the
 * levels are checked (no nulls, each row holds exactly [L] or [L][k] values) the leaf values, in
 * file order, are the block's row-major arrays. The pages kd writes (v1, PLAIN or
 * BYTE_STREAM_SPLIT FLOAT, RLE levels) are decoded here straight from the page bytes; any other
 * page (another writer's v2 pages, dictionaries, bit-packed levels) by hyparquet's page decoders
 * (~3× slower: the levels become JS arrays). FLOAT16 values are copied as their bits.
 */
import type { AsyncBuffer, Compressors, DecodedArray, FileMetaData, PageHeader, SchemaElement } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { DEFAULT_PARSERS } from 'hyparquet/src/convert.js';
import { decompressPage, readDataPage, readDataPageV2 } from 'hyparquet/src/datapage.js';
import { readPlain } from 'hyparquet/src/plain.js';
import { getSchemaPath } from 'hyparquet/src/schema.js';
import { decodeHalf } from '../logits/fp16.js';
import { allocBlock, blockColumn, type BlockColumn, type ShardBlock } from './block.js';
import { listColumns, listsSchema, type ListColumn } from './lists.js';
import { joinBytes32 } from './packing.js';
import type { LogitRow, ShardLayout } from './schema.js';

/** A file whose lists do not have the layout's fixed shape, or hold nulls (the reader reports it as a mismatch). */
export class ListShapeError extends Error {}

/** The fields of a schema element that the layout fixes. */
function schemaLine(e: SchemaElement): string {
  const logical = e.logical_type ? ` ${e.logical_type.type}` : '';
  return `${e.name}: ${e.repetition_type ?? ''} ${e.type ?? 'group'}${e.type_length ? `(${e.type_length})` : ''} ${e.converted_type ?? ''}${logical} ×${e.num_children ?? 0}`;
}

/**
 * The first difference between the file's schema and the `lists` schema of `layout`, as
 * `"schema element 7 is 'topk_ids: REQUIRED INT32 UINT_32', expected '… UINT_16'"`, or null.
 */
export function listsSchemaProblem(meta: FileMetaData, layout: ShardLayout): string | null {
  const want = listsSchema(layout).map(schemaLine), got = meta.schema.map(schemaLine);
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] !== got[i]) return `schema element ${i} is '${got[i] ?? 'missing'}', expected '${want[i] ?? 'none'}'`;
  }
  return null;
}

/** What one leaf column must hold per row and where its values go. */
interface Target {
  name: string;
  /** Leaf values per row. */
  perRow: number;
  /** Values per innermost list (perRow for depth 1, 1 for the scalar sample_id). */
  inner: number;
  depth: 0 | 1 | 2;
  dest: BigInt64Array | Uint16Array | Uint32Array | Int32Array | Float32Array;
}

/** Throws unless levels say: no nulls, rows of perRow values, innermost lists of `inner`; `first` = index of the page's first value in the chunk. */
function checkLevels(t: Target, rep: ArrayLike<number>, def: ArrayLike<number> | undefined, first: number): void {
  if (def) for (let i = 0; i < def.length; i++) if (def[i] !== t.depth) throw new ListShapeError(`${t.name}: null or empty list at value ${first + i}`);
  if (t.depth === 0) return;
  for (let i = 0; i < rep.length; i++) {
    const j = (first + i) % t.perRow;
    const want = j === 0 ? 0 : t.depth === 1 || j % t.inner === 0 ? 1 : 2;
    if (rep[i] !== want) throw new ListShapeError(`${t.name}: row ${Math.floor((first + i) / t.perRow)} is not [${t.depth === 2 ? `${t.perRow / t.inner}][${t.inner}` : t.perRow}] values`);
  }
}

/** Copies decoded leaf values into dest at `at` (FLOAT16 bytes → fp16 bits). */
function copyValues(values: DecodedArray, dest: Target['dest'], at: number, flba: boolean): void {
  if (flba) {
    const d = dest as Uint16Array;
    for (let i = 0; i < values.length; i++) { const b = values[i] as Uint8Array; d[at + i] = b[0] | (b[1] << 8); }
  } else if (ArrayBuffer.isView(values)) {
    (dest as Float32Array).set(values as unknown as Float32Array, at); // typed-array set converts the element type (int32 → uint16/uint32 keeps the bits)
  } else {
    for (let i = 0; i < values.length; i++) dest[at + i] = values[i] as never;
  }
}

/**
 * Decodes a v1 page's length-prefixed RLE/bit-packed hybrid levels at `at` into `out` (all of
 * it); returns the offset after them, or −1 at a bit-packed run (not written by kd: the caller
 * falls back to hyparquet's decoder).
 */
function decodeLevels(page: Uint8Array, at: number, out: Uint8Array): number {
  const end = at + 4 + new DataView(page.buffer, page.byteOffset + at, 4).getUint32(0, true);
  let p = at + 4, i = 0;
  while (i < out.length) {
    if (p >= end) throw new Error(`levels end after ${i} of ${out.length} values`);
    let header = 0;
    for (let shift = 1; ; shift *= 128) { const b = page[p++]; header += (b & 0x7f) * shift; if (b < 0x80) break; } // ULEB128
    if (header % 2 === 1) return -1;
    out.fill(page[p++], i, Math.min(out.length, i + header / 2)); // RLE run: count, then the value in one byte (bit widths ≤ 8)
    i += header / 2;
  }
  return end;
}

/** Values of PLAIN/BYTE_STREAM_SPLIT bytes as a typed array of the leaf's type (FLOAT16 as its bits). */
function wordsOf(bytes: Uint8Array, type: string, split: boolean): ArrayLike<number | bigint> & ArrayBufferView {
  const own = bytes.slice(); // aligned
  if (split) return new Float32Array(joinBytes32(own).buffer);
  if (type === 'INT64') return new BigInt64Array(own.buffer);
  if (type === 'FIXED_LEN_BYTE_ARRAY') return new Uint16Array(own.buffer);
  return type === 'FLOAT' ? new Float32Array(own.buffer) : new Int32Array(own.buffer);
}

/**
 * The fast path for what kd writes: a v1 page of PLAIN values (or BYTE_STREAM_SPLIT FLOAT), levels
 * checked in place of being expanded into JS arrays. Returns the values, or undefined for other pages.
 */
function plainPage(page: Uint8Array, n: number, encoding: string, element: SchemaElement, t: Target, seen: number): ArrayBufferView | undefined {
  const width = { INT32: 4, FLOAT: 4, INT64: 8, FIXED_LEN_BYTE_ARRAY: element.type_length === 2 ? 2 : 0 }[element.type as string] ?? 0;
  const split = encoding === 'BYTE_STREAM_SPLIT';
  if (width === 0 || !(encoding === 'PLAIN' || (split && element.type === 'FLOAT'))) return undefined;
  let at = 0;
  if (t.depth > 0) {
    const rep = new Uint8Array(n), def = new Uint8Array(n), defAt = decodeLevels(page, 0, rep);
    at = defAt < 0 ? -1 : decodeLevels(page, defAt, def);
    if (at < 0) return undefined;
    checkLevels(t, rep, def, seen);
  }
  if (page.length - at !== n * width) throw new Error(`${t.name}: page holds ${page.length - at} value bytes, expected ${n * width}`);
  return wordsOf(page.subarray(at), element.type!, split);
}

/** Decodes every page of one column chunk (rows [groupStart, groupStart + rows)) into `t.dest`. */
async function readChunk(file: AsyncBuffer, meta: FileMetaData, group: number, groupStart: number, t: Target, compressors: Compressors): Promise<void> {
  const chunk = meta.row_groups[group].columns.find((c) => c.meta_data?.path_in_schema[0] === t.name)?.meta_data;
  if (!chunk) throw new Error(`row group ${group} has no column ${t.name}`);
  const schemaPath = getSchemaPath(meta.schema, chunk.path_in_schema);
  const element = schemaPath[schemaPath.length - 1].element;
  const decoder = { pathInSchema: chunk.path_in_schema, type: chunk.type, element, schemaPath, codec: chunk.codec, parsers: DEFAULT_PARSERS, compressors };
  const start = Number(chunk.dictionary_page_offset || chunk.data_page_offset);
  const buffer = await file.slice(start, start + Number(chunk.total_compressed_size));
  const reader = { view: new DataView(buffer), offset: 0 };
  const total = Number(meta.row_groups[group].num_rows) * t.perRow, at = groupStart * t.perRow;
  let seen = 0, dictionary: DecodedArray | undefined;
  while (seen < total) {
    if (reader.offset >= buffer.byteLength) throw new Error(`${t.name}: column chunk of row group ${group} ends after ${seen} of ${total} values`);
    const header: PageHeader = parquetHeader(reader);
    const body = new Uint8Array(buffer, reader.offset, header.compressed_page_size);
    reader.offset += header.compressed_page_size;
    if (header.type === 'DICTIONARY_PAGE') {
      const page = decompressPage(body, header.uncompressed_page_size, chunk.codec, compressors);
      dictionary = readPlain({ view: new DataView(page.buffer, page.byteOffset, page.byteLength), offset: 0 }, chunk.type, header.dictionary_page_header!.num_values, element.type_length);
      continue;
    }
    if (header.type !== 'DATA_PAGE' && header.type !== 'DATA_PAGE_V2') continue;
    const v1 = header.data_page_header, page = v1 && decompressPage(body, header.uncompressed_page_size, chunk.codec, compressors);
    const fast = v1 && seen + v1.num_values <= total ? plainPage(page!, v1.num_values, v1.encoding, element, t, seen) : undefined;
    if (fast) {
      (t.dest as Float32Array).set(fast as Float32Array, at + seen); // typed-array set converts the element type (int32 → uint16/uint32 keeps the bits)
      seen += v1!.num_values;
      continue;
    }
    const { repetitionLevels, definitionLevels, dataPage } = v1 ? readDataPage(page!, v1, decoder) : readDataPageV2(body, header, decoder);
    const encoding = header.data_page_header?.encoding ?? header.data_page_header_v2!.encoding;
    let values = dataPage;
    if (encoding.endsWith('_DICTIONARY')) {
      if (!dictionary) throw new Error(`${t.name}: dictionary-encoded page without a dictionary page`);
      const dict = dictionary;
      values = Array.from(dataPage as ArrayLike<number>, (i) => dict[i]);
    }
    if (seen + values.length > total) throw new ListShapeError(`${t.name}: row group ${group} holds more than ${total} values`);
    checkLevels(t, repetitionLevels, definitionLevels, seen);
    copyValues(values, t.dest, at + seen, chunk.type === 'FIXED_LEN_BYTE_ARRAY');
    seen += values.length;
  }
}

/** The leaf columns to read, with their destinations in `block`. */
function targets(layout: ShardLayout, block: ShardBlock): Target[] {
  return listColumns(layout).map((c: ListColumn) => ({
    name: c.name, perRow: c.outer * c.inner, inner: c.depth === 2 ? c.inner : c.outer * c.inner, depth: c.depth,
    dest: blockColumn(block, c.name as BlockColumn),
  }));
}

/**
 * Decodes every list column of a `lists` shard into `block` (allocated for the footer's row
 * count; see {@link allocBlock}). The caller has checked the `kd.shard` metadata and
 * {@link listsSchemaProblem}. Throws {@link ListShapeError} for lists of other lengths or nulls,
 * other Errors (hyparquet's, or a chunk cut short) for a damaged file.
 */
export async function readListsInto(file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, block: ShardBlock, compressors: Compressors): Promise<void> {
  for (const t of targets(layout, block)) {
    for (let g = 0, start = 0; g < meta.row_groups.length; start += Number(meta.row_groups[g].num_rows), g++) {
      await readChunk(file, meta, g, start, t, compressors);
    }
  }
}

/** Every row's sample_id (INT64) of a shard of either layout. */
export async function readSampleIds(file: AsyncBuffer, meta: FileMetaData, compressors: Compressors): Promise<BigInt64Array> {
  const t: Target = { name: 'sample_id', perRow: 1, inner: 1, depth: 0, dest: new BigInt64Array(Number(meta.num_rows)) };
  for (let g = 0, start = 0; g < meta.row_groups.length; start += Number(meta.row_groups[g].num_rows), g++) {
    await readChunk(file, meta, g, start, t, compressors);
  }
  return t.dest as BigInt64Array;
}

/**
 * Reads a whole `lists` shard as LogitRows (ids widened to Uint32Array, fp16 logits decoded
 * exactly to Float32Array), as readShard returns them for the packed layouts.
 */
export async function readListsRows(file: AsyncBuffer, meta: FileMetaData, layout: ShardLayout, compressors: Compressors): Promise<LogitRow[]> {
  const rows = Number(meta.num_rows), block = allocBlock(layout, rows);
  await readListsInto(file, meta, layout, block, compressors);
  const ids = await readSampleIds(file, meta, compressors);
  const { seqLen: L, k, numTemps: T } = layout, nh = block.hidden ? block.hidden.length / rows : 0;
  const cut = <A extends { subarray(a: number, b: number): A; slice(): A }>(a: A, n: number, r: number) => a.subarray(r * n, (r + 1) * n).slice();
  return Array.from({ length: rows }, (_, r): LogitRow => ({
    sample_id: ids[r],
    input_ids: Uint32Array.from(block.inputIds.subarray(r * L, (r + 1) * L)),
    target_ids: cut(block.targets, L, r),
    topk_ids: Uint32Array.from(block.topkIds.subarray(r * L * k, (r + 1) * L * k)),
    topk_logits: block.topkLogits instanceof Uint16Array ? decodeHalf(block.topkLogits.subarray(r * L * k, (r + 1) * L * k)) : cut(block.topkLogits, L * k, r),
    log_z: cut(block.logZ, L * T, r),
    ...(block.hidden ? { hidden: cut(block.hidden, nh, r) } : {}),
  }));
}
