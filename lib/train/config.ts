import { BACKENDS, BackendChoice } from '../backend/select.js';
import { blame, FieldCheck, flagOrigins, isBool, isInt, isNum, isOneOf, isString, optional, resolveConfig } from '../cli/config.js';
import { checkModelOverrides, LlamaConfig } from '../model/config.js';
import { SAFETENSORS_DTYPES, SafetensorsDtype } from '../model/safetensors.js';
import { DEFAULT_MAX_SHARD_SIZE, isByteSize } from '../model/sharded.js';
import { QAT_MODES, QatMode } from '../quant/qat.js';
import { TEMPERATURE_SCHEDULES, TemperatureSchedule } from './schedule.js';

/** Training configuration shared by `kd train` (student) and `kd teacher train`. */
export interface TrainConfig {
  /** Logit dataset written by precompute (student); null trains on the prep windows with CE only (teacher). */
  data: string | null;
  /** Prep output directory: validation windows and tokenizer.json (and training windows when data is null). */
  prep: string;
  /** Output directory: HF checkpoint, per-epoch checkpoints, metrics.jsonl, train.json. */
  out: string;
  /** Model architecture from scratch: HF LlamaConfig fields (vocab_size defaults to the tokenizer's). */
  model: Partial<LlamaConfig>;
  /** Start from this HF Llama checkpoint directory instead of a fresh init. */
  init_from: string | null;
  /** Seed of the weight init and the data order. */
  seed: number;
  /** Windows per micro-batch. */
  batch_size: number;
  /** Micro-batches per optimizer step (gradient accumulation, normalised by token count). */
  grad_accum: number;
  /** Passes over the training data. */
  epochs: number;
  /** Stop after this many optimizer steps (0 = epochs decide). */
  max_steps: number;
  /** Peak learning rate, reached after warmup_steps, then cosine decay to min_lr. */
  lr: number;
  min_lr: number;
  warmup_steps: number;
  /** AdamW decoupled weight decay (matrices only). */
  weight_decay: number;
  beta1: number;
  beta2: number;
  /** Global gradient-norm clip (0 = off). */
  grad_clip: number;
  /** Weight of the distillation term; 0 trains on the hard targets alone (baseline / teacher). */
  alpha: number;
  /** Distillation temperature τ (the start of the 'step', 'linear' and 'cosine' schedules). */
  temperature: number;
  /**
   * 'constant'; 'step': the seed article's max(τ − 0.5·epoch, temperature_min); 'linear' or
   * 'cosine': decay per optimizer step from `temperature` at the first step to `temperature_min`
   * at the last (see schedule.ts). In 'tail' mode these snap to stored temperatures (temperature.ts).
   */
  temperature_schedule: TemperatureSchedule;
  /** Floor of 'step' and end of 'linear'/'cosine' (≤ temperature). */
  temperature_min: number;
  /** Divergence: forward_kl (default), reverse_kl, jsd, tvd, skew_kl; or uld for a student whose tokenizer differs from the teacher's (dataset precomputed with --spans; lib/train/uld-loss.ts). */
  loss: string;
  /** Generalized JSD β in (0, 1): weight of the teacher in the mixture (loss 'jsd'). */
  jsd_beta: number;
  /** Skew KL λ in [0, 1): weight of the teacher in the mixture (loss 'skew_kl'). */
  skew_lambda: number;
  /** Top-k handling: 'tail' (exact tail bucket) or 'renormalize' (teacher renormalised over top-k). */
  topk_mode: 'tail' | 'renormalize';
  /** Evaluate validation loss every N optimizer steps (0 = only per epoch). */
  eval_every: number;
  /** Validation windows used by each evaluation (0 = all). */
  eval_windows: number;
  /** Stop after this many evaluations without a lower validation loss (0 = off); out/best keeps the best. */
  early_stopping_patience: number;
  /** Also write the resumable state to `out` every N optimizer steps (0 = at epoch ends only). */
  save_every: number;
  /** Dropout probability on attention probabilities and residual branches during training (0 = off). */
  dropout: number;
  /** TF.js backend: auto picks node-gpu, node, wasm, cpu in that order. */
  backend: BackendChoice;
  /** Continue from the training state in `out` when there is one. */
  resume: boolean;
  /** Start afresh in an `out` that already holds a training run (otherwise refused unless resuming). */
  overwrite: boolean;
  /** No progress bar or summary. */
  quiet: boolean;
  /** dtype of the HF checkpoints written (out, out/best, epoch-N); the resumable state stays F32. */
  safetensors_dtype: SafetensorsDtype;
  /** Shard those checkpoints above this size ("5GB" = 5·10⁹ bytes as transformers, "500MB", "2GiB" or bytes). */
  max_shard_size: number | string;
  /** Recompute decoder layers in the backward pass: 'auto' lets the memory plan decide (lib/memory/plan.ts). */
  recompute: 'auto' | 'on' | 'off';
  /** Bytes the device holds ("24GiB", "80GB" or bytes); null: the backend's (wasm 4 GiB; required on node-gpu). */
  memory_budget: number | string | null;
  /**
   * Feature distillation layer pairs "student:teacher,…" in HF output_hidden_states indices (0 =
   * embeddings, i = after decoder layer i), e.g. "1:2"; the teacher layers must be stored in the
   * dataset (precompute --hidden-layers). "" = off.
   */
  feature_layers: string;
  /**
   * β_feat, weight of the feature term (per target token, mean over pairs). Default 0.01: on the
   * demo (student layer 1 against teacher layer 2) the MSE starts at ≈ 61 per token unprojected and
   * ≈ 252 with --hidden-dim 64 (a projection to d multiplies it by ≈ hidden_size/d), so β·feat
   * starts at 0.6–2.5 beside α·KD ≈ 1.8 (README "Hidden-state distillation").
   */
  feature_beta: number;
  /** Feature distance: 'mse' (FitNets hint, mean over the feature dimension) or 'cosine' (DistilBERT, 1 − cos). */
  feature_loss: 'mse' | 'cosine';
  /**
   * Quantization-aware training (lib/quant/): the forward pass fake-quantizes the decoder's linear
   * weights as `kd export` will store them — 'int8' per output channel (export --dtype int8),
   * 'int4' in asymmetric MatMulNBits blocks (export --dtype int4 --block-size qat_block_size) —
   * with the straight-through gradient; 'none' = off. Embeddings, norms and the LM head stay float.
   */
  qat: QatMode;
  /** Optimizer steps done before fake quantization turns on (0 = from the first step); evaluations after that many steps see it too. */
  qat_start: number;
  /** int4 QAT: block along the input dimension, a power of two ≥ 16 dividing every linear's input dimension. */
  qat_block_size: number;
  /**
   * Ensemble distillation (seed article §8.1): other teachers' logit datasets over the same windows,
   * "dir:weight,…"; `data` gets 1 − Σ weight. The target is the mixture Σ w_i p_i (lib/losses/ensemble.ts;
   * 'tail' mode). "" = one teacher.
   */
  ensemble: string;
}

