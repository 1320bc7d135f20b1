/**
 * Row type and on-disk layout of a logit shard (DESIGN §3.2).
 *
 * One Parquet row = one window of L = seq_len positions. Columns, all REQUIRED:
 *
 * | column        | Parquet type | content (little-endian values, byte-split, no header)      |
 * | ------------- | ------------ | ---------------------------------------------------------- |
 * | `sample_id`   | INT64        | window id, exact (bigint)                                  |
 * | `input_ids`   | BYTE_ARRAY   | [L] ids, uint16 or uint32 (manifest `encoding.ids`)        |
 * | `target_ids`  | BYTE_ARRAY   | [L] int32, -100 = position without a target                |
 * | `topk_ids`    | BYTE_ARRAY   | [L*k] ids row-major, uint16 or uint32                      |
 * | `topk_logits` | BYTE_ARRAY   | [L*k] z_i - max z, fp16 bits or fp32 (`encoding.values`)   |
 * | `log_z`       | BYTE_ARRAY   | [L*T] fp32, logsumexp(z/τ) - max(z)/τ per stored τ         |
 * | `hidden`      | BYTE_ARRAY   | optional: [L*n*w] fp16 bits, teacher hidden states [L, n, w] |
 * | `byte_spans`  | BYTE_ARRAY   | optional: [L*2] start, end of each input token in the train split's text, UTF-8 bytes, uint16 or uint32 |
 *
 * `hidden` exists only in datasets precomputed with `--hidden-layers` (manifest `hidden`: the n
 * layers in HF output_hidden_states indices, width w, dtype float16 and the fixed projection
 * when `--hidden-dim` was given); shards without it stay valid and are read as before.
 * `byte_spans` exists only in datasets precomputed with `--spans` (manifest `spans`: unit, dtype,
 * the tokenizer.json beside the manifest, EOS/BOS ids, the text covered), for cross-tokenizer
 * distillation (lib/tokenizer/align.ts defines the offsets: bytes from the train split's first
 * token, special tokens empty); it comes after `hidden` when both are present.
 *
 * Byte layout `packed-le-split` (manifest `encoding.layout`): a blob of n values of w bytes
 * (w = 2 for uint16 ids and fp16, 4 for int32, uint32 and fp32) stores byte 0 of every value,
 * then byte 1 of every value, …, byte w−1 — Parquet's BYTE_STREAM_SPLIT, done inside the blob
 * so that every Parquet reader still sees a plain BYTE_ARRAY. Shards written before it have
 * layout `packed-le` (each value's bytes in order) and are still read; the reader decodes by
 * the layout the shard records. The file's key-value metadata holds `kd.shard` = JSON of
 * {@link ShardKv} (shapes, dtypes, layout), so a shard from another dataset is recognised
 * before any row is decoded. Compression: BROTLI quality 1 (shards written before it: GZIP
 * level 1, `packed-le` shards GZIP level 6; Parquet records the codec per column chunk, and the
 * reader takes all of them).
 *
 * Layout `compact` (`kd precompute --layout compact`, lossy): `input_ids`, `target_ids` and `log_z`
 * as in `packed-le-split`; `topk_ids` holds, per position, the k slot ids in ascending id order as
 * unsigned LEB128 varints of the gaps (the first gap is the smallest id; a repeated draw of a
 * sampled dataset is a gap of 0); `topk_logits` holds [L·k] bytes, the code c = min(255,
 * round(−v/δ)) of each slot's v = z − max z in the same id order, δ = 2^-m the manifest's
 * `encoding.value_step` (also `value_step` in `kd.shard`). Readers decode v = −c·δ (exact in fp16)
 * and restore kd's slot order: ascending code, ties by ascending id. What that costs is recorded
 * per shard as manifest `kl_error` (lib/logits/codec-error.ts); sizes and errors in
 * lib/shards/compact.ts and README "Compact soft labels".
 *
 * Why packed bytes and not Parquet LIST columns — measured on the 2-core dev machine while
 * other jobs ran (lowest of 3 runs, each best-of-7 or mean-of-3, so trust ratios more than
 * absolutes): 256 rows × L=128 × k=32 × 7 temps, vocab 32000 (uint16 ids), synthetic data
 * (Zipf ids, random-walk fp16 logits, log_z computed from them); raw payload 5,308,416 bytes.
 *
 * | library, layout, codec                       | write ms | read ms | file bytes |
 * | -------------------------------------------- | -------: | ------: | ---------: |
 * | hyparquet-writer, packed, UNCOMPRESSED       |       17 |       4 |  5,316,352 |
 * | hyparquet-writer, packed, SNAPPY             |       89 |       9 |  5,219,676 |
 * | hyparquet-writer, packed, GZIP-6 (zlib)      |      161 |      63 |  4,245,096 | ← chosen first
 * | hyparquet-writer, packed, GZIP-1 (zlib)      |      148 |      60 |  4,281,673 |
 * | hyparquet-writer, packed, BROTLI-4 (zlib)    |      140 |     159 |  4,163,772 |
 * | hyparquet-writer, LIST, SNAPPY               |      637 |     204 |  4,938,267 |
 * | parquet-wasm + arrow, LIST, SNAPPY           |      160 |      47 |  5,806,086 |
 * | parquet-wasm + arrow, LIST, ZSTD             |      208 |      77 |  5,063,466 |
 * | parquet-wasm + arrow, LIST, ZSTD, no dict    |      173 |      86 |  4,627,178 |
 * | parquet-wasm + arrow, LIST, ZSTD, BYTE_STREAM_SPLIT | 133 |  69 |  3,601,462 | (DuckDB 1.5 can't read)
 * | parquet-wasm + arrow, packed, SNAPPY         |       14 |       9 |  5,274,583 |
 * | parquet-wasm + arrow, packed, ZSTD           |       59 |      32 |  4,232,806 |
 * | parquetjs-lite, packed, SNAPPY / GZIP        |  317/344 |   30/31 | 5,532,938 / 4,535,405 |
 * | DuckDB appender + COPY, packed, ZSTD         |       55 |      22 |  4,195,422 |
 * | kd writeShard / readShard (this code), GZIP  |      195 |      64 |  4,236,789 |
 *
 * The last row is end to end: fp16 encoding, validation, fsync, decode to LogitRow.
 * (All writers were byte-deterministic across repeated writes.)
 *
 * Byte-split blobs and codecs, measured later by `npx tsx scripts/shard-layouts.ts runs/logits`
 * (same shapes; the synthetic generator rewritten, so its old-path bytes differ slightly from
 * the row above; 3 interleaved passes of best-of-7, while another benchmark shared the machine),
 * kd writeShard / readShard end to end. "CPU µs/pos": the writer's CPU time per position, the
 * lowest process CPU time (user + system, all threads; process.cpuUsage) of the 21 writeShard
 * calls per variant, which includes packing, Parquet encoding, compression, sha256 and fsync:
 *
 * | layout, codec                          | write ms | CPU µs/pos | read ms | file bytes | B/pos | real B/pos | real CPU µs/pos |
 * | -------------------------------------- | -------: | ---------: | ------: | ---------: | ----: | ---------: | --------------: |
 * | packed-le, GZIP-6 (until the split)    |      197 |       6.07 |      94 |  4,267,672 | 130.2 |      117.3 |            6.06 |
 * | packed-le, GZIP-1                      |      171 |       5.07 |      95 |  4,307,450 | 131.5 |      119.3 |            4.63 |
 * | packed-le-split, GZIP-1 (until BROTLI) |      160 |       4.38 |     106 |  3,930,150 | 119.9 |      109.3 |            4.51 |
 * | packed-le-split, GZIP-6                |      321 |       9.33 |     123 |  3,772,251 | 115.1 |      103.4 |            8.57 |
 * | packed-le-split, BROTLI-1              |       83 |       2.34 |     135 |  3,864,328 | 117.9 |      108.1 |            2.57 | ← chosen
 * | packed-le-split, BROTLI-2              |       97 |       2.85 |      98 |  3,773,895 | 115.2 |      104.1 |            3.21 |
 *
 * "real": the first 256 windows of a `kd precompute` shard of the default teacher (V = 4096),
 * decoded and written again per variant; there writing took 216 / 168 / 156 / 305 / 75 / 95 ms
 * and reading 54–78 ms (GZIP-1 split 54, BROTLI-1 73, BROTLI-2 78). Read times are noisy
 * here: BROTLI-1 and -2 share a decoder yet took 135 vs 98 ms on the synthetic rows, and the
 * GZIP rows read in 82–85 ms in this script's previous run (94–123 here); taken together,
 * BROTLI reads no faster than GZIP, perhaps somewhat slower. The GZIP rows' file bytes equal
 * the previous run's (writeShard is byte-deterministic), its write times were within 12%.
 *
 * Packed bytes beat LIST columns on write time, read time and size wherever DuckDB can read
 * the result (LIST stores uint16 as INT32 plus repetition levels). Among packed writers:
 * parquetjs-lite rounds INT64 through parseInt (2^53+1 is lost) and is slowest; DuckDB's
 * writer cuts row groups only at multiples of 2048 rows, so a 64 MiB cap cannot hold for
 * long windows; parquet-wasm + ZSTD is ~2x faster than GZIP at the same size but brings
 * ~23 MB of wasm + arrow and ~0.4 s import. hyparquet(-writer) is pure JS (~1 MB), exact
 * on INT64, exact row-group control, byte-deterministic. Of the codecs Node 20's zlib can
 * write, GZIP and BROTLI shrink the fp16/fp32 payloads (packed: ~20%, byte-split: 27–33%;
 * SNAPPY ~2%). Write/read cost is far below a teacher forward / student step over the same
 * tokens. DuckDB decodes the bytes with the macros in `lib/shards/sql.ts`.
 *
 * Why BROTLI-1 and not GZIP-1 (the default until then): precompute's writer thread shares the
 * 2 cores with the teacher's ONNX Runtime threads, so what precompute pays for a shard is the
 * writer's CPU time, not its wall time. On the byte-split rows BROTLI quality 1 is as small as
 * GZIP-1 (real 108.1 vs 109.3 B/pos) for 0.57× its CPU (2.57 vs 4.51 µs/pos end to end, table
 * above; the measurement behind the switch, writeShard on 128 real windows, gave 2.5 vs 7.4).
 * The next steps cost more CPU than they save bytes: against BROTLI-1, BROTLI-2 is 4% smaller
 * (104.1) for 25% more CPU, GZIP-6 4% smaller (103.4) for 3.3× the CPU. Quality 2 stays
 * selectable (WriteShardMeta `brotliQuality`).
 *
 * What BROTLI costs. Readers: DuckDB (tested through the macros), pyarrow and so HF datasets,
 * polars, and kd's reader (node:zlib) read BROTLI pages; Spark does not out of the box —
 * parquet-java loads `org.apache.hadoop.io.compress.BrotliCodec`, which neither Hadoop nor Spark
 * ships, so Spark needs an extra brotli codec jar on its classpath (without it: "Class
 * org.apache.hadoop.io.compress.BrotliCodec was not found"). Damage detection: Parquet's page
 * header has an optional CRC32 of the page, but hyparquet-writer does not write it (and
 * hyparquet does not check it), so kd shards have never had Parquet page CRCs, with either
 * codec. What GZIP had was its own trailer (CRC32 and length of the uncompressed page), which
 * zlib checks on gunzip, so a damaged GZIP page failed to decode in kd's reader. A Brotli
 * stream has no checksum: a damaged page fails only when the stream turns invalid or decodes
 * to another length than the page header says. On a 64-row shard of the test shapes, kd's
 * reader decoded 248 of 300 single-bit flips to wrong values without an error (GZIP-1: 0 of
 * 300). kd itself depends on neither: training and `kd inspect` (openLogitDataset /
 * readListedShard) check each shard's sha256 against the manifest before decoding it, resume
 * and merge (verifyShard) before reusing it. Another reader given a damaged BROTLI shard gets
 * wrong values silently, so compare the files' sha256 with manifest.json after copying them.
 * GZIP stays available: WriteShardMeta `codec: 'GZIP'` with `gzipLevel` (default 1); `kd
 * precompute` has no option for it.
 *
 * Why byte-split (measured with GZIP, the codec then): the high bytes of fp16 logits (sign,
 * exponent) and of fp32 log_z vary slowly, and stored together they compress far better than
 * interleaved with the noisy low bytes, so split + GZIP-1 is 7–8% smaller than plain + GZIP-6
 * and 19–28% faster to write (packRow's split adds ~0.25 µs per position; deflate at level 1
 * on the split planes saves more); reading costs about the same. Split + GZIP-6 saves another
 * 4–5% but takes ~2× the write time. Splitting each column over all rows at once would give
 * ~102 real B/pos, but a blob holds one row (decoded row by row, also by the DuckDB macros),
 * and zlib's Huffman blocks then mix a row's high- and low-byte planes. Per column (each
 * column's blobs gzipped at level 1, real shard): fp16 logits 52.0 → 43.6 B/pos and log_z
 * 24.0 → 19.8 gain from the split, uint16 ids with V = 4096 do not (40.3 → 42.8).
 *
 * Layout `lists` (`kd precompute --layout lists`, `kd convert`; lib/shards/lists.ts): the same
 * columns as typed Parquet lists — `input_ids` list<UINT_16|UINT_32>, `target_ids` list<INT32>,
 * `topk_ids` list<list<UINT_16|UINT_32>> [L][k], `topk_logits` list<list<FLOAT16|FLOAT>> [L][k],
 * `log_z` list<list<FLOAT>> [L][T], `hidden` list<list<FLOAT16>> [L][n·w] — so DuckDB (tested),
 * pyarrow and HF `datasets` read them with no macros. Measured by `npx tsx
 * scripts/archive-layouts.ts runs/techniques/logits` on the whole demo dataset (3 shards × 1024
 * windows, L = 128, k = 32, T = 3, V = 4096; BROTLI-1; lowest of 3 writes per shard, on the
 * 2-core machine while other jobs ran):
 *
 * | layout                            | bytes/pos | writer CPU µs/pos | readShard ms/shard | readShardBlock ms/shard |
 * | --------------------------------- | --------: | ----------------: | -----------------: | ----------------------: |
 * | packed-le-split (default)         |      96.6 |              2.38 |                313 |                     236 |
 * | lists, nested [L][k] (`lists`)    |     113.4 |              2.55 |                488 |                     332 |
 * | lists, flat [L·k]                 |     113.4 |              2.34 |                  – |                       – |
 * | lists via hyparquet-writer's row API, nested / flat (256 windows, encoding only) | 124.6 / 114.0 | 80.9 / 63.1 | | |
 *
 * Nested, not flat: the same bytes (the repetition levels of [L][k] lists are one short run
 * pattern per position, compressed with the page) for 9% more writer CPU, and in SQL
 * `topk_logits[t][j]`, `unnest(topk_logits)` = one row per position, in HF `datasets` a
 * Sequence(Sequence(float16)) per window, where flat lists need `t*k + j` arithmetic. Where the
 * 17% more bytes go (B/pos, packed → lists): topk_ids 41.8 → 47.4 (uint16 as INT32 words, not
 * byte-split), topk_logits 42.1 → 53.7 (FLOAT16 cannot be BYTE_STREAM_SPLIT for DuckDB 1.5),
 * log_z 9.6 → 9.3 (BYTE_STREAM_SPLIT over a page; PLAIN would be 1.1 B/pos larger and slower).
 * Storing the fp16 logits as FLOAT with BYTE_STREAM_SPLIT would give 108.8 B/pos for 2.92 CPU-µs
 * (+30%) and float32 arrays in pyarrow, so FLOAT16 it is. hyparquet-writer's own row API
 * (its Dremel encoder walks every value as a JS object) costs 25–35× the CPU of kd's page
 * writer, hence lists.ts writes the pages itself. DuckDB on the same dataset, mean p(top-1) at
 * τ = 1 over every position: 0.45 s in plain SQL on `lists` shards, 12.8 s through the macros of
 * lib/shards/sql.ts on packed ones. Packed stays the default: 15% smaller and faster for kd to
 * read; `lists` is for archives and other tools.
 */

