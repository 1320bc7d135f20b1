/**
 * Sharded safetensors checkpoints as transformers writes them (`save_pretrained(max_shard_size=…)`):
 * `model-00001-of-00003.safetensors`, … and `model.safetensors.index.json`
 * {"metadata": {"total_size": <tensor bytes>}, "weight_map": {"<tensor>": "<shard file>"}}.
 * A checkpoint that fits in one shard is a single `model.safetensors` with no index, as in
 * transformers; when both exist, the single file is read (transformers' precedence).
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeFileAtomic } from '../util/fs.js';
import { readSafetensors, SafetensorsDtype, SafetensorsFile, storedBytes, writeSafetensors } from './safetensors.js';
import { NamedTensors } from './tensors.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** transformers' default max_shard_size, "5GB" (decimal). */
export const DEFAULT_MAX_SHARD_SIZE = 5e9;

/** model.safetensors.index.json. */
export interface ShardIndex { metadata: { total_size: number; [k: string]: unknown }; weight_map: Record<string, string> }

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/**
 * A size as transformers' `convert_file_size_to_int` reads it: "5GB" = 5·10⁹, "500MB", "2GiB" = 2·2³⁰,
 * or a number of bytes (number or digits).
 * @throws Error `<flag>: '<v>' is not a size (e.g. 5GB, 500MB, 2GiB or bytes)`
 */
export function parseByteSize(v: unknown, flag = 'max_shard_size'): number {
  const m = typeof v === 'number' ? [String(v), String(v), 'B'] : typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v) : null;
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]) : NaN;
  if (!(Number.isSafeInteger(bytes) && bytes > 0)) throw new Error(`${flag}: '${String(v)}' is not a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)`);
  return bytes;
}

/** transformers' shard name: model-00001-of-00003.safetensors. */
export function shardName(i: number, n: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/**
 * Splits tensor names into shards in map order, as huggingface_hub does: a shard takes tensors
 * until the next would push its data past `maxShardSize` bytes; a tensor larger than the limit
 * is alone in its shard.
 * @returns the file names and the tensors of each (one entry `model.safetensors` when all fit)
 */
export function planShards(tensors: NamedTensors, dtype: SafetensorsDtype, maxShardSize = DEFAULT_MAX_SHARD_SIZE): { file: string; names: string[] }[] {
  const groups: string[][] = [];
  let size = Infinity;
  for (const [name, t] of tensors) {
    const n = storedBytes(t.data, dtype);
    if (size + n > maxShardSize) { groups.push([]); size = 0; }
    groups[groups.length - 1].push(name);
    size += n;
  }
  if (groups.length <= 1) return [{ file: SINGLE_FILE, names: groups[0] ?? [] }];
  return groups.map((names, i) => ({ file: shardName(i, groups.length), names }));
}

/** The weight files in `dir` (relative names): model.safetensors, the index and the shards it names. */
export function weightFiles(dir: string): Set<string> {
  const files = new Set<string>();
  if (existsSync(join(dir, SINGLE_FILE))) files.add(SINGLE_FILE);
  if (!existsSync(join(dir, INDEX_FILE))) return files;
  files.add(INDEX_FILE);
  try { for (const f of Object.values(readIndex(dir).weight_map)) files.add(f); } catch { /* unreadable index: only it is replaced */ }
  return files;
}

/**
 * Writes `tensors` to `dir` as one model.safetensors or, above `maxShardSize` bytes, shards plus
 * the index, each file durable and streamed. The new set never mixes with the previous one:
 * an index whose shards would be overwritten is removed first; the index is written last; the
 * previous save's files (a single file now sharded, shards now unused, an index now single) are
 * removed only after the new set is complete.
 * @returns the files written (relative to `dir`) and their total bytes
 * @throws Error `<file>: no space left on device` and the like
 */
export function writeShardedSafetensors(dir: string, tensors: NamedTensors, dtype: SafetensorsDtype, maxShardSize = DEFAULT_MAX_SHARD_SIZE,
  metadata: Record<string, string> = { format: 'pt' }): { files: string[]; bytes: number } {
  const plan = planShards(tensors, dtype, maxShardSize);
  const previous = weightFiles(dir);
  if (previous.has(INDEX_FILE) && plan.some((s) => previous.has(s.file))) rmSync(join(dir, INDEX_FILE)); // the old index would list new shards
  let bytes = 0;
  for (const s of plan) bytes += writeSafetensors(join(dir, s.file), new Map(s.names.map((n) => [n, tensors.get(n)!])), dtype, metadata).bytes;
  const files = plan.map((s) => s.file);
  if (plan.length > 1) {
    const total = [...tensors.values()].reduce((a, t) => a + storedBytes(t.data, dtype), 0);
    const weight_map = Object.fromEntries(plan.flatMap((s) => s.names.map((n) => [n, s.file])).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    bytes += writeFileAtomic(join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map } satisfies ShardIndex, null, 2) + '\n').bytes;
    files.push(INDEX_FILE);
  }
  dropStaleWeights(dir, files, previous); // only now that the new set is complete
  return { files, bytes };
}