export const TRAIN_DEFAULTS: TrainConfig = {
  data: null, prep: 'runs/prep', out: 'runs/student', model: {}, init_from: null, seed: 0,
  batch_size: 16, grad_accum: 1, epochs: 1, max_steps: 0,
  lr: 3e-3, min_lr: 3e-4, warmup_steps: 20, weight_decay: 0.1, beta1: 0.9, beta2: 0.95, grad_clip: 1,
  alpha: 0.8, temperature: 2, temperature_schedule: 'constant', temperature_min: 1,
  loss: 'forward_kl', jsd_beta: 0.5, skew_lambda: 0.1, topk_mode: 'tail',
  eval_every: 0, eval_windows: 64, early_stopping_patience: 0, save_every: 0, dropout: 0, backend: 'auto', resume: false, overwrite: false, quiet: false,
  safetensors_dtype: 'F32', max_shard_size: DEFAULT_MAX_SHARD_SIZE, recompute: 'auto', memory_budget: null,
  feature_layers: '', feature_beta: 0.01, feature_loss: 'mse',
  qat: 'none', qat_start: 0, qat_block_size: 32, ensemble: '',
};

/** Default student (`kd train`, `kd sweep`): ~1M parameters with the tokenizer's vocabulary and tied embeddings. */
export const STUDENT_DEFAULTS: TrainConfig = {
  ...TRAIN_DEFAULTS, data: 'runs/logits', out: 'runs/student',
  model: { hidden_size: 128, intermediate_size: 352, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 },
};

