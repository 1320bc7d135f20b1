/**
 * Shared inputs of the precompute tests: a prep directory on a small Brown slice (vocab 512,
 * seq_len 32) and random-weight Llama teachers exported to ONNX, plus a CLI runner.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveLlamaConfig, type LlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import type { NamedTensors } from '../lib/model/tensors.js';
import { exportLlamaOnnx, writeOnnx } from '../lib/onnx/index.js';
import { run as prep } from '../stages/prep.js';

export const VOCAB = 512, SEQ_LEN = 32;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** `node --import tsx`: one process (the tsx CLI would run kd in a grandchild that a SIGKILL misses). */
const NODE_ARGS = ['--import', 'tsx', join(ROOT, 'pipelines/kd.ts')];

/** A temp dir with `prep/` (40 Brown documents → vocab 512, 32-token windows). */
export async function makePrep(name: string): Promise<{ dir: string; prep: string }> {
  const dir = mkdtempSync(join(tmpdir(), `kd-${name}-`));
  const p = join(dir, 'prep');
  await prep({ out: p, max_documents: 40, vocab_size: VOCAB, seq_len: SEQ_LEN, quiet: true });
  return { dir, prep: p };
}

/** The test teachers' architecture (hidden 64, 2 layers) with overrides. */
export function teacherConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return resolveLlamaConfig({
    vocab_size: VOCAB, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 64, ...over,
  });
}

/**
 * Writes a random-weight teacher to `path`. Weights are scaled up from the init so that the
 * teacher's distributions are peaked (top-k mass well above k/V); `edit` may change them.
 */
export function writeTeacher(path: string, cfg = teacherConfig(), seed = 1, edit?: (w: NamedTensors) => void): string {
  const w = initLlamaWeights(cfg, seed);
  for (const [name, t] of w) if (!name.endsWith('norm.weight')) for (let i = 0; i < t.data.length; i++) t.data[i] *= name.includes('embed') || name.includes('lm_head') ? 40 : 8;
  edit?.(w);
  writeOnnx(path, exportLlamaOnnx(cfg, w));
  return path;
}

/** sha256 of every file in `dir` whose name matches `re` (default: shards), by name. */
export function fileHashes(dir: string, re = /^shard-\d+\.parquet$/): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).filter((x) => re.test(x)).sort()) out[f] = createHash('sha256').update(readFileSync(join(dir, f))).digest('hex');
  return out;
}

/** Starts `kd <args>` (pipelines/kd.ts through tsx) as a child process. */
export function spawnKd(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [...NODE_ARGS, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `kd <args>` to the end: exit code, stdout, stderr. */
export function runKd(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...NODE_ARGS, ...args], { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}
