/**
 * LogitRow ⇄ column bytes in either layout of schema.ts: `packed-le` (each value's
 * little-endian bytes in order) or `packed-le-split` (the same bytes byte-stream split: for n
 * values of w bytes, byte j of value i is stored at j·n + i, as Parquet's BYTE_STREAM_SPLIT
 * does per page; the page codec (BROTLI, or GZIP) then sees the slowly varying high bytes of
 * ids and logits in one run).
 * Typed-array views are used directly, so the host must be little-endian (all Node targets
 * in practice: x64, arm64).
 */
import { endianness } from 'node:os';
import { decodeHalf, encodeHalf } from '../logits/fp16.js';
import { decodeCompactSlots, encodeCompactSlots, type CompactSlots } from './compact.js';
import { hiddenValues, SHARD_LAYOUT, spanBytes, type LayoutName, type LogitRow, type ShardLayout } from './schema.js';

if (endianness() !== 'LE') throw new Error('lib/shards/packing.ts: packed-le shards need a little-endian host');

/** One row as stored: sample_id plus one byte blob per array column. */
export interface PackedRow {
  sample_id: bigint;
  input_ids: Uint8Array;
  target_ids: Uint8Array;
  topk_ids: Uint8Array;
  topk_logits: Uint8Array;
  log_z: Uint8Array;
  /** Present iff the layout has the `hidden` column. */
  hidden?: Uint8Array;
  /** Present iff the layout has the `byte_spans` column. */
  byte_spans?: Uint8Array;
}

/** Values of one column before they become bytes: 2-byte words or 4-byte words. */
type Words = Uint16Array | Uint32Array | Int32Array | Float32Array;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Byte view of a typed array (no copy). */
function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Byte-stream split of 2- or 4-byte values: byte j of value i goes to j·n + i (n = values.length).
 * Returns a new array of values.byteLength bytes.
 */
export function splitBytes(values: Words): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(values.byteLength);
  if (values.BYTES_PER_ELEMENT === 2) {
    const v = values as Uint16Array;
    for (let i = 0; i < n; i++) {
      const x = v[i];
      out[i] = x; // a Uint8Array store keeps the low 8 bits
      out[n + i] = x >>> 8;
    }
    return out;
  }
  const v = new Uint32Array(values.buffer, values.byteOffset, n); // 4-byte words, whatever their type
  for (let i = 0, n2 = 2 * n, n3 = 3 * n; i < n; i++) {
    const x = v[i];
    out[i] = x;
    out[n + i] = x >>> 8;
    out[n2 + i] = x >>> 16;
    out[n3 + i] = x >>> 24;
  }
  return out;
}

/** Inverse of {@link splitBytes} for 2-byte values, into `out` (length bytes.length / 2). */
export function joinBytes16<T extends Uint16Array | Uint32Array>(bytes: Uint8Array, out: T): T {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = bytes[i] | (bytes[n + i] << 8);
  return out;
}

/** Inverse of {@link splitBytes} for 4-byte values: the 32-bit words (view them as Int32/Float32). */
export function joinBytes32(bytes: Uint8Array): Uint32Array {
  const n = bytes.length >>> 2;
  const out = new Uint32Array(n);
  for (let i = 0, n2 = 2 * n, n3 = 3 * n; i < n; i++) {
    out[i] = bytes[i] | (bytes[n + i] << 8) | (bytes[n2 + i] << 16) | (bytes[n3 + i] << 24);
  }
  return out;
}

/** Expected element counts per column for a layout. */
function lengths(layout: ShardLayout): Record<Exclude<keyof LogitRow, 'sample_id' | 'hidden' | 'byte_spans'>, number> {
  const { seqLen: L, k, numTemps: T } = layout;
  return { input_ids: L, target_ids: L, topk_ids: L * k, topk_logits: L * k, log_z: L * T };
}

/** Checks that `hidden` is there exactly when the layout has the column, with L·n·w values. */
function checkHidden(hidden: Uint16Array | undefined, layout: ShardLayout, where: string): void {
  const want = hiddenValues(layout);
  if (want === 0 && hidden !== undefined) throw new Error(`${where}: hidden given but the layout has no hidden column`);
  if (want > 0 && hidden?.length !== want) throw new Error(`${where}: hidden has ${hidden?.length} values, expected ${want}`);
}