import { checkValueStep } from './compact.js';

/** Token-id width on disk: uint16 when every id fits (real vocab ≤ 65536, ids 0..65535), else uint32. */
export type IdDtype = 'uint16' | 'uint32';
/** `topk_logits` width on disk: IEEE fp16 bits (default) or fp32. */
export type ValueDtype = 'float16' | 'float32';
/**
 * Byte layouts of the blob columns, recorded as manifest `encoding.layout` and in each shard's
 * `kd.shard` metadata: `packed-le` = the values' little-endian bytes in order (shards written
 * before the split layout; still read), `packed-le-split` = the same bytes byte-stream split,
 * `compact` = `packed-le-split` except `topk_ids`/`topk_logits`, which hold the lossy compact
 * codec of lib/shards/compact.ts (varint id gaps, 8-bit value codes of step `valueStep`);
 * `lists` = typed Parquet LIST columns instead of blobs (lib/shards/lists.ts).
 */
export const SHARD_LAYOUTS = ['packed-le', 'packed-le-split', 'compact', 'lists'] as const;
/** One of {@link SHARD_LAYOUTS}. */
export type LayoutName = (typeof SHARD_LAYOUTS)[number];
/** The layout of newly written shards. */
export const SHARD_LAYOUT: LayoutName = 'packed-le-split';
/** Key of the shard's Parquet key-value metadata entry holding {@link ShardKv}. */
export const SHARD_KV_KEY = 'kd.shard';
/** Target id of a position without a target (ignore index). */
export const IGNORE_INDEX = -100;

