/**
 * LogitRow ⇄ packed little-endian column bytes (layout `packed-le`, see schema.ts).
 * Typed-array views are used directly, so the host must be little-endian (all Node targets
 * in practice: x64, arm64).
 */
import { endianness } from 'node:os';
import { decodeHalf, encodeHalf } from '../logits/fp16.js';
import type { LogitRow, ShardLayout } from './schema.js';

if (endianness() !== 'LE') throw new Error('lib/shards/packing.ts: packed-le shards need a little-endian host');

/** One row as stored: sample_id plus one byte blob per array column. */
export interface PackedRow {
  sample_id: bigint;
  input_ids: Uint8Array;
  target_ids: Uint8Array;
  topk_ids: Uint8Array;
  topk_logits: Uint8Array;
  log_z: Uint8Array;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Byte view of a typed array (no copy). */
function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Expected element counts per column for a layout. */
function lengths(layout: ShardLayout): Record<Exclude<keyof LogitRow, 'sample_id'>, number> {
  const { seqLen: L, k, numTemps: T } = layout;
  return { input_ids: L, target_ids: L, topk_ids: L * k, topk_logits: L * k, log_z: L * T };
}

/** Ids as uint16 or uint32 bytes; throws when an id does not fit uint16. */
function packIds(ids: Uint32Array, layout: ShardLayout, where: string): Uint8Array {
  if (layout.idDtype === 'uint32') return bytesOf(ids);
  const out = new Uint16Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (v > 0xffff) throw new Error(`${where}: id ${v} at index ${i} does not fit uint16 (use idDtype 'uint32')`);
    out[i] = v;
  }
  return bytesOf(out);
}

/**
 * Packs one row. Throws `"<where>: <column> has N values, expected M"` on a wrong shape,
 * a non-int64 sample_id, or an id that does not fit the layout's id dtype.
 * fp16 values are rounded to nearest even (fp16.ts).
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
  return {
    sample_id: row.sample_id,
    input_ids: packIds(row.input_ids, layout, `${where}: input_ids`),
    target_ids: bytesOf(row.target_ids),
    topk_ids: packIds(row.topk_ids, layout, `${where}: topk_ids`),
    topk_logits: layout.valueDtype === 'float16' ? bytesOf(encodeHalf(row.topk_logits)) : bytesOf(row.topk_logits),
    log_z: bytesOf(row.log_z),
  };
}

/** A fresh, 4-byte-aligned copy of a blob's bytes (decoded pages may be unaligned views). */
function ownedBuffer(b: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return copy.buffer;
}

/**
 * Unpacks one stored row. `raw` is a decoded Parquet row (sample_id bigint, blobs
 * Uint8Array). Throws `"<where>: <column> has N bytes, expected M"` when a blob's size does
 * not match the layout (a shard from another dataset, or corruption).
 */
export function unpackRow(raw: Record<string, unknown>, layout: ShardLayout, where: string): LogitRow {
  if (typeof raw.sample_id !== 'bigint') throw new Error(`${where}: sample_id is not INT64`);
  const idBytes = layout.idDtype === 'uint16' ? 2 : 4;
  const valBytes = layout.valueDtype === 'float16' ? 2 : 4;
  const want = lengths(layout);
  const size = { input_ids: idBytes, target_ids: 4, topk_ids: idBytes, topk_logits: valBytes, log_z: 4 };
  const buf = {} as Record<keyof typeof want, ArrayBuffer>;
  for (const col of Object.keys(want) as (keyof typeof want)[]) {
    const b = raw[col];
    const expected = want[col] * size[col];
    if (!(b instanceof Uint8Array)) throw new Error(`${where}: ${col} is not a byte array`);
    if (b.byteLength !== expected) throw new Error(`${where}: ${col} has ${b.byteLength} bytes, expected ${expected}`);
    buf[col] = ownedBuffer(b);
  }
  const ids = (ab: ArrayBuffer) => (idBytes === 2 ? Uint32Array.from(new Uint16Array(ab)) : new Uint32Array(ab));
  return {
    sample_id: raw.sample_id,
    input_ids: ids(buf.input_ids),
    target_ids: new Int32Array(buf.target_ids),
    topk_ids: ids(buf.topk_ids),
    topk_logits: valBytes === 2 ? decodeHalf(new Uint16Array(buf.topk_logits)) : new Float32Array(buf.topk_logits),
    log_z: new Float32Array(buf.log_z),
  };
}
