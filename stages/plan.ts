/**
 * plan: the bytes one training step of a model needs (lib/memory/plan.ts) — weights, gradients,
 * AdamW moments, activations kept for the backward pass, the largest transient and the total —
 * and the recomputation / attention-block / loss-chunk settings kd train would choose.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { BackendName } from '../lib/backend/select.js';
import { withHfDefaults } from '../lib/model/architectures.js';
import { LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { memoryBudget, savedTensorsOf } from '../lib/memory/budget.js';
import { choosePlan, describeOptions, formatBytes, leanestPlan, MemoryPlan, PlanInput } from '../lib/memory/plan.js';
import { readJson } from '../lib/util/fs.js';

/** `kd plan`'s settings. */
export interface PlanArgs {
  /** A config.json, a checkpoint directory holding one, or a JSON object of config fields. */
  model: string;
  seq_len: number;
  batch_size: number;
  grad_accum: number;
  /** Force recomputation; absent: the plan decides (the leanest plan without a budget). */
  recompute?: 'on' | 'off';
  /** Bytes or a size ("24GiB"); absent: the backend's (wasm 4 GiB; none elsewhere). */
  memory_budget?: string;
  backend: BackendName;
  k: number;
  topk_mode: 'tail' | 'renormalize';
  alpha: number;
  dropout: boolean;
  grad_clip: boolean;
}

/** What `kd plan` prints (`--json`: this object). */
export interface PlanReport extends MemoryPlan {
  model: string;
  seq_len: number;
  batch_size: number;
  grad_accum: number;
  backend: BackendName;
  budget_bytes: number | null;
}

/**
 * Reads `--model`: a directory (its config.json), a .json file (HF config.json: absent keys take
 * HF's defaults for its model_type), or inline JSON (kd's defaults for absent keys).
 * @throws Error naming the file or --model when it is missing or not a valid config.
 */
export function readModelConfig(model: string): LlamaConfig {
  const trimmed = model.trim();
  if (trimmed.startsWith('{')) {
    let raw: unknown;
    try { raw = JSON.parse(trimmed); } catch (e) { throw new Error(`--model: not valid JSON (${(e as Error).message.split('\n')[0]})`); }
    return resolveLlamaConfig(raw as Partial<LlamaConfig>, '--model');
  }
  if (!existsSync(model)) throw new Error(`${model}: not found (--model takes a config.json, a checkpoint directory or a JSON object)`);
  const file = statSync(model).isDirectory() ? join(model, 'config.json') : model;
  if (!existsSync(file)) throw new Error(`${file}: not found (a checkpoint directory holds config.json)`);
  const raw = readJson<Record<string, unknown>>(file, 'config.json');
  return resolveLlamaConfig(withHfDefaults(raw) as Partial<LlamaConfig>, file);
}

/**
 * The plan of `a`. With a budget (given, or wasm's heap) the settings kd train would choose;
 * without one the leanest settings (or recomputation as forced).
 * @throws Error when the model cannot be read, the sizes are invalid, or nothing fits the budget.
 */
export function run(a: PlanArgs): PlanReport {
  const cfg = readModelConfig(a.model);
  if (a.seq_len > cfg.max_position_embeddings) throw new Error(`--seq-len ${a.seq_len} exceeds the model's max_position_embeddings ${cfg.max_position_embeddings}`);
  const input: Omit<PlanInput, 'memory'> = {
    model: cfg, seqLen: a.seq_len, batchSize: a.batch_size, gradAccum: a.grad_accum,
    loss: { k: a.k, mode: a.topk_mode, alpha: a.alpha }, dropout: a.dropout, gradClip: a.grad_clip, saved: savedTensorsOf(a.backend),
  };
  const fixed = a.recompute === undefined ? {} : { recompute: a.recompute === 'on' };
  const hasBudget = a.memory_budget !== undefined || a.backend === 'wasm';
  const budget = hasBudget ? memoryBudget(a.backend, a.memory_budget ?? null) : Number.POSITIVE_INFINITY;
  const plan = hasBudget ? choosePlan(input, budget, fixed, a.model).plan : leanestPlan(input, fixed);
  return { ...plan, model: a.model, seq_len: a.seq_len, batch_size: a.batch_size, grad_accum: a.grad_accum, backend: a.backend, budget_bytes: hasBudget ? budget : null };
}