/** One window of L positions with the teacher's top-k signal (see the table above). */
export interface LogitRow {
  /** Window id, exact INT64. */
  sample_id: bigint;
  /** [L] the window's input ids. */
  input_ids: Uint32Array;
  /** [L] next-token targets, {@link IGNORE_INDEX} = ignored position. */
  target_ids: Int32Array;
  /** [L*k] row-major, per position sorted by descending teacher logit. */
  topk_ids: Uint32Array;
  /** [L*k] z_i - max z (first of each position is 0); fp16-rounded when stored as fp16. */
  topk_logits: Float32Array;
  /** [L*T] per position, per stored τ: logsumexp(z/τ) - max(z)/τ. */
  log_z: Float32Array;
  /** [L*n*w] teacher hidden states [L, n layers, width] as fp16 bits; present iff the layout has `hidden`. */
  hidden?: Uint16Array;
  /** [L*2] start, end (exclusive) UTF-8 byte offset of each input token in the train split's text; present iff the layout has `spans`. */
  byte_spans?: Uint32Array;
}

/** Shape of the optional `hidden` column: n stored layers of `width` fp16 values per position. */
export interface HiddenLayout {
  layers: number;
  width: number;
}

/** Shapes and dtypes every row of a shard has; from the manifest (see `layoutOf`). */
export interface ShardLayout {
  /** L, positions per window. */
  seqLen: number;
  /** Stored ids per position. */
  k: number;
  /** T, number of stored temperatures. */
  numTemps: number;
  idDtype: IdDtype;
  valueDtype: ValueDtype;
  /**
   * Byte layout of the blobs (manifest `encoding.layout`). Absent: the writer writes
   * {@link SHARD_LAYOUT}, the reader accepts the layout the shard records.
   */
  layout?: LayoutName;
  /** The optional `hidden` column's shape; absent: no such column. */
  hidden?: HiddenLayout;
  /** Width of the optional `byte_spans` column's offsets; absent: no such column. */
  spans?: IdDtype;
  /** Layout `compact` only: δ of the value codes (manifest `encoding.value_step`). */
  valueStep?: number;
}

