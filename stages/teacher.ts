/**
 * teacher: `kd teacher train` trains a Llama teacher with cross-entropy on the prep windows;
 * `kd teacher export` writes a checkpoint as ONNX in one of the IO conventions users' teachers
 * come in (Optimum plain / with past / merged, onnxruntime-genai), at fp32, fp16 or int4
 * (MatMulNBits), optionally with external data; `kd teacher compare A.onnx B.onnx` measures how
 * far two exports' predictions are apart on the validation windows; `kd teacher ship` stores a
 * trained checkpoint compactly (fp16 safetensors + config + tokenizer + training log) for
 * committing under data/.
 */
import { existsSync, statSync } from 'node:fs';
import { copyFileDurable } from '../lib/util/fs.js';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isBool, isInt, isOneOf, isString, readConfigFile, resolveConfig, mergeConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { compareOnnx, formatComparison, OnnxCompareResult } from '../lib/metrics/onnx-compare.js';
import { readWindows } from '../lib/data/windows.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { Device, ONNX_DTYPES, ONNX_IOS, OnnxDtype, OnnxIo, writeLlamaOnnx } from '../lib/onnx/index.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { resolveTrainConfig, TRAIN_DEFAULTS, TRAIN_KEYS, TrainConfig } from '../lib/train/config.js';
import { validationData, windowData } from '../lib/train/data.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, TrainSummary } from '../lib/train/trainer.js';
import { trainOptions } from '../lib/cli/train-options.js';

/** Teacher training defaults: CE only (α = 0) on the prep windows; the architecture is in `model`. */
export const TEACHER_DEFAULTS: TrainConfig = {
  ...TRAIN_DEFAULTS, alpha: 0, out: 'runs/teacher', lr: 2e-3, min_lr: 2e-4, warmup_steps: 50, eval_every: 100, eval_windows: 128,
  model: { hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2 },
};

/** Trains the teacher (CE on the windows of `cfg.prep`). */
export async function runTrain(partial: Record<string, unknown>, source = 'teacher config'): Promise<TrainSummary> {
  const cfg = resolveTrainConfig({ ...partial, alpha: partial.alpha ?? 0 }, source, TEACHER_DEFAULTS);
  if (cfg.alpha !== 0) throw new Error(`${source}: a teacher trains on hard targets only (alpha must be 0)`);
  const tokenizerPath = join(cfg.prep, 'tokenizer.json');
  const tokenizer = loadTokenizer(tokenizerPath);
  const summary = await train(cfg, {
    train: windowData(readWindows(cfg.prep, 'train')),
    validation: validationData(cfg.prep),
    tokenizer: tokenizerPath,
    realVocab: tokenizer.vocabSize,
    lossFn: makeLossFn(cfg, tokenizer.vocabSize, []),
    provenance: { role: 'teacher', windows: join(cfg.prep, 'windows.json') },
  });
  if (!cfg.quiet) process.stderr.write(formatTrainSummary('teacher', summary));
  return summary;
}

/** `kd teacher export` options. */
export interface ExportConfig {
  /** HF checkpoint directory (config.json + model.safetensors). */
  checkpoint: string;
  /** Output .onnx path. */
  out: string;
  /** IO convention: optimum | optimum-kv | merged | genai (see lib/onnx/export-llama.ts). */
  io: OnnxIo;
  /** fp32 | fp16 (fp16 weights and activations, fp16 logits) | int4 (MatMulNBits linears, fp32 rest). */
  dtype: OnnxDtype;
  /** int4: quantization block along the input dimension (power of two ≥ 16). */
  block_size: number;
  /** int4: symmetric blocks (no zero points) instead of the default asymmetric ones (a zero point per block). */
  symmetric: boolean;
  /** Weights in `<out>.data` (ONNX external data) instead of inside the .onnx file. */
  external_data: boolean;
}

export const EXPORT_DEFAULTS: ExportConfig = {
  checkpoint: 'data/teacher', out: 'runs/teacher/model.onnx', io: 'optimum', dtype: 'fp32', block_size: 32, symmetric: false, external_data: false,
};
const EXPORT_CHECKS = {
  checkpoint: isString, out: isString, io: isOneOf(...ONNX_IOS), dtype: isOneOf(...ONNX_DTYPES), block_size: isInt(16, 4096), symmetric: isBool, external_data: isBool,
};