/** The human-readable plan. */
export function formatPlan(r: PlanReport): string {
  const row = (name: string, b: number) => `  ${name.padEnd(22)} ${formatBytes(b).padStart(10)}  (${b.toLocaleString('en-US')} bytes)`;
  return [
    `plan ${r.model}: ${r.parameters.toLocaleString('en-US')} parameters, L = ${r.seq_len}, B = ${r.batch_size}${r.grad_accum > 1 ? ` × ${r.grad_accum} micro-batches` : ''}, AdamW fp32, backend ${r.backend}`,
    `  settings               ${describeOptions(r.memory)}`,
    row('weights', r.weights_bytes), row('gradients', r.gradients_bytes), row('optimizer moments', r.optimizer_bytes),
    row('activations kept', r.activations_bytes), row(`largest transient`, r.transient_bytes) + ` ${r.transient}`,
    row('total (peak)', r.total_bytes) + ` in the ${r.peak_phase === 'backward' ? 'backward pass' : 'optimizer update'}`,
    r.budget_bytes !== null ? `  budget                 ${formatBytes(r.budget_bytes)}: fits` : '',
  ].filter(Boolean).join('\n') + '\n';
}

type Args = Omit<PlanArgs, 'seq_len' | 'batch_size' | 'grad_accum' | 'topk_mode' | 'memory_budget' | 'grad_clip'> & {
  'seq-len': number; 'batch-size': number; 'grad-accum': number; 'topk-mode': 'tail' | 'renormalize'; 'memory-budget'?: string; 'grad-clip': boolean; json?: boolean;
};

export const command: CommandModule<object, Args> = {
  command: 'plan',
  describe: 'Memory plan of one training step: weights, gradients, AdamW moments, activations, largest transient, total; the settings kd train would choose',
  builder: (y: Argv<object>) => y
    .option('model', { type: 'string', demandOption: true, describe: 'a config.json, a checkpoint directory, or a JSON object of config fields' })
    .option('seq-len', { type: 'number', demandOption: true, describe: 'positions per window (L)' })
    .option('batch-size', { type: 'number', demandOption: true, describe: 'windows per micro-batch (B)' })
    .option('grad-accum', { type: 'number', default: 1, describe: 'micro-batches per optimizer step' })
    .option('recompute', { choices: ['on', 'off'] as const, describe: 'force layer recomputation on or off (default: the plan decides)' })
    .option('memory-budget', { type: 'string', describe: 'bytes the device holds, e.g. 24GiB or 80GB: choose the fastest settings that fit (default: wasm 4 GiB, else the leanest settings)' })
    .option('backend', { choices: ['node-gpu', 'node', 'wasm', 'cpu'] as const, default: 'node-gpu' as const, describe: 'backend to plan for (wasm holds 4 GiB)' })
    .option('k', { type: 'number', default: 32, describe: 'teacher top-k per position (kd precompute\'s default: 32)' })
    .option('topk-mode', { choices: ['tail', 'renormalize'] as const, default: 'tail' as const, describe: 'top-k handling of the loss' })
    .option('alpha', { type: 'number', default: 0.8, describe: 'KD weight (0 = CE only, no teacher tensors)' })
    .option('dropout', { type: 'boolean', default: false, describe: 'plan with dropout on' })
    .option('grad-clip', { type: 'boolean', default: true, describe: 'plan with gradient clipping (a clipped copy of the gradients)' })
    .option('json', { type: 'boolean', describe: 'print the plan as one JSON object (total_bytes is the total)' })
    .check((a) => {
      for (const flag of ['seq-len', 'batch-size', 'grad-accum', 'k'] as const) {
        if (!Number.isInteger(a[flag]) || (a[flag] as number) < 1) throw new Error(`--${flag} must be an integer ≥ 1, got ${String(a[flag])}`);
      }
      if (!(typeof a.alpha === 'number' && a.alpha >= 0 && a.alpha <= 1)) throw new Error(`--alpha must be a number in [0, 1], got ${String(a.alpha)}`);
      return true;
    }) as unknown as Argv<Args>,
  handler: (argv) => {
    const r = run({
      model: argv.model, seq_len: argv['seq-len'], batch_size: argv['batch-size'], grad_accum: argv['grad-accum'], recompute: argv.recompute,
      memory_budget: argv['memory-budget'], backend: argv.backend, k: argv.k, topk_mode: argv['topk-mode'], alpha: argv.alpha, dropout: argv.dropout, grad_clip: argv['grad-clip'],
    });
    process.stdout.write(argv.json ? JSON.stringify(r) + '\n' : formatPlan(r));
  },
};