/** Checks that `byte_spans` is there exactly when the layout has the column, with L·2 offsets. */
function checkSpans(spans: Uint32Array | undefined, layout: ShardLayout, where: string): void {
  if (!layout.spans && spans !== undefined) throw new Error(`${where}: byte_spans given but the layout has no byte_spans column`);
  if (layout.spans && spans?.length !== 2 * layout.seqLen) throw new Error(`${where}: byte_spans has ${spans?.length} values, expected ${2 * layout.seqLen}`);
}

/** Ids (or offsets) as uint16 or uint32 words (`dtype`, default the layout's id dtype); throws when a value does not fit uint16. */
function idWords(ids: Uint32Array, layout: ShardLayout, where: string, dtype = layout.idDtype): Uint16Array | Uint32Array {
  if (dtype === 'uint32') return ids;
  const out = new Uint16Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (v > 0xffff) throw new Error(`${where}: id ${v} at index ${i} does not fit uint16 (use idDtype 'uint32')`);
    out[i] = v;
  }
  return out;
}

/**
 * Packs one row in `layout.layout` (default {@link SHARD_LAYOUT}). Throws `"<where>: <column>
 * has N values, expected M"` on a wrong shape, a non-int64 sample_id, or an id that does not
 * fit the layout's id dtype. fp16 values are rounded to nearest even (fp16.ts).
 */
export function packRow(row: LogitRow, layout: ShardLayout, where: string): PackedRow {
  if (typeof row.sample_id !== 'bigint' || row.sample_id < INT64_MIN || row.sample_id > INT64_MAX) {
    throw new Error(`${where}: sample_id must be an int64 bigint (got ${String(row.sample_id)})`);
  }
  const want = lengths(layout);
  for (const [col, n] of Object.entries(want) as [keyof typeof want, number][]) {
    const got = row[col]?.length;
    if (got !== n) throw new Error(`${where}: ${col} has ${got} values, expected ${n}`);
  }
  checkHidden(row.hidden, layout, where);
  checkSpans(row.byte_spans, layout, where);
  const name = layout.layout ?? SHARD_LAYOUT;
  const bytes = name === 'packed-le' ? bytesOf : splitBytes;
  let compact: CompactSlots | undefined;
  if (name === 'compact') {
    idWords(row.topk_ids, layout, `${where}: topk_ids`); // the same uint16 check as the other layouts
    compact = encodeCompactSlots(row.topk_ids, row.topk_logits, layout.k, layout.valueStep!);
  }
  return {
    ...(row.hidden ? { hidden: bytes(row.hidden) } : {}),
    ...(row.byte_spans ? { byte_spans: bytes(idWords(row.byte_spans, layout, `${where}: byte_spans`, layout.spans)) } : {}),
    sample_id: row.sample_id,
    input_ids: bytes(idWords(row.input_ids, layout, `${where}: input_ids`)),
    target_ids: bytes(row.target_ids),
    topk_ids: compact?.ids ?? bytes(idWords(row.topk_ids, layout, `${where}: topk_ids`)),
    topk_logits: compact?.codes ?? bytes(layout.valueDtype === 'float16' ? encodeHalf(row.topk_logits) : row.topk_logits),
    log_z: bytes(row.log_z),
  };
}

/** A fresh, 4-byte-aligned copy of a blob's bytes (decoded pages may be unaligned views). */
function ownedBuffer(b: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return copy.buffer;
}

/** How one layout turns a blob into values; the results never alias the blob. */
interface BlobDecoder {
  /** 2-byte values (fp16 bits). */
  w2: (b: Uint8Array) => Uint16Array;
  /** uint16 ids, widened. */
  ids16: (b: Uint8Array) => Uint32Array;
  /** 4-byte values, as a fresh buffer to view as Uint32/Int32/Float32. */
  w4: (b: Uint8Array) => ArrayBufferLike;
}

/** Byte-stream split blobs (layouts `packed-le-split` and `compact`, whose other columns are split). */
const SPLIT: BlobDecoder = {
  w2: (b) => joinBytes16(b, new Uint16Array(b.byteLength >>> 1)),
  ids16: (b) => joinBytes16(b, new Uint32Array(b.byteLength >>> 1)),
  w4: (b) => joinBytes32(b).buffer,
};