/**
 * Removes the weight files of a previous save that `keep` does not name, the index (or single
 * file) before the shards it names, so what remains never looks like a complete older set.
 * @param previous the files to consider (default: those in `dir` now, {@link weightFiles})
 */
export function dropStaleWeights(dir: string, keep: string[], previous = weightFiles(dir)): void {
  const top = (f: string) => Number(f === INDEX_FILE || f === SINGLE_FILE);
  for (const f of [...previous].sort((a, b) => top(b) - top(a))) if (!keep.includes(f)) rmSync(join(dir, f), { force: true });
}

/** Reads and validates `dir`/model.safetensors.index.json. @throws Error naming the index file */
export function readIndex(dir: string): ShardIndex {
  const path = join(dir, INDEX_FILE);
  const index = readJson<ShardIndex>(path, 'safetensors index');
  const map = index?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map) || Object.keys(map).length === 0) {
    throw new Error(`${path}: weight_map is missing or empty (expected {"<tensor>": "<shard>.safetensors"})`);
  }
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file === '..') throw new Error(`${path}: weight_map['${name}'] = ${JSON.stringify(file)} is not a file name in the checkpoint directory`);
  }
  return index;
}

/**
 * The tensors of the checkpoint in `dir`: model.safetensors, else the shards named by
 * model.safetensors.index.json, each read tensor by tensor.
 * @throws Error naming the file: neither file present, a shard missing, a tensor the index puts
 *   in another shard, a tensor the index lists but no shard has, and the safetensors errors.
 */
export function readCheckpointTensors(dir: string): NamedTensors {
  if (existsSync(join(dir, SINGLE_FILE)) || !existsSync(join(dir, INDEX_FILE))) return readSafetensors(join(dir, SINGLE_FILE)).tensors;
  const indexPath = join(dir, INDEX_FILE);
  const map = readIndex(dir).weight_map;
  const tensors: NamedTensors = new Map();
  for (const shard of [...new Set(Object.values(map))].sort()) { // shard order (the names sort so), then offsets: the order saved
    const file = new SafetensorsFile(join(dir, shard));
    try {
      for (const e of file.entries) {
        if (map[e.name] !== shard) throw new Error(`${join(dir, shard)}: tensor '${e.name}' is not mapped to this shard by ${indexPath} (${map[e.name] ? `it says ${map[e.name]}` : 'absent'})`);
        tensors.set(e.name, file.tensor(e));
      }
    } finally { file.close(); }
  }
  const missing = Object.keys(map).filter((n) => !tensors.has(n));
  if (missing.length > 0) throw new Error(`${indexPath}: tensor '${missing[0]}' is mapped to ${map[missing[0]]}, which does not hold it${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}`);
  return tensors;
}

/** Config check for a size field (lib/cli/config.ts FieldCheck): undefined when {@link parseByteSize} takes it. */
export function isByteSize(v: unknown): string | undefined {
  try { parseByteSize(v); return undefined; } catch { return 'must be a size such as 5GB, 500MB, 2GiB or a number of bytes'; }
}
