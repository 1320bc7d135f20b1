/**
 * Which worker of a split run this process is (DESIGN §3.2): `--shard-index i --num-shards N`,
 * else Slurm job arrays (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT),
 * else a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with N from --num-shards or
 * KD_NUM_SHARDS, since Kubernetes does not export the completion count).
 */
import type { WorkerInfo } from '../shards/manifest.js';

type Env = Record<string, string | undefined>;

function envInt(env: Env, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`environment: ${name}=${JSON.stringify(v)} is not a non-negative integer`);
  return Number(v);
}

/**
 * Resolves this process's worker index and count from flags, then the environment.
 * @param index `--shard-index`, if given
 * @param count `--num-shards`, if given
 * @throws Error (one line) for an index without a count, an index ≥ count, or a malformed variable.
 */
export function resolveWorker(index: number | undefined, count: number | undefined, env: Env = process.env): WorkerInfo & { source: string } {
  let source = 'flags';
  if (index === undefined) {
    const slurm = envInt(env, 'SLURM_ARRAY_TASK_ID');
    const k8s = envInt(env, 'JOB_COMPLETION_INDEX');
    if (slurm !== undefined) {
      index = slurm - (envInt(env, 'SLURM_ARRAY_TASK_MIN') ?? 0);
      count ??= envInt(env, 'SLURM_ARRAY_TASK_COUNT');
      source = 'SLURM_ARRAY_TASK_ID';
    } else if (k8s !== undefined) {
      index = k8s;
      source = 'JOB_COMPLETION_INDEX';
    }
  }
  count ??= envInt(env, 'KD_NUM_SHARDS');
  if (index === undefined) return { index: 0, count: count ?? 1, source: 'default' };
  if (count === undefined) throw new Error(`worker index ${index} (from ${source}) needs a worker count: --num-shards N or KD_NUM_SHARDS`);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--num-shards must be an integer ≥ 1 (got ${count})`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new Error(`worker index ${index} (from ${source}) must be in [0, ${count})`);
  return { index, count, source };
}