/** Layouts of byte blobs (`lists` has typed columns instead: lists-read.ts). */
const DECODE: Partial<Record<LayoutName, BlobDecoder>> = {
  'packed-le': {
    w2: (b) => new Uint16Array(ownedBuffer(b)),
    ids16: (b) => Uint32Array.from(new Uint16Array(ownedBuffer(b))),
    w4: ownedBuffer,
  },
  'packed-le-split': SPLIT,
  compact: SPLIT,
};

/**
 * Unpacks one stored row of the given byte layout (`layout.layout`, default
 * {@link SHARD_LAYOUT}). `raw` is a decoded Parquet row (sample_id bigint, blobs
 * Uint8Array). Throws `"<where>: <column> has N bytes, expected M"` when a blob's size does
 * not match the layout (a shard from another dataset, or corruption).
 */
export function unpackRow(raw: Record<string, unknown>, layout: ShardLayout, where: string): LogitRow {
  if (typeof raw.sample_id !== 'bigint') throw new Error(`${where}: sample_id is not INT64`);
  const idBytes = layout.idDtype === 'uint16' ? 2 : 4;
  const valBytes = layout.valueDtype === 'float16' ? 2 : 4;
  const want = lengths(layout);
  const compact = layout.layout === 'compact';
  const size = { input_ids: idBytes, target_ids: 4, topk_ids: idBytes, topk_logits: compact ? 1 : valBytes, log_z: 4 };
  const blob = {} as Record<keyof typeof want, Uint8Array>;
  for (const col of Object.keys(want) as (keyof typeof want)[]) {
    const b = raw[col];
    const expected = want[col] * size[col];
    if (!(b instanceof Uint8Array)) throw new Error(`${where}: ${col} is not a byte array`);
    if (b.byteLength !== expected && !(compact && col === 'topk_ids')) throw new Error(`${where}: ${col} has ${b.byteLength} bytes, expected ${expected}`);
    blob[col] = b;
  }
  const d = DECODE[layout.layout ?? SHARD_LAYOUT];
  if (!d) throw new Error(`${where}: layout ${layout.layout} has no byte blobs`);
  const nHidden = hiddenValues(layout);
  let hidden: Uint16Array | undefined;
  if (nHidden > 0) {
    const b = raw.hidden;
    if (!(b instanceof Uint8Array) || b.byteLength !== 2 * nHidden) throw new Error(`${where}: hidden has ${b instanceof Uint8Array ? b.byteLength : 'no'} bytes, expected ${2 * nHidden}`);
    hidden = d.w2(b);
  }
  let byteSpans: Uint32Array | undefined;
  if (layout.spans) {
    const b = raw.byte_spans, n = spanBytes(layout);
    if (!(b instanceof Uint8Array) || b.byteLength !== n) throw new Error(`${where}: byte_spans has ${b instanceof Uint8Array ? b.byteLength : 'no'} bytes, expected ${n}`);
    byteSpans = layout.spans === 'uint16' ? d.ids16(b) : new Uint32Array(d.w4(b));
  }
  const ids = (b: Uint8Array) => (idBytes === 2 ? d.ids16(b) : new Uint32Array(d.w4(b)));
  let topk: { ids: Uint32Array; logits: Float32Array };
  if (compact) {
    const half = new Uint16Array(want.topk_logits), words = idBytes === 2 ? new Uint16Array(want.topk_ids) : new Uint32Array(want.topk_ids);
    try {
      decodeCompactSlots({ ids: blob.topk_ids, codes: blob.topk_logits }, layout.k, layout.valueStep!, words, half);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
    topk = { ids: words instanceof Uint32Array ? words : Uint32Array.from(words), logits: decodeHalf(half) };
  } else {
    topk = { ids: ids(blob.topk_ids), logits: valBytes === 2 ? decodeHalf(d.w2(blob.topk_logits)) : new Float32Array(d.w4(blob.topk_logits)) };
  }
  return {
    sample_id: raw.sample_id,
    input_ids: ids(blob.input_ids),
    target_ids: new Int32Array(d.w4(blob.target_ids)),
    topk_ids: topk.ids,
    topk_logits: topk.logits,
    log_z: new Float32Array(d.w4(blob.log_z)),
    ...(hidden ? { hidden } : {}),
    ...(byteSpans ? { byte_spans: byteSpans } : {}),
  };
}
