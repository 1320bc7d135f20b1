/**
 * The `compact` codec of the teacher's slots (layout `compact`, schema.ts): per position, the k
 * (id, value) slots reordered by ascending id, the ids stored as LEB128 varint gaps and the values
 * v = z − max z as 8-bit codes c = min(255, round(−v/δ)) of step δ = 2^-m (manifest
 * `encoding.value_step`). Decoding restores kd's slot order: descending value, ties by ascending id.
 *
 * Why id order: the set of a position's top ids is far cheaper to store than the ids in rank
 * order. On the demo teacher's top-32 (V = 4096, BROTLI-1, `npx tsx scripts/topk-codecs.ts
 * runs/logits`): ids 15.6 B/position as id-order gaps against 41.6 as byte-split uint16, 40.9 plain
 * and 41.0 bit-packed to ⌈log2 V⌉ = 12 bits (brotli already finds what bit-packing saves); the
 * values, then unordered, cost 25.0 B as codes at δ = 1/16 against 11.8 as rank-order deltas. In
 * total 40.6 against 52.7. The rank order is the values' order, so it costs nothing to restore.
 *
 * Decoded values are multiples of δ ≥ 2^-5 with at most 8 significant bits, so they are exact
 * in fp16: a decoded shard is an ordinary fp16 dataset to everything downstream.
 */
import { toHalfBits } from '../logits/fp16.js';

/** Largest code: values below −255·δ are stored as −255·δ. */
const MAX_CODE = 255;

/** Default value step δ = 1/16 nat: mean KL error ~6e-5 at k = 32 on the demo teacher (README). */
export const DEFAULT_VALUE_STEP = 1 / 16;

/**
 * Throws `"<where>: value_step must be a power of two 2^-m, m = 0..5 (got x)"` unless δ = 2^-m
 * with 0 ≤ m ≤ 5: every decoded value is then exact in fp16, and the codes span 255·δ ≥ 8 nats
 * below the top logit (finer steps clamp too much: at δ = 1/64 the demo's top-32 KL error is
 * 1.4e-2, against 6.3e-5 at 1/16; scripts/codec-curve.ts).
 */
export function checkValueStep(step: unknown, where: string): asserts step is number {
  const m = typeof step === 'number' ? -Math.log2(step) : NaN;
  if (!(Number.isInteger(m) && m >= 0 && m <= 5)) {
    throw new Error(`${where}: value_step must be a power of two 2^-m, m = 0..5, e.g. 0.0625 (got ${JSON.stringify(step)})`);
  }
}

/** The two blobs of one row's slots in the compact codec. */
export interface CompactSlots {
  /** Σ over positions of k varint gaps (first gap = the smallest id). */
  ids: Uint8Array;
  /** [L·k] codes, in the same (id) order as `ids`. */
  codes: Uint8Array;
}

/**
 * Sets `order` to the slot indices 0..k−1 sorted ascending by key[base + j], ties by tie[j]
 * (ties by j when `tie` is null): insertion sort, stable, faster than a comparator sort for k in
 * the tens.
 */
function sortSlots(order: Int32Array, key: ArrayLike<number>, base: number, tie: Float64Array | null): void {
  for (let i = 0; i < order.length; i++) {
    const p = key[base + i], q = tie === null ? i : tie[i];
    let at = i;
    while (at > 0) {
      const prev = order[at - 1], pp = key[base + prev];
      if (pp < p || (pp === p && (tie === null ? prev : tie[prev]) <= q)) break;
      order[at] = prev;
      at--;
    }
    order[at] = i;
  }
}

/** Code of a value v = z − max z ≤ 0. */
function codeOf(v: number, step: number): number {
  const c = Math.round(-v / step);
  return c > MAX_CODE ? MAX_CODE : c < 0 ? 0 : c;
}

/**
 * Encodes one row's slots.
 * @param ids [L·k] slot ids, row-major by position
 * @param values [L·k] v = z − max z per slot (≤ 0), same order
 * @param k slots per position
 * @param step δ, a power of two (checkValueStep)
 */
