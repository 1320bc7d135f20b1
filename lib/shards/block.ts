/**
 * A shard's rows held compactly, column by column, for streaming training: ids stay uint16 when
 * stored so, fp16 logits stay fp16 bits (widened when a batch is built), one typed array per
 * column (so a whole shard moves between threads in five transfers, no copies).
 * Bytes per position: L·(id + 4) + L·k·(id + value) + L·T·4 per row; with uint16 ids, fp16
 * values, k = 32, T = 3: 2 + 4 + 128 + 12 = 146 (LogitRow: 276).
 */
import { joinBytes16 } from './packing.js';
import { hiddenValues, SHARD_LAYOUT, type LayoutName, type ShardLayout } from './schema.js';

/** The rows of one shard, column-major by column, row-major inside a column. */
export interface ShardBlock {
  rows: number;
  /** sample_id of row 0. */
  firstSampleId: bigint;
  /** [rows·L] */
  inputIds: Uint16Array | Uint32Array;
  /** [rows·L], −100 = no target */
  targets: Int32Array;
  /** [rows·L·k] */
  topkIds: Uint16Array | Uint32Array;
  /** [rows·L·k] fp16 bits (valueDtype float16) or fp32 values */
  topkLogits: Uint16Array | Float32Array;
  /** [rows·L·T] */
  logZ: Float32Array;
  /** [rows·L·n·w] teacher hidden states, fp16 bits; present iff the layout has `hidden`. */
  hidden?: Uint16Array;
  /** [rows·L·2] byte spans of the input tokens (schema.ts); present iff the layout has `spans`. */
  byteSpans?: Uint16Array | Uint32Array;
}

/** Blob columns of a shard, in file order. */
export const BLOCK_COLUMNS = ['input_ids', 'target_ids', 'topk_ids', 'topk_logits', 'log_z'] as const;
export type BlockColumn = (typeof BLOCK_COLUMNS)[number] | 'hidden' | 'byte_spans';

/** The blob columns of a shard of `layout`: {@link BLOCK_COLUMNS}, plus `hidden` and `byte_spans` when it has them. */
export function blockColumnsOf(layout: ShardLayout): BlockColumn[] {
  return [...BLOCK_COLUMNS, ...(layout.hidden ? ['hidden' as const] : []), ...(layout.spans ? ['byte_spans' as const] : [])];
}

/** Values per row and bytes per value of each blob column. */
export function columnShape(layout: ShardLayout): Record<BlockColumn, { n: number; width: 2 | 4 }> {
  const { seqLen: L, k, numTemps: T } = layout;
  const id = layout.idDtype === 'uint16' ? 2 : 4, val = layout.valueDtype === 'float16' ? 2 : 4;
  return {
    input_ids: { n: L, width: id }, target_ids: { n: L, width: 4 }, topk_ids: { n: L * k, width: id },
    topk_logits: { n: L * k, width: val }, log_z: { n: L * T, width: 4 },
    hidden: { n: hiddenValues(layout), width: 2 },
    byte_spans: { n: layout.spans ? 2 * L : 0, width: layout.spans === 'uint32' ? 4 : 2 },
  };
}

/** Bytes a block of `rows` rows holds (the buffer budget counts these). */
export function blockBytes(layout: ShardLayout, rows: number): number {
  const shape = columnShape(layout);
  return rows * blockColumnsOf(layout).reduce((n, c) => n + shape[c].n * shape[c].width, 0);
}

/** An empty block of `rows` rows for `layout`. */
export function allocBlock(layout: ShardLayout, rows: number): ShardBlock {
  const s = columnShape(layout);
  const ids = (n: number) => (layout.idDtype === 'uint16' ? new Uint16Array(n) : new Uint32Array(n));
  return {
    rows, firstSampleId: 0n,
    inputIds: ids(rows * s.input_ids.n), targets: new Int32Array(rows * s.target_ids.n), topkIds: ids(rows * s.topk_ids.n),
    topkLogits: layout.valueDtype === 'float16' ? new Uint16Array(rows * s.topk_logits.n) : new Float32Array(rows * s.topk_logits.n),
    logZ: new Float32Array(rows * s.log_z.n),
    ...(layout.hidden ? { hidden: new Uint16Array(rows * s.hidden.n) } : {}),
    ...(layout.spans ? { byteSpans: layout.spans === 'uint16' ? new Uint16Array(rows * s.byte_spans.n) : new Uint32Array(rows * s.byte_spans.n) } : {}),
  };
}

/** The typed array of a block that holds `column`. */
export function blockColumn(block: ShardBlock, column: BlockColumn): Uint16Array | Uint32Array | Int32Array | Float32Array {
  if (column === 'hidden') {
    if (!block.hidden) throw new Error('block has no hidden column');
    return block.hidden;
  }
  if (column === 'byte_spans') {
    if (!block.byteSpans) throw new Error('block has no byte_spans column');
    return block.byteSpans;
  }
  return { input_ids: block.inputIds, target_ids: block.targets, topk_ids: block.topkIds, topk_logits: block.topkLogits, log_z: block.logZ }[column];
}

/** Inverse of byte-stream split for 4-byte values, into `out` (viewed as 32-bit words). */
function joinBytes32Into(bytes: Uint8Array, out: Uint32Array): void {
  const n = out.length;
  for (let i = 0, n2 = 2 * n, n3 = 3 * n; i < n; i++) {
    out[i] = (bytes[i] | (bytes[n + i] << 8) | (bytes[n2 + i] << 16) | (bytes[n3 + i] << 24)) >>> 0;
  }
}

/**
 * Decodes one stored blob (one row of `column`) into `dest` (n values of `width` bytes), by the
 * shard's byte layout. The caller checks the blob's length.
 */
export function decodeBlob(blob: Uint8Array, dest: Uint16Array | Uint32Array | Int32Array | Float32Array, width: 2 | 4, layout: LayoutName = SHARD_LAYOUT): void {
  if (layout === 'packed-le') {
    new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength).set(blob);
  } else if (width === 2) {
    joinBytes16(blob, dest as Uint16Array);
  } else {
    joinBytes32Into(blob, new Uint32Array(dest.buffer, dest.byteOffset, dest.length));
  }
}

/** The ArrayBuffers of a block, for a postMessage transfer list. */
export function blockBuffers(block: ShardBlock): ArrayBuffer[] {
  const columns: BlockColumn[] = [...BLOCK_COLUMNS, ...(block.hidden ? ['hidden' as const] : []), ...(block.byteSpans ? ['byte_spans' as const] : [])];
  return [...new Set(columns.map((c) => blockColumn(block, c).buffer as ArrayBuffer))];
}
