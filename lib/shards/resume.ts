/**
 * What makes shards belong to one dataset, and which listed shards a resumed or merged run can
 * keep. A shard is reused only when a manifest lists it, the manifest's identity (teacher,
 * tokenizer and window hashes, shapes, shard plan) equals the current one, and the file on disk
 * has the listed size and sha256.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  MANIFEST_FILE, WORKER_MANIFEST_RE, readManifestFile, verifyShard, type LogitManifest, type ShardEntry,
} from './manifest.js';

/** A manifest read from disk and the file it came from. */
export interface ListedManifest {
  path: string;
  manifest: LogitManifest;
}

const short = (v: unknown): string => {
  const s = JSON.stringify(v);
  return typeof v === 'string' && v.length > 16 ? `${v.slice(0, 12)}…` : s;
};

/** The compared fields, in the order a difference is reported. */
const IDENTITY: [label: string, get: (m: LogitManifest) => unknown][] = [
  ['teacher sha256', (m) => m.teacher.sha256],
  ['tokenizer sha256', (m) => m.tokenizer.sha256],
  ['windows sha256', (m) => m.windows.sha256],
  ['seq_len', (m) => m.seq_len],
  ['k', (m) => m.k],
  ['temperatures', (m) => m.temperatures],
  ['mode', (m) => m.mode],
  ['sampling', (m) => m.sampling ?? null],
  ['encoding', (m) => m.encoding],
  ['tokenizer vocab_size', (m) => m.tokenizer.vocab_size],
  ['tokenizer real_vocab_size', (m) => m.tokenizer.real_vocab_size],
  ['windows (plan.rows)', (m) => m.plan?.rows],
  ['rows_per_shard', (m) => m.plan?.rows_per_shard],
  ['hidden states', (m) => m.hidden ?? null],
  ['augmentation', (m) => m.augmentation ?? null],
  ['byte spans', (m) => m.spans ?? null],
];

/**
 * The first identity field in which `a` and `b` differ, as
 * `"teacher sha256 differs (<aName> 1a2b3c4d5e6f…, <bName> 9f8e7d6c5b4a…)"`, or null when
 * their shards are interchangeable. A manifest without a `plan` (written before resumable
 * precompute) differs from one with a plan.
 */
export function identityDiff(a: LogitManifest, b: LogitManifest, aName = 'manifest', bName = 'current'): string | null {
  for (const [label, get] of IDENTITY) {
    const x = get(a), y = get(b);
    if (JSON.stringify(x) !== JSON.stringify(y)) return `${label} differs (${aName} ${short(x)}, ${bName} ${short(y)})`;
  }
  return null;
}

/** Every manifest in `dir` (manifest.json first, then worker manifests by name), validated. */
export async function listedManifests(dir: string): Promise<ListedManifest[]> {
  if (!existsSync(dir)) return [];
  const names = readdirSync(dir).filter((f) => WORKER_MANIFEST_RE.test(f)).sort();
  if (existsSync(join(dir, MANIFEST_FILE))) names.unshift(MANIFEST_FILE);
  const out: ListedManifest[] = [];
  for (const name of names) {
    const path = join(dir, name);
    out.push({ path, manifest: await readManifestFile(path) });
  }
  return out;
}

/** What a shard of the plan must hold. */
export interface PlannedShard {
  index: number;
  file: string;
  rows: number;
  first_sample_id: string;
}

/**
 * Of the `planned` shards, those that a manifest in `dir` lists with matching rows and first
 * sample id and whose file verifies (size and sha256), by shard index; and the manifests read.
 * @throws Error `"<manifest path>: cannot resume: <field> differs (manifest …, current …)"`
 *   when a manifest in `dir` belongs to other inputs (compared with {@link identityDiff}).
 */
export async function reusableShards(dir: string, current: LogitManifest, planned: PlannedShard[]): Promise<{ reused: Map<number, ShardEntry>; listed: ListedManifest[] }> {
  const listed = await listedManifests(dir);
  const byFile = new Map<string, ShardEntry>();
  for (const { path, manifest } of listed) {
    if (!manifest.plan) throw new Error(`${path}: cannot resume: written by an older kd (no shard plan); use another --out, or --overwrite to discard it`);
    const diff = identityDiff(manifest, current);
    if (diff !== null) throw new Error(`${path}: cannot resume: ${diff}; use another --out, or --overwrite to discard it`);
    for (const e of manifest.shards) byFile.set(e.file, e);
  }
  const out = new Map<number, ShardEntry>();
  for (const p of planned) {
    const e = byFile.get(p.file);
    if (!e || e.rows !== p.rows || e.first_sample_id !== p.first_sample_id) continue;
    if ((await verifyShard(dir, e)) === null) out.set(p.index, e);
  }
  return { reused: out, listed };
}