/** Writes the checkpoint as ONNX. @returns the config used and the bytes of the .onnx file (+ its data file). */
export function runExport(partial: Record<string, unknown>, source = 'export config'): ExportConfig & { bytes: number; data_bytes: number } {
  const cfg = resolveConfig<ExportConfig>(EXPORT_DEFAULTS, EXPORT_CHECKS, partial, source);
  const { cfg: modelCfg, weights } = loadCheckpoint(cfg.checkpoint);
  const sizes = writeLlamaOnnx(cfg.out, modelCfg, weights, {
    io: cfg.io, dtype: cfg.dtype, blockSize: cfg.block_size, symmetric: cfg.symmetric, externalData: cfg.external_data, source: cfg.checkpoint,
  });
  return { ...cfg, bytes: sizes.modelBytes, data_bytes: sizes.dataBytes };
}

/** `kd teacher compare` options (the two models are positional). */
export interface CompareConfig {
  /** Prep output directory (validation windows). */
  prep: string;
  /** Windows per forward. */
  batch_size: number;
  /** First N validation windows (0 = all). */
  max_windows: number;
  /** auto: CUDA when its provider loads, else CPU with a message; cuda: CUDA or an error. */
  device: Device;
  quiet: boolean;
}

export const COMPARE_DEFAULTS: CompareConfig = { prep: 'runs/prep', batch_size: 8, max_windows: 0, device: 'auto', quiet: false };
const COMPARE_CHECKS = { prep: isString, batch_size: isInt(1, 4096), max_windows: isInt(0), device: isOneOf('auto', 'cpu', 'cuda'), quiet: isBool };

/** Compares two ONNX LMs on the validation windows (top-1 agreement, KL(A‖B), perplexities). */
export async function runCompare(a: string, b: string, partial: Record<string, unknown>, source = 'compare config'): Promise<OnnxCompareResult> {
  const cfg = resolveConfig<CompareConfig>(COMPARE_DEFAULTS, COMPARE_CHECKS, partial, source);
  let progress: ReturnType<typeof createProgress> | undefined;
  const result = await compareOnnx(a, b, {
    prep: cfg.prep, batchSize: cfg.batch_size, maxWindows: cfg.max_windows, device: cfg.device,
    onProgress: (done, total) => {
      progress ??= createProgress('teacher compare', total, 'windows', cfg.quiet);
      progress.update(done);
    },
  });
  progress?.stop();
  if (!cfg.quiet) process.stderr.write(formatComparison(result));
  return result;
}

/**
 * Copies a trained checkpoint to `out` as fp16 safetensors with config.json, tokenizer.json and the
 * training log (train.json, metrics.jsonl). @returns total bytes written.
 */
export function runShip(partial: Record<string, unknown>, source = 'ship config'): { out: string; bytes: number } {
  const cfg = resolveConfig({ checkpoint: 'runs/teacher', out: 'data/teacher' }, { checkpoint: isString, out: isString }, partial, source);
  const { cfg: modelCfg, weights } = loadCheckpoint(cfg.checkpoint);
  saveCheckpoint(cfg.out, modelCfg, weights, { dtype: 'F16', tokenizer: join(cfg.checkpoint, 'tokenizer.json') });
  for (const f of ['train.json', 'metrics.jsonl']) {
    if (existsSync(join(cfg.checkpoint, f))) copyFileDurable(join(cfg.checkpoint, f), join(cfg.out, f));
  }
  const bytes = ['config.json', 'model.safetensors', 'tokenizer.json', 'train.json', 'metrics.jsonl']
    .filter((f) => existsSync(join(cfg.out, f))).reduce((n, f) => n + statSync(join(cfg.out, f)).size, 0);
  return { out: cfg.out, bytes };
}