export function encodeCompactSlots(ids: Uint32Array, values: Float32Array, k: number, step: number): CompactSlots {
  const L = ids.length / k;
  const codes = new Uint8Array(ids.length);
  const gaps = new Uint8Array(ids.length * 5); // a uint32 varint is at most 5 bytes
  const order = new Int32Array(k);
  let at = 0;
  for (let t = 0, base = 0; t < L; t++, base += k) {
    sortSlots(order, ids, base, null);
    let prev = 0;
    for (let j = 0; j < k; j++) {
      const slot = base + order[j];
      let gap = ids[slot] - prev;
      prev = ids[slot];
      while (gap >= 0x80) {
        gaps[at++] = (gap & 0x7f) | 0x80;
        gap >>>= 7;
      }
      gaps[at++] = gap;
      codes[base + j] = codeOf(values[slot], step);
    }
  }
  return { ids: gaps.slice(0, at), codes };
}

/** fp16 bits of −c·δ for every code c. */
function halfTable(step: number): Uint16Array {
  return Uint16Array.from({ length: MAX_CODE + 1 }, (_, c) => toHalfBits(c === 0 ? 0 : -c * step)); // +0 for the max, as stored exactly
}
const tables = new Map<number, Uint16Array>();
function halfTableOf(step: number): Uint16Array {
  let table = tables.get(step);
  if (!table) tables.set(step, (table = halfTable(step)));
  return table;
}

/**
 * Decodes one row's slots into kd's slot order (per position: ascending code, i.e. descending
 * value, ties by ascending id; equal ids stay adjacent).
 * @param blobs the row's `topk_ids` and `topk_logits` blobs
 * @param k slots per position; L = codes.length / k
 * @param step δ the shard records
 * @param outIds [L·k] ids (uint16 or uint32 words)
 * @param outHalf [L·k] fp16 bits of the decoded values
 * @throws Error "<problem>" (the caller prefixes the shard and row) when the gaps do not decode to
 *   exactly L·k ids, or an id does not fit `outIds`
 */
export function decodeCompactSlots(blobs: CompactSlots, k: number, step: number, outIds: Uint16Array | Uint32Array, outHalf: Uint16Array): void {
  const { ids: gaps, codes } = blobs;
  const n = codes.length, L = n / k, maxId = outIds instanceof Uint16Array ? 0xffff : 0xffffffff;
  const table = halfTableOf(step);
  const rowIds = new Float64Array(k), order = new Int32Array(k);
  let at = 0;
  for (let t = 0, base = 0; t < L; t++, base += k) {
    let id = 0;
    for (let j = 0; j < k; j++) {
      let gap = 0, shift = 0, b: number;
      do {
        if (at >= gaps.length) throw new Error(`topk_ids ends inside position ${t} (${gaps.length} bytes for ${n} ids)`);
        b = gaps[at++];
        gap += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80 && shift < 35);
      id += gap;
      if (id > maxId) throw new Error(`topk_ids: id ${id} at position ${t} does not fit ${maxId === 0xffff ? 'uint16' : 'uint32'}`);
      rowIds[j] = id;
    }
    sortSlots(order, codes, base, rowIds);
    for (let j = 0; j < k; j++) {
      outIds[base + j] = rowIds[order[j]];
      outHalf[base + j] = table[codes[base + order[j]]];
    }
  }
  if (at !== gaps.length) throw new Error(`topk_ids has ${gaps.length - at} bytes after the ${n} ids`);
}


/**
 * The values a row's slots decode to, in the row's own slot order: v̂ = −c·δ (for the KL error
 * of lib/logits/codec-error.ts; the slot order of a decoded row may differ among ties).
 * @param values [L·k] v = z − max z
 */
export function compactValues(values: Float32Array, step: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = -codeOf(values[i], step) * step || 0;
  return out;
}