const CHECKS: Record<keyof TrainConfig, FieldCheck> = {
  data: optional(isString), prep: isString, out: isString,
  model: checkModelOverrides,
  init_from: optional(isString), seed: isInt(0, 2 ** 32 - 1),
  batch_size: isInt(1, 4096), grad_accum: isInt(1, 4096), epochs: isInt(1, 10000), max_steps: isInt(0),
  lr: isNum(0, 10), min_lr: isNum(0, 10), warmup_steps: isInt(0), weight_decay: isNum(0, 10),
  beta1: isNum(0, 1), beta2: isNum(0, 1), grad_clip: isNum(0, 1e6),
  alpha: isNum(0, 1), temperature: isNum(0.05, 100), temperature_schedule: isOneOf(...TEMPERATURE_SCHEDULES),
  temperature_min: isNum(0.05, 100), loss: isString,
  jsd_beta: (v) => (typeof v === 'number' && v > 0 && v < 1 ? undefined : "must be a number in (0, 1) (JSD(β) tends to 0 at both ends: for β → 0 use loss 'forward_kl', for β → 1 'reverse_kl')"),
  skew_lambda: (v) => (typeof v === 'number' && v >= 0 && v < 1 ? undefined : 'must be a number in [0, 1) (λ = 0 is forward KL)'),
  topk_mode: isOneOf('tail', 'renormalize'),
  eval_every: isInt(0), eval_windows: isInt(0), early_stopping_patience: isInt(0), save_every: isInt(0),
  dropout: (v) => (typeof v === 'number' && v >= 0 && v < 1 ? undefined : 'must be a number in [0, 1)'), backend: isOneOf('auto', ...BACKENDS), resume: isBool, overwrite: isBool, quiet: isBool,
  safetensors_dtype: isOneOf(...SAFETENSORS_DTYPES), max_shard_size: isByteSize, recompute: isOneOf('auto', 'on', 'off'), memory_budget: optional(isByteSize),
  feature_layers: (v) => (typeof v === 'string' && /^\s*(\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*)?$/.test(v) ? undefined : 'must be student:teacher layer pairs, e.g. "1:2,2:4" ("" = off)'),
  feature_beta: isNum(0, 1e6), feature_loss: isOneOf('mse', 'cosine'),
  qat: isOneOf(...QAT_MODES), qat_start: isInt(0),
  qat_block_size: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 16 && (v & (v - 1)) === 0 ? undefined : 'must be a power of two ≥ 16 (MatMulNBits block sizes)'),
  ensemble: (v) => (typeof v === 'string' ? undefined : 'must be dir:weight pairs, e.g. "runs/logits-b:0.5" ("" = one teacher)'),
};

export const TRAIN_KEYS = Object.keys(CHECKS) as (keyof TrainConfig)[];

/** Defaults + `partial`, validated. @throws Error naming `source` on unknown keys or bad values. */
export function resolveTrainConfig(partial: Record<string, unknown>, source = 'train config', defaults = TRAIN_DEFAULTS): TrainConfig {
  const cfg = resolveConfig(defaults, CHECKS, partial, source);
  if (cfg.temperature_schedule !== 'constant' && cfg.temperature_min > cfg.temperature) {
    // Blame --temperature only when a flag set it and not temperature_min (the file's value is then the other side).
    const origins = flagOrigins(partial);
    const why = `(the '${cfg.temperature_schedule}' schedule decays from temperature to temperature_min)`;
    throw new Error(origins.temperature && !origins.temperature_min
      ? `--temperature = ${cfg.temperature} is below temperature_min = ${cfg.temperature_min} ${why}`
      : `${blame(partial, 'temperature_min', source)} = ${cfg.temperature_min} is above temperature = ${cfg.temperature} ${why}`);
  }
  return cfg;
}