/** The `kd.shard` key-value metadata of a shard file. */
export interface ShardKv {
  format: 'kd-logits';
  version: 1;
  layout: LayoutName;
  seq_len: number;
  k: number;
  num_temps: number;
  ids: IdDtype;
  values: ValueDtype;
  /** "<layers>x<width>" when the shard has the `hidden` column (absent otherwise). */
  hidden?: string;
  /** Offset width of the `byte_spans` column when the shard has it (absent otherwise). */
  spans?: IdDtype;
  /** Layout `compact` only: δ of the value codes. */
  value_step?: number;
}

/** Column names in file order (without the optional `hidden` and `byte_spans`, which come last when present). */
export const COLUMNS = ['sample_id', 'input_ids', 'target_ids', 'topk_ids', 'topk_logits', 'log_z'] as const;

/** The columns a shard of `layout` has, in file order. */
export function columnsOf(layout: ShardLayout): string[] {
  return [...COLUMNS, ...(layout.hidden ? ['hidden'] : []), ...(layout.spans ? ['byte_spans'] : [])];
}

/** {@link ShardKv} for a layout ({@link SHARD_LAYOUT} when `layout.layout` is absent). */
export function shardKv(layout: ShardLayout): ShardKv {
  return {
    format: 'kd-logits', version: 1, layout: layout.layout ?? SHARD_LAYOUT,
    seq_len: layout.seqLen, k: layout.k, num_temps: layout.numTemps,
    ids: layout.idDtype, values: layout.valueDtype,
    ...(layout.hidden ? { hidden: `${layout.hidden.layers}x${layout.hidden.width}` } : {}),
    ...(layout.spans ? { spans: layout.spans } : {}),
    ...(layout.layout === 'compact' ? { value_step: layout.valueStep } : {}),
  };
}

