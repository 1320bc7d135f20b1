/**
 * `kd merge`: joins the per-worker manifests of a split precompute run into one manifest.json,
 * after checking that they come from the same inputs and together list every planned shard
 * exactly once. Shards living in other directories are hard-linked (or copied) into the output.
 */
import { existsSync, linkSync, mkdirSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { MANIFEST_FILE, SPAN_TOKENIZER_FILE, WORKER_MANIFEST_RE, sha256File, verifyShard, writeManifest, type LogitManifest, type ShardEntry } from './manifest.js';
import { planShards } from './plan.js';
import { identityDiff, listedManifests, type ListedManifest } from './resume.js';
import { copyFileDurable } from '../util/fs.js';

/** What {@link mergeDatasets} did. */
export interface MergeResult {
  out: string;
  manifest: LogitManifest;
  /** The manifests that were joined. */
  sources: string[];
  /** Shards linked or copied into `out` from other directories. */
  placed: number;
}

/**
 * Worker manifests of every dir (each dir once), then each dir's manifest.json — an earlier
 * merge, which a worker re-run since then may overlap.
 */
async function sourcesOf(dirs: string[]): Promise<ListedManifest[]> {
  const workers: ListedManifest[] = [], merged: ListedManifest[] = [];
  for (const dir of [...new Set(dirs.map((d) => resolve(d)))]) {
    if (!existsSync(dir)) throw new Error(`${dir}: directory not found`);
    for (const l of await listedManifests(dir)) (WORKER_MANIFEST_RE.test(basename(l.path)) ? workers : merged).push(l);
  }
  if (workers.length + merged.length === 0) throw new Error(`${dirs.join(', ')}: no worker manifests (manifest.worker-*.json) to merge`);
  return [...workers, ...merged];
}

/** Throws unless every source is complete, has a plan and the same identity as the first. */
function checkCompatible(sources: ListedManifest[]): void {
  const [first] = sources;
  for (const { path, manifest: m } of sources) {
    if (m.complete === false) {
      const w = m.worker ? `worker ${m.worker.index} of ${m.worker.count}` : 'this run';
      throw new Error(`${path}: ${w} has not finished (${m.shards.length} shard(s) listed so far); re-run it, then merge`);
    }
    if (!m.plan) throw new Error(`${path}: manifest has no shard plan (written by an older kd); cannot check that no shard is missing`);
    const diff = identityDiff(first.manifest, m, first.path, path);
    if (diff !== null) throw new Error(`cannot merge ${first.path} and ${path}: ${diff}`);
  }
}

/**
 * Each planned shard's entry and directory; throws on gaps, strays and shards listed twice
 * (an earlier merge's manifest.json may repeat a worker's entry unchanged).
 */
function collectShards(sources: ListedManifest[]): { entry: ShardEntry; dir: string }[] {
  const plan = planShards(sources[0].manifest.plan!.rows, sources[0].manifest.plan!.rows_per_shard);
  const byFile = new Map<string, { entry: ShardEntry; dir: string; from: string }>();
  for (const { path, manifest } of sources) {
    for (const entry of manifest.shards) {
      const seen = byFile.get(entry.file);
      const earlierMerge = basename(path) === MANIFEST_FILE;
      if (seen && earlierMerge && JSON.stringify(seen.entry) === JSON.stringify(entry)) continue; // the same shard again
      if (seen) throw new Error(`${entry.file} is listed twice: by ${seen.from} and by ${path}`);
      byFile.set(entry.file, { entry, dir: resolve(path, '..'), from: path });
    }
  }
  const missing = plan.filter((p) => !byFile.has(p.file)).map((p) => p.file);
  if (missing.length > 0) {
    throw new Error(`missing ${missing.length} of ${plan.length} shard(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}): did every worker run?`);
  }
  if (byFile.size !== plan.length) throw new Error(`manifests list ${byFile.size} shards, the plan has ${plan.length}`);
  return plan.map((p) => {
    const got = byFile.get(p.file)!;
    if (got.entry.rows !== p.rows || got.entry.first_sample_id !== p.first_sample_id) {
      throw new Error(`${got.from}: ${p.file} has rows ${got.entry.rows} from ${got.entry.first_sample_id}, the plan says ${p.rows} from ${p.first_sample_id}`);
    }
    return got;
  });
}

/** Hard link, else a durable copy (temporary name, fsync, rename), `src` to `dest`. */
function place(src: string, dest: string): void {
  try {
    linkSync(src, dest);
  } catch {
    copyFileDurable(src, dest);
  }
}

/**
 * A dataset with byte spans carries its tokenizer.json (manifest `spans`): the first source
 * directory's copy whose sha256 is the manifest's goes to `out` unless `out` has it already.
 * @throws Error when no source directory holds it
 */
async function placeSpanTokenizer(sources: ListedManifest[], out: string, sha256: string): Promise<void> {
  const dest = join(out, SPAN_TOKENIZER_FILE);
  if (existsSync(dest) && (await sha256File(dest)) === sha256) return;
  for (const dir of new Set(sources.map((s) => resolve(s.path, '..')))) {
    const src = join(dir, SPAN_TOKENIZER_FILE);
    if (dir !== resolve(out) && existsSync(src) && (await sha256File(src)) === sha256) {
      rmSync(dest, { force: true });
      place(src, dest);
      return;
    }
  }
  throw new Error(`${dest}: the dataset stores byte spans, but no merged directory holds its ${SPAN_TOKENIZER_FILE} (sha256 ${sha256.slice(0, 12)}…)`);
}

/**
 * Merges the worker manifests found in `dirs` into `<out>/manifest.json` and removes the
 * worker manifests in `out`. Every shard is verified (size and sha256) in `out`.
 * @throws Error, one line: an unfinished worker; manifests from different inputs ("cannot merge
 *   A and B: teacher sha256 differs (…)"); a shard listed twice; missing shards; a shard that
 *   does not verify.
 */
export async function mergeDatasets(dirs: string[], out: string): Promise<MergeResult> {
  const sources = await sourcesOf(dirs);
  checkCompatible(sources);
  const shards = collectShards(sources);
  mkdirSync(out, { recursive: true });
  let placed = 0;
  for (const { entry, dir } of shards) {
    const dest = join(out, entry.file);
    if (resolve(dir) !== resolve(out) && (await verifyShard(out, entry)) !== null) {
      rmSync(dest, { force: true });
      place(join(dir, entry.file), dest);
      placed++;
    }
    const problem = await verifyShard(out, entry);
    if (problem !== null) throw new Error(problem);
  }
  const first = sources[0].manifest;
  if (first.spans) await placeSpanTokenizer(sources, out, first.tokenizer.sha256);
  const providers = [...new Set(sources.map((s) => s.manifest.teacher.execution_provider))].sort().join('+');
  const rows = shards.reduce((s, x) => s + x.entry.rows, 0);
  const { worker: _, ...rest } = first;
  const manifest: LogitManifest = {
    ...rest, teacher: { ...first.teacher, execution_provider: providers }, complete: true,
    shards: shards.map((s) => s.entry),
    totals: { rows, positions: rows * first.seq_len, bytes: shards.reduce((s, x) => s + x.entry.bytes, 0) },
    created_at: new Date().toISOString(),
  };
  await writeManifest(out, manifest);
  for (const { path } of sources) if (resolve(path, '..') === resolve(out) && !path.endsWith(MANIFEST_FILE)) rmSync(path, { force: true });
  return { out, manifest, sources: sources.map((s) => s.path), placed };
}
