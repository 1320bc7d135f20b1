/**
 * plan: the bytes one training step of a model needs (lib/memory/plan.ts) — weights, gradients,
 * AdamW moments, activations kept for the backward pass, the largest transient and the total —
 * and the recomputation / attention-block / loss-chunk settings kd train would choose.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { BackendName } from '../lib/backend/select.js';
import { FieldCheck, flagsToConfig, isBool, isInt, isNum, isOneOf, isString, mergeConfig, optional, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { isByteSize } from '../lib/model/sharded.js';
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
  memory_budget?: number | string;
  backend: BackendName;
  k: number;
  topk_mode: 'tail' | 'renormalize';
  alpha: number;
  dropout: boolean;
  grad_clip: boolean;
}

/** PlanArgs as a config file or flags give it: model, seq_len and batch_size have no default. */
type PlanConfig = Omit<PlanArgs, 'model' | 'seq_len' | 'batch_size'> & { model: string | null; seq_len: number | null; batch_size: number | null };

export const PLAN_DEFAULTS: PlanConfig = {
  model: null, seq_len: null, batch_size: null, grad_accum: 1, backend: 'node-gpu', k: 32, topk_mode: 'tail', alpha: 0.8, dropout: false, grad_clip: true,
};

const CHECKS: Record<keyof PlanConfig, FieldCheck> = {
  model: optional(isString), seq_len: optional(isInt(1)), batch_size: optional(isInt(1)), grad_accum: isInt(1),
  recompute: optional(isOneOf('on', 'off')), memory_budget: optional(isByteSize), backend: isOneOf('node-gpu', 'node', 'wasm', 'cpu'),
  k: isInt(1), topk_mode: isOneOf('tail', 'renormalize'), alpha: isNum(0, 1), dropout: isBool, grad_clip: isBool,
};

/** The flag of each key that has no default, for the "is required" error. */
const REQUIRED = { model: '--model', seq_len: '--seq-len', batch_size: '--batch-size' } as const;

/**
 * `kd plan`'s settings: `partial` (flags and/or a config file) over PLAN_DEFAULTS, validated before
 * the model is read. A config file's `model` may be an object of config fields (as `--model '{…}'`).
 * @throws Error naming the flag or `source` for an unknown key, a value out of range, or a missing model, seq_len or batch_size.
 */
export function resolvePlanConfig(partial: Record<string, unknown>, source = 'plan config'): PlanArgs {
  const model = partial.model;
  const given = typeof model === 'object' && model !== null && !Array.isArray(model) ? mergeConfig(partial, { model: JSON.stringify(model) }) : partial;
  const cfg = resolveConfig(PLAN_DEFAULTS, CHECKS, given, source);
  for (const [key, flag] of Object.entries(REQUIRED) as [keyof typeof REQUIRED, string][]) {
    if (cfg[key] === null) throw new Error(`${source}: ${key} is required (${flag})`);
  }
  return cfg as PlanArgs;
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

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'plan',
  describe: 'Memory plan of one training step: weights, gradients, AdamW moments, activations, largest transient, total; the settings kd train would choose',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('model', { type: 'string', describe: 'a config.json, a checkpoint directory, or a JSON object of config fields; required' })
    .option('seq-len', { type: 'number', describe: 'positions per window (L); required' })
    .option('batch-size', { type: 'number', describe: 'windows per micro-batch (B); required' })
    .option('grad-accum', { type: 'number', describe: `micro-batches per optimizer step (default ${PLAN_DEFAULTS.grad_accum})` })
    .option('recompute', { choices: ['on', 'off'], describe: 'force layer recomputation on or off (default: the plan decides)' })
    .option('memory-budget', { type: 'string', describe: 'bytes the device holds, e.g. 24GiB or 80GB: choose the fastest settings that fit (default: wasm 4 GiB, else the leanest settings)' })
    .option('backend', { choices: ['node-gpu', 'node', 'wasm', 'cpu'], describe: `backend to plan for; wasm holds 4 GiB (default ${PLAN_DEFAULTS.backend})` })
    .option('k', { type: 'number', describe: `teacher top-k per position (default ${PLAN_DEFAULTS.k}, kd precompute's)` })
    .option('topk-mode', { choices: ['tail', 'renormalize'], describe: `top-k handling of the loss (default ${PLAN_DEFAULTS.topk_mode})` })
    .option('alpha', { type: 'number', describe: `KD weight, 0 = CE only: no teacher tensors (default ${PLAN_DEFAULTS.alpha})` })
    .option('dropout', { type: 'boolean', describe: 'plan with dropout on (default off)' })
    .option('grad-clip', { type: 'boolean', describe: 'plan with gradient clipping: a clipped copy of the gradients (default on; --no-grad-clip)' })
    .option('json', { type: 'boolean', describe: 'print the plan as one JSON object (total_bytes is the total)' }) as Argv<Args>,
  handler: (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const r = run(resolvePlanConfig(mergeConfig(fromFile, flagsToConfig(argv, Object.keys(CHECKS))), argv.config ?? 'plan config'));
    process.stdout.write(argv.json ? JSON.stringify(r) + '\n' : formatPlan(r));
  },
};