/**
 * Throws `"<where>: <problem>"` unless seqLen, k, numTemps are positive integers and the
 * dtypes are known.
 */
export function checkLayout(layout: ShardLayout, where: string): void {
  for (const key of ['seqLen', 'k', 'numTemps'] as const) {
    const v = layout[key];
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${where}: ${key} must be a positive integer (got ${v})`);
  }
  if (layout.idDtype !== 'uint16' && layout.idDtype !== 'uint32') {
    throw new Error(`${where}: idDtype must be 'uint16' or 'uint32' (got '${layout.idDtype}')`);
  }
  if (layout.valueDtype !== 'float16' && layout.valueDtype !== 'float32') {
    throw new Error(`${where}: valueDtype must be 'float16' or 'float32' (got '${layout.valueDtype}')`);
  }
  const h = layout.hidden;
  if (h !== undefined && !(Number.isInteger(h.layers) && h.layers > 0 && Number.isInteger(h.width) && h.width > 0)) {
    throw new Error(`${where}: hidden layers and width must be positive integers (got ${h.layers}, ${h.width})`);
  }
  if (layout.spans !== undefined && layout.spans !== 'uint16' && layout.spans !== 'uint32') {
    throw new Error(`${where}: spans must be 'uint16' or 'uint32' (got '${layout.spans}')`);
  }
  if (layout.layout !== undefined && !SHARD_LAYOUTS.includes(layout.layout)) {
    throw new Error(`${where}: layout must be one of ${SHARD_LAYOUTS.join(', ')} (got '${layout.layout}')`);
  }
  if (layout.layout === 'compact') {
    checkValueStep(layout.valueStep, where);
    if (layout.valueDtype !== 'float16') throw new Error(`${where}: layout compact decodes values to float16 (got valueDtype '${layout.valueDtype}')`);
  } else if (layout.valueStep !== undefined) {
    throw new Error(`${where}: valueStep is for layout compact (layout is '${layout.layout ?? SHARD_LAYOUT}')`);
  }
}

/** The id dtype for a real vocab size: uint16 when every id fits in 16 bits. */
export function idDtypeFor(realVocabSize: number): IdDtype {
  return realVocabSize <= 0x10000 ? 'uint16' : 'uint32';
}

/** Uncompressed bytes of one row's payload (for row-group sizing). */
export function rowBytes(layout: ShardLayout): number {
  const id = layout.idDtype === 'uint16' ? 2 : 4;
  const val = layout.valueDtype === 'float16' ? 2 : 4;
  const { seqLen: L, k, numTemps: T } = layout;
  return 8 + L * id + L * 4 + L * k * (id + val) + L * T * 4 + hiddenValues(layout) * 2 + spanBytes(layout);
}

/** Bytes of one row's `byte_spans` blob: L·2 offsets (0 without the column). */
export function spanBytes(layout: ShardLayout): number {
  return layout.spans ? layout.seqLen * 2 * (layout.spans === 'uint16' ? 2 : 4) : 0;
}

/** fp16 values of one row's `hidden` blob: L·n·w (0 without the column). */
export function hiddenValues(layout: ShardLayout): number {
  return layout.hidden ? layout.seqLen * layout.hidden.layers * layout.hidden.width : 0;
}
