/**
 * `kd convert`: rewrites every shard of a logit dataset in another layout (schema.ts
 * SHARD_LAYOUTS), e.g. `packed-le-split` → `lists` for readers without kd's SQL macros, and back.
 * Each source shard is checked against its manifest entry (size, sha256, rows, first sample id)
 * before it is decoded; each converted shard is read back and must decode to exactly the source
 * rows (to `compact`, lossy: exactly what the codec makes of them, its KL error against the source's
 * values recorded per shard as `kl_error`). The new manifest.json keeps the source's identity (teacher, tokenizer, windows, shapes,
 * plan), lists the new shards and records `converted_from` (source directory, layout, sha256 of
 * its manifest.json); it is written last, so a stopped conversion never looks complete.
 */
import { mkdirSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { copyFileDurable } from '../util/fs.js';
import { acquireLock, commandLine } from '../util/lock.js';
import { decodeHalf } from '../logits/fp16.js';
import { TMP_SUFFIX } from './atomic.js';
import { decodeCompactSlots, DEFAULT_VALUE_STEP, encodeCompactSlots } from './compact.js';
import { readListedShard } from './dataset.js';
import { MANIFEST_FILE, SPAN_TOKENIZER_FILE, WORKER_MANIFEST_RE, layoutOf, readManifest, sha256File, writeManifest, type LogitManifest, type ShardEntry } from './manifest.js';
import { readShard } from './reader.js';
import type { LayoutName, LogitRow } from './schema.js';
import { writeShard, type WriteShardMeta } from './writer.js';

/** Options of {@link convertDataset}. */
export interface ConvertOptions {
  /** Replace a logit dataset already in `out` (its manifests and shard files; nothing else). */
  overwrite?: boolean;
  /** `tool_version` of the new manifest. */
  toolVersion: string;
  /** Called after each shard with the windows converted so far. */
  onRows?: (done: number) => void;
  /** Layout `compact`: δ of the value codes (default DEFAULT_VALUE_STEP). */
  valueStep?: number;
}

/** What {@link convertDataset} wrote. */
export interface ConvertResult {
  source: LogitManifest;
  manifest: LogitManifest;
  /** Process CPU seconds (user + system, all threads) spent in writeShard: encoding, compression, sha256, fsync. */
  writeCpuSeconds: number;
}

/** The files of a logit dataset that kd writes (manifests and shards, also half-written ones). */
const DATASET_FILE = (f: string) => {
  const name = f.endsWith(TMP_SUFFIX) ? f.slice(0, -TMP_SUFFIX.length) : f;
  return name === MANIFEST_FILE || WORKER_MANIFEST_RE.test(name) || /^shard-\d{5,}\.parquet$/.test(name);
};

/**
 * Refuses an `out` holding a logit dataset unless `overwrite`, then deletes that dataset's files
 * (only those: anything else in `out` stays).
 * @throws Error "<out>: holds a logit dataset already (manifest.json, 3 shard file(s)); --overwrite replaces it".
 */
function clearOutput(out: string, overwrite: boolean): void {
  const files = readdirSync(out).filter(DATASET_FILE);
  for (const f of files.filter((x) => x.endsWith(TMP_SUFFIX))) rmSync(join(out, f), { force: true }); // never complete
  const held = files.filter((x) => !x.endsWith(TMP_SUFFIX));
  if (held.length === 0) return;
  if (!overwrite) throw new Error(`${out}: holds a logit dataset already (${held.slice(0, 3).join(', ')}${held.length > 3 ? ', …' : ''}); --overwrite replaces it`);
  for (const f of held) rmSync(join(out, f), { force: true });
}

/** The first difference between two rows' values, bit for bit, as "row 3 topk_logits", or null. */
export function rowDifference(a: readonly LogitRow[], b: readonly LogitRow[]): string | null {
  if (a.length !== b.length) return `${b.length} rows, expected ${a.length}`;
  const bytes = (v: ArrayBufferView | undefined) => (v ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.alloc(0));
  for (let r = 0; r < a.length; r++) {
    if (a[r].sample_id !== b[r].sample_id) return `row ${r} sample_id`;
    for (const col of ['input_ids', 'target_ids', 'topk_ids', 'topk_logits', 'log_z', 'hidden', 'byte_spans'] as const) {
      if (!bytes(a[r][col]).equals(bytes(b[r][col]))) return `row ${r} ${col}`;
    }
  }
  return null;
}

/** What the compact codec makes of a row: the slots encoded and decoded (kd's slot order). */
function compactRow(r: LogitRow, meta: WriteShardMeta): LogitRow {
  const enc = encodeCompactSlots(r.topk_ids, r.topk_logits, meta.k, meta.valueStep!);
  const ids = meta.idDtype === 'uint16' ? new Uint16Array(r.topk_ids.length) : new Uint32Array(r.topk_ids.length), half = new Uint16Array(r.topk_ids.length);
  decodeCompactSlots(enc, meta.k, meta.valueStep!, ids, half);
  return { ...r, topk_ids: Uint32Array.from(ids), topk_logits: decodeHalf(half) };
}

/** Whether two paths name one directory, through symlinks too (a missing `b` is another place). */
function samePlace(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/**
 * Converts the logit dataset in `inDir` to `layout` into `out` (same shard file names, rows and
 * codec as the source). Writing is byte-deterministic, so converting back reproduces the
 * source's shard bytes when they were written with kd's default codec settings.
 * @throws Error (one line, naming the file) for a missing or invalid source manifest, a source
 *   already in `layout`, `out` = `inDir`, an `out` holding a dataset (without `overwrite`) or in
 *   use, a source shard that does not match its manifest entry, or converted rows that differ.
 */
export async function convertDataset(inDir: string, out: string, layout: LayoutName, opts: ConvertOptions): Promise<ConvertResult> {
  if (samePlace(inDir, out)) throw new Error(`${out}: is the dataset being converted; write to another directory`);
  const source = await readManifest(inDir);
  const sourcePath = join(inDir, MANIFEST_FILE);
  if (source.encoding.layout === layout) throw new Error(`${sourcePath}: already in layout ${layout}; nothing to convert`);
  if (source.spans && layout === 'lists') throw new Error(`${sourcePath}: the dataset stores byte spans, which layout lists does not hold; convert to packed-le-split or compact`);
  const manifestSha = await sha256File(sourcePath);
  mkdirSync(out, { recursive: true });
  // The lock of a single-worker `kd precompute`: one dataset writer per directory.
  const lock = acquireLock(out, commandLine('kd convert'), { name: '.kd.precompute-00000.lock' });
  try {
    clearOutput(out, opts.overwrite ?? false);
    const from = layoutOf(source), { valueStep: _step, ...shapes } = from; // a compact source's values are exact in fp16
    const compact = layout === 'compact' ? { valueStep: opts.valueStep ?? DEFAULT_VALUE_STEP, errorTemperature: source.temperatures[0] } : {};
    const meta: WriteShardMeta = { ...shapes, layout, codec: source.encoding.codec ?? 'BROTLI', ...compact };
    const shards: ShardEntry[] = [];
    let done = 0, cpu = 0;
    for (const entry of source.shards) {
      const rows = await readListedShard({ entry, path: join(inDir, entry.file) }, from);
      const path = join(out, entry.file), c0 = process.cpuUsage();
      const written = await writeShard(path, rows, meta);
      const c = process.cpuUsage(c0);
      cpu += (c.user + c.system) / 1e6;
      const expected = layout === 'compact' ? rows.map((r) => compactRow(r, meta)) : rows;
      const diff = rowDifference(expected, await readShard(path, meta, { sha256: written.sha256 }));
      if (diff !== null) {
        rmSync(path, { force: true });
        throw new Error(`${path}: converted rows differ from ${join(inDir, entry.file)} (${diff})`);
      }
      const { kl_error: _kl, ...listed } = entry; // a compact source's codec error stays in its manifest (converted_from)
      const kl = written.klError && written.klError.positions > 0 ? { kl_error: { mean: written.klError.sum / written.klError.positions, max: written.klError.max } } : {};
      shards.push({ ...listed, bytes: written.bytes, sha256: written.sha256, ...kl });
      opts.onRows?.((done += rows.length));
    }
    const { complete: _c, worker: _w, ...kept } = source;
    const manifest: LogitManifest = {
      ...kept, encoding: { ids: source.encoding.ids, values: source.encoding.values, layout, codec: meta.codec, ...(meta.valueStep !== undefined ? { value_step: meta.valueStep } : {}) }, shards,
      totals: { ...source.totals, bytes: shards.reduce((n, s) => n + s.bytes, 0) },
      tool_version: opts.toolVersion, created_at: new Date().toISOString(),
      converted_from: { dir: inDir, layout: source.encoding.layout, manifest_sha256: manifestSha },
    };
    if (source.spans) copyFileDurable(join(inDir, SPAN_TOKENIZER_FILE), join(out, SPAN_TOKENIZER_FILE)); // a dataset with spans carries its tokenizer
    await writeManifest(out, manifest);
    return { source, manifest, writeCpuSeconds: cpu };
  } finally {
    lock.release();
  }
}
