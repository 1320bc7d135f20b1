/**
 * A logit dataset directory opened for reading (the trainer's entry point): manifest plus
 * its shards, checked for presence and size up front, rows streamed shard by shard.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { layoutOf, readManifest, verifyShard, type LogitManifest, type ShardEntry } from './manifest.js';
import type { ShardBlock } from './block.js';
import { looksLikeParquet, readShard, readShardBlock } from './reader.js';
import type { LogitRow, ShardLayout } from './schema.js';

/** One shard of an opened dataset: its manifest entry and absolute-or-relative path. */
export interface DatasetShard {
  entry: ShardEntry;
  path: string;
}

/** An opened logit dataset. */
export interface LogitDataset {
  dir: string;
  manifest: LogitManifest;
  /** Shapes of every row (from the manifest). */
  layout: ShardLayout;
  shards: DatasetShard[];
  /** All rows of all shards in manifest order; one shard in memory at a time. */
  rows(): AsyncIterable<LogitRow>;
  /** All rows at once (small datasets, tests). */
  readAll(): Promise<LogitRow[]>;
}

/** Options of {@link openLogitDataset}. */
export interface OpenOptions {
  /** Also check every shard's sha256 (reads every byte once). Default false. */
  verify?: boolean;
}

/** Throws unless the shard file exists with the listed size. */
async function checkPresent(path: string, entry: ShardEntry): Promise<void> {
  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new Error(`${path}: is a directory, expected the shard file manifest.json lists`);
    size = st.size;
  } catch (e) {
    if ((e as Error).message.startsWith(`${path}: is a directory`)) throw e;
    throw new Error(`${path}: shard listed in manifest.json is missing`);
  }
  if (size !== entry.bytes) {
    if (size > 0 && await looksLikeParquet(path)) {
      throw new Error(`${path}: shard does not match manifest (${size} bytes, manifest says ${entry.bytes}; a complete Parquet file: a shard from another dataset?)`);
    }
    throw new Error(`${path}: truncated or corrupt shard (${size} bytes, manifest says ${entry.bytes})`);
  }
}

/**
 * Reads one listed shard and checks it against its manifest entry: present with the listed size,
 * sha256, shapes, row count and first sample id. Throws the one-line errors of
 * {@link openLogitDataset}.
 */
export async function readListedShard(shard: DatasetShard, layout: ShardLayout): Promise<LogitRow[]> {
  await checkPresent(shard.path, shard.entry);
  return readListed(shard, layout);
}

/** Reads one shard and checks its sha256, row count and first sample id against the manifest entry. */
async function readListed(shard: DatasetShard, layout: ShardLayout): Promise<LogitRow[]> {
  const rows = await readShard(shard.path, layout, { sha256: shard.entry.sha256 });
  const { entry, path } = shard;
  if (rows.length !== entry.rows) {
    throw new Error(`${path}: shard does not match manifest (rows=${rows.length} expected ${entry.rows})`);
  }
  if (rows[0].sample_id.toString() !== entry.first_sample_id) {
    throw new Error(`${path}: shard does not match manifest (first_sample_id=${rows[0].sample_id} expected ${entry.first_sample_id})`);
  }
  return rows;
}

/**
 * {@link readListedShard} into one compact {@link ShardBlock} (streaming training): the same
 * checks (size, sha256, shapes, row count, first sample id) and one-line errors.
 */
export async function readListedBlock(shard: DatasetShard, layout: ShardLayout): Promise<ShardBlock> {
  await checkPresent(shard.path, shard.entry);
  const block = await readShardBlock(shard.path, layout, { sha256: shard.entry.sha256 });
  const { entry, path } = shard;
  if (block.rows !== entry.rows) throw new Error(`${path}: shard does not match manifest (rows=${block.rows} expected ${entry.rows})`);
  if (block.firstSampleId.toString() !== entry.first_sample_id) {
    throw new Error(`${path}: shard does not match manifest (first_sample_id=${block.firstSampleId} expected ${entry.first_sample_id})`);
  }
  return block;
}

/**
 * Opens the dataset in `dir`: reads and validates manifest.json, then checks that every
 * listed shard exists with the listed size (and sha256 with `verify`). Errors are one line
 * naming the file: missing/invalid manifest, `"<dir>/shard-00002.parquet: shard listed in
 * manifest.json is missing"`, `"…: truncated or corrupt shard (…)"`, `"…: shard does not
 * match manifest (…; a shard from another dataset?)"` for a whole Parquet file of another
 * size. Reading rows also fails with one line on a shard whose sha256, shapes, row count or
 * first sample id differ from its entry (so a swapped-in shard of the same size is caught).
 */
export async function openLogitDataset(dir: string, opts: OpenOptions = {}): Promise<LogitDataset> {
  const manifest = await readManifest(dir);
  if (manifest.complete === false || manifest.worker !== undefined) {
    throw new Error(`${join(dir, 'manifest.json')}: an incomplete or per-worker manifest; finish precompute or run kd merge first`);
  }
  const layout = layoutOf(manifest);
  const shards = manifest.shards.map((entry) => ({ entry, path: join(dir, entry.file) }));
  for (const s of shards) {
    await checkPresent(s.path, s.entry);
    if (opts.verify) {
      const problem = await verifyShard(dir, s.entry);
      if (problem !== null) throw new Error(problem);
    }
  }
  async function* rows(): AsyncGenerator<LogitRow> {
    for (const s of shards) yield* await readListed(s, layout);
  }
  async function readAll(): Promise<LogitRow[]> {
    const out: LogitRow[] = [];
    for (const s of shards) for (const row of await readListed(s, layout)) out.push(row);
    return out;
  }
  return { dir, manifest, layout, shards, rows, readAll };
}