export function formatTrainSummary(role: string, s: TrainSummary): string {
  return [
    `${role} trained: ${s.steps} steps, ${s.tokens_seen.toLocaleString('en-US')} tokens in ${s.seconds.toFixed(0)} s (${s.tokens_per_s.toFixed(0)} tokens/s, backend ${s.backend})`,
    `  parameters ${s.parameters.toLocaleString('en-US')}, final train loss ${s.final_train_loss.toFixed(4)}, validation loss ${s.val_loss.toFixed(4)} (ppl ${s.val_ppl.toFixed(2)})`,
    `  checkpoint: ${s.out}`, '',
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

const EXPORT_KEYS = Object.keys(EXPORT_CHECKS), COMPARE_KEYS = Object.keys(COMPARE_CHECKS);

function exportSummary(r: ReturnType<typeof runExport>): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const quant = r.dtype === 'int4' ? ` (MatMulNBits, block ${r.block_size}, ${r.symmetric ? 'symmetric' : 'asymmetric'})` : '';
  const data = r.external_data ? ` + ${r.out}.data ${mib(r.data_bytes)}` : '';
  return `teacher export: ${r.out} ${mib(r.bytes)}${data}, ${r.dtype}${quant}, ${r.io} IO\n`;
}

export const command: CommandModule<object, Args> = {
  command: 'teacher <action> [models..]',
  describe: 'Train the teacher (train), write it as ONNX (export), compare two ONNX exports (compare A.onnx B.onnx), or ship it to data/ (ship)',
  builder: (y: Argv<object>) => trainOptions(y
    .positional('action', { choices: ['train', 'export', 'compare', 'ship'] as const, describe: 'train: CE training on the prep windows; export: checkpoint → ONNX; compare: two .onnx on the validation windows; ship: checkpoint → fp16 copy for data/' })
    .positional('models', { type: 'string', array: true, describe: 'compare: the two .onnx files A and B' })
    .option('checkpoint', { type: 'string', describe: 'export/ship: HF checkpoint directory (default data/teacher for export, runs/teacher for ship)' })
    .option('io', { choices: ONNX_IOS, describe: `export: graph IO — optimum (input_ids, attention_mask, position_ids → logits), optimum-kv (+ past_key_values/present), merged (+ use_cache_branch), genai (no position_ids; + past/present) (default ${EXPORT_DEFAULTS.io})` })
    .option('dtype', { choices: ONNX_DTYPES, describe: `export: fp32, fp16 (weights and activations), int4 (com.microsoft.MatMulNBits linears; embedding and head fp32) (default ${EXPORT_DEFAULTS.dtype})` })
    .option('block-size', { type: 'number', describe: `export int4: quantization block along the input dimension, power of two ≥ 16 (default ${EXPORT_DEFAULTS.block_size})` })
    .option('symmetric', { type: 'boolean', describe: 'export int4: symmetric blocks without zero points (default false: a zero point per block)' })
    .option('external-data', { type: 'boolean', describe: 'export: weights in <out>.data (ONNX external data) (default false)' })
    .option('max-windows', { type: 'number', describe: 'compare: first N validation windows, 0 = all (default 0); --batch-size windows per forward (default 8)' })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'compare: auto = CUDA when its provider loads, else CPU; cuda = CUDA or an error (default auto)' }), TEACHER_DEFAULTS) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const models = (argv.models as string[] | undefined) ?? [];
    if (argv.action !== 'compare' && models.length) throw new Error(`teacher ${String(argv.action)}: unexpected argument(s) ${models.join(' ')}`);
    if (argv.action === 'ship') {
      const r = runShip({ ...fromFile, ...flagsToConfig(argv, ['checkpoint', 'out']) }, argv.config ?? 'ship config');
      process.stderr.write(`teacher ship: ${r.out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB with fp16 weights)\n`);
      return;
    }
    if (argv.action === 'export') {
      const r = runExport({ ...fromFile, ...flagsToConfig(argv, EXPORT_KEYS) }, argv.config ?? 'export config');
      process.stderr.write(exportSummary(r));
      if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    if (argv.action === 'compare') {
      if (models.length !== 2) throw new Error(`teacher compare: give two .onnx files (A and B), got ${models.length}`);
      const r = await runCompare(models[0], models[1], { ...fromFile, ...flagsToConfig(argv, COMPARE_KEYS) }, argv.config ?? 'compare config');
      if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const summary = await runTrain(mergeConfig(fromFile, flagsToConfig(argv, TRAIN_KEYS)), argv.config ?? 'teacher config');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
