#!/usr/bin/env -S npx tsx
/**
 * Why the compact codec stores ids in id order (lib/shards/compact.ts): bytes per position of the
 * `topk_ids` and `topk_logits` columns under candidate encodings, each column's blobs of the first
 * ROWS rows of a dataset's first shard BROTLI-1 compressed together (as a Parquet page holds them).
 *
 *   npx tsx scripts/topk-codecs.ts [dataset dir = runs/logits]
 *
 * Id encodings: rank order (kd's slot order) as byte-split uint16, plain uint16, bit-packed to
 * ⌈log2 V⌉ bits; id order as varint gaps. Value encodings: fp16 byte-split; 8-bit codes of step δ
 * in rank order (absolute, or as deltas, which are ≥ 0 there) and in id order (what compact uses).
 */
import { brotliCompressSync, constants } from 'node:zlib';
import { join } from 'node:path';
import { encodeHalf } from '../lib/logits/fp16.js';
import { splitBytes } from '../lib/shards/packing.js';
import { layoutOf, readManifest, readShard, type LogitRow } from '../lib/shards/index.js';

const dir = process.argv[2] ?? 'runs/logits', ROWS = 512;
const m = await readManifest(dir);
const layout = layoutOf(m), { k, seqLen: L } = layout;
const rows = (await readShard(join(dir, m.shards[0].file), layout)).slice(0, ROWS);
const positions = rows.length * L, bits = Math.ceil(Math.log2(m.tokenizer.real_vocab_size));

/** BROTLI-1 bytes per position of one column's blobs (4-byte length prefixes, as a page has). */
function perPosition(blobs: Uint8Array[]): number {
  const total = blobs.reduce((s, b) => s + b.length + 4, 0), all = new Uint8Array(total);
  let at = 0;
  for (const b of blobs) { all.set(b, at + 4); at += b.length + 4; }
  return brotliCompressSync(all, { params: { [constants.BROTLI_PARAM_QUALITY]: 1 } }).length / positions;
}

/** Per position, slot indices in ascending id order. */
const idOrder = (r: LogitRow, t: number) => Array.from({ length: k }, (_, j) => t * k + j).sort((a, b) => r.topk_ids[a] - r.topk_ids[b] || a - b);
const code = (v: number, step: number) => Math.min(255, Math.round(-v / step));
const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function bitPacked(r: LogitRow): Uint8Array {
  const out = new Uint8Array(Math.ceil((r.topk_ids.length * bits) / 8));
  let bit = 0;
  for (const id of r.topk_ids) for (let b = 0; b < bits; b++, bit++) if ((id >>> b) & 1) out[bit >> 3] |= 1 << (bit & 7);
  return out;
}
function varintGaps(r: LogitRow): Uint8Array {
  const out: number[] = [];
  for (let t = 0; t < L; t++) {
    let prev = 0;
    for (const s of idOrder(r, t)) {
      let gap = r.topk_ids[s] - prev;
      prev = r.topk_ids[s];
      while (gap >= 0x80) { out.push((gap & 0x7f) | 0x80); gap >>>= 7; }
      out.push(gap);
    }
  }
  return Uint8Array.from(out);
}
function codes(r: LogitRow, step: number, order: 'rank' | 'rank-delta' | 'id'): Uint8Array {
  const out = new Uint8Array(L * k);
  for (let t = 0; t < L; t++) {
    const slots = order === 'id' ? idOrder(r, t) : Array.from({ length: k }, (_, j) => t * k + j);
    let prev = 0;
    slots.forEach((s, j) => {
      const c = code(r.topk_logits[s], step);
      out[t * k + j] = order === 'rank-delta' ? c - prev : c;
      prev = c;
    });
  }
  return out;
}

const lines = [
  `${dir}: first ${rows.length} rows × ${L} positions, k = ${k}, V = ${m.tokenizer.real_vocab_size}; BROTLI-1 bytes per position`, '',
  '| column | encoding | bytes/position |', '|---|---|---:|',
  `| topk_ids | rank order, uint16 byte-split (packed) | ${perPosition(rows.map((r) => splitBytes(Uint16Array.from(r.topk_ids)))).toFixed(1)} |`,
  `| topk_ids | rank order, uint16 plain | ${perPosition(rows.map((r) => u8(Uint16Array.from(r.topk_ids)))).toFixed(1)} |`,
  `| topk_ids | rank order, bit-packed to ${bits} bits | ${perPosition(rows.map(bitPacked)).toFixed(1)} |`,
  `| topk_ids | id order, varint gaps (compact) | ${perPosition(rows.map(varintGaps)).toFixed(1)} |`,
  `| topk_logits | fp16 byte-split (packed) | ${perPosition(rows.map((r) => splitBytes(encodeHalf(r.topk_logits)))).toFixed(1)} |`,
];
for (const step of [1 / 8, 1 / 16, 1 / 32]) {
  for (const order of ['rank', 'rank-delta', 'id'] as const) {
    lines.push(`| topk_logits | 8-bit codes δ = 1/${1 / step}, ${order === 'id' ? 'id order (compact)' : order === 'rank' ? 'rank order' : 'rank order, deltas'} | ${perPosition(rows.map((r) => codes(r, step, order))).toFixed(1)} |`);
  }
}
console.log(lines.join('\n'));
