/**
 * teacher: `kd teacher train` trains a Llama teacher with cross-entropy on the prep windows;
 * `kd teacher export` writes a checkpoint as ONNX in one of the IO conventions users' teachers
 * come in (Optimum plain / with past / merged, onnxruntime-genai), at fp32, fp16 or int4
 * (MatMulNBits), optionally with external data; `kd teacher compare A.onnx B.onnx` measures how
 * far two exports' predictions are apart on the validation windows; `kd teacher ship` stores a
 * trained checkpoint compactly (fp16 safetensors + config + tokenizer + training log) for
 * committing under data/.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { copyFileDurable } from '../lib/util/fs.js';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isBool, isInt, isOneOf, isString, readConfigFile, resolveConfig, mergeConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { compareOnnx, formatComparison, OnnxCompareResult } from '../lib/metrics/onnx-compare.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { Device, ONNX_DTYPES, ONNX_IOS, OnnxDtype, OnnxIo, writeLlamaOnnx } from '../lib/onnx/index.js';
import { refuseExisting, sideFiles, writePlanned } from '../lib/onnx/export-files.js';
import { checkSelfContainedSize, exportWeightBytes } from '../lib/onnx/external-data.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { resolveTrainConfig, TRAIN_DEFAULTS, TRAIN_KEYS, TrainConfig } from '../lib/train/config.js';
import { trainWindowData, validationData } from '../lib/train/data.js';
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
    train: trainWindowData(cfg.prep), // positional reads: a train.bin of any size; the prep's token noise on the inputs
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
  /** fp32 | fp16 (fp16 weights and activations, fp16 logits) | int8 (per-channel DequantizeLinear → MatMul linears, fp32 rest) | int4 (MatMulNBits linears, fp32 rest). */
  dtype: OnnxDtype;
  /** int4: quantization block along the input dimension (power of two ≥ 16). */
  block_size: number;
  /** int4: symmetric blocks (no zero points) instead of the default asymmetric ones (a zero point per block). */
  symmetric: boolean;
  /** Weights in `<out>.data` (ONNX external data) instead of inside the .onnx file. */
  external_data: boolean;
  /** Replace existing output files (the .onnx, its .data, a different config.json/tokenizer.json beside it). */
  overwrite: boolean;
}

export const EXPORT_DEFAULTS: ExportConfig = {
  checkpoint: 'data/teacher', out: 'runs/teacher/model.onnx', io: 'optimum', dtype: 'fp32', block_size: 32, symmetric: false, external_data: false, overwrite: false,
};
const EXPORT_CHECKS = {
  checkpoint: isString, out: isString, io: isOneOf(...ONNX_IOS), dtype: isOneOf(...ONNX_DTYPES), block_size: isInt(16, 4096), symmetric: isBool, external_data: isBool, overwrite: isBool,
};

/** What {@link runExport} returns: the config used, the bytes written and the files beside the model. */
export type ExportResult = ExportConfig & { bytes: number; data_bytes: number; config: string; tokenizer: string | null };

/**
 * Writes the checkpoint as ONNX at `out`, with `config.json` and the checkpoint's `tokenizer.json`
 * beside it (the tokenizer's sha256 also goes into the model's metadata_props), so precompute
 * and eval can check a prep's seq_len and tokenizer against the teacher.
 * @throws Error "<path>: exists; --overwrite replaces it" for an existing output (nothing written);
 *   the checkpoint loader's and exporter's errors.
 */
export function runExport(partial: Record<string, unknown>, source = 'export config'): ExportResult {
  const cfg = resolveConfig<ExportConfig>(EXPORT_DEFAULTS, EXPORT_CHECKS, partial, source);
  const { cfg: modelCfg, weights } = loadCheckpoint(cfg.checkpoint);
  const side = sideFiles(cfg.out, cfg.checkpoint, modelCfg, cfg.dtype === 'fp16' ? 'float16' : 'float32');
  refuseExisting([{ path: cfg.out }, ...(cfg.external_data ? [{ path: `${cfg.out}.data` }] : []), ...side.files], cfg.overwrite);
  if (!cfg.external_data) checkSelfContainedSize(cfg.out, exportWeightBytes(weights, cfg.dtype)); // before anything is written
  if (!side.tokenizer) process.stderr.write(`kd: ${join(cfg.checkpoint, 'tokenizer.json')}: not found; the export carries no tokenizer, so precompute cannot check that a prep uses the teacher's\n`);
  mkdirSync(dirname(cfg.out), { recursive: true });
  writePlanned(side.files); // before the model: a model that is there has its config beside it
  const sizes = writeLlamaOnnx(cfg.out, modelCfg, weights, {
    io: cfg.io, dtype: cfg.dtype, blockSize: cfg.block_size, symmetric: cfg.symmetric, externalData: cfg.external_data, source: cfg.checkpoint,
    tokenizerSha256: side.tokenizer && createHash('sha256').update(side.tokenizer).digest('hex'),
  });
  return { ...cfg, bytes: sizes.modelBytes, data_bytes: sizes.dataBytes, config: side.files[0].path, tokenizer: side.files[1]?.path ?? null };
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

function exportSummary(r: ExportResult): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const quant = r.dtype === 'int4' ? ` (MatMulNBits, block ${r.block_size}, ${r.symmetric ? 'symmetric' : 'asymmetric'})` : r.dtype === 'int8' ? ' (per-channel DequantizeLinear → MatMul)' : '';
  const data = r.external_data ? ` + ${r.out}.data ${mib(r.data_bytes)}` : '';
  return `teacher export: ${r.out} ${mib(r.bytes)}${data}, ${r.dtype}${quant}, ${r.io} IO; beside it ${[r.config, r.tokenizer].filter(Boolean).join(', ')}\n`;
}

const configOption = { type: 'string', describe: 'JSON or YAML file of config keys (snake_case); flags override it' } as const;
const jsonOption = { type: 'boolean', describe: 'print the result as JSON on stdout' } as const;
const fromConfig = (argv: Args) => (argv.config ? readConfigFile(argv.config) : {});

/** `kd teacher train`: the student's training options, with the teacher's defaults. */
const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'CE training of the teacher on the prep windows',
  builder: (y: Argv<object>) => trainOptions(y, TEACHER_DEFAULTS) as Argv<Args>,
  handler: async (argv) => {
    const summary = await runTrain(mergeConfig(fromConfig(argv), flagsToConfig(argv, TRAIN_KEYS)), argv.config ?? 'teacher config');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};

/** `kd teacher export`. */
const exportCommand: CommandModule<object, Args> = {
  command: 'export',
  describe: 'Write a checkpoint as ONNX (+ config.json and tokenizer.json beside it)',
  builder: (y: Argv<object>) => y
    .option('config', configOption)
    .option('checkpoint', { type: 'string', describe: `HF checkpoint directory (default ${EXPORT_DEFAULTS.checkpoint})` })
    .option('out', { type: 'string', describe: `output .onnx file; config.json and tokenizer.json are written beside it (default ${EXPORT_DEFAULTS.out})` })
    .option('io', { choices: ONNX_IOS, describe: `graph IO — optimum (input_ids, attention_mask, position_ids → logits), optimum-kv (+ past_key_values/present), merged (+ use_cache_branch), genai (no position_ids; + past/present) (default ${EXPORT_DEFAULTS.io})` })
    .option('dtype', { choices: ONNX_DTYPES, describe: `fp32, fp16 (weights and activations), int8 (per-channel DequantizeLinear → MatMul linears), int4 (com.microsoft.MatMulNBits linears); embedding and head fp32 for int8/int4 (default ${EXPORT_DEFAULTS.dtype})` })
    .option('block-size', { type: 'number', describe: `int4: quantization block along the input dimension, power of two ≥ 16 (default ${EXPORT_DEFAULTS.block_size})` })
    .option('symmetric', { type: 'boolean', describe: 'int4: symmetric blocks without zero points (default false: a zero point per block)' })
    .option('external-data', { type: 'boolean', describe: 'weights in <out>.data (ONNX external data) (default false)' })
    .option('overwrite', { type: 'boolean', describe: 'replace existing output files (default: an existing --out is refused)' })
    .option('json', jsonOption) as Argv<Args>,
  handler: (argv) => {
    const r = runExport({ ...fromConfig(argv), ...flagsToConfig(argv, EXPORT_KEYS) }, argv.config ?? 'export config');
    process.stderr.write(exportSummary(r));
    if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
  },
};

/** `kd teacher compare A.onnx B.onnx`. */
const compareCommand: CommandModule<object, Args> = {
  command: 'compare <a> <b>',
  describe: 'Compare two ONNX language models on the validation windows (top-1 agreement, KL(A‖B), perplexities)',
  builder: (y: Argv<object>) => y
    .positional('a', { type: 'string', describe: 'model A (.onnx), e.g. the fp32 export' })
    .positional('b', { type: 'string', describe: 'model B (.onnx), e.g. the int4 export' })
    .option('config', configOption)
    .option('prep', { type: 'string', describe: `prep output directory: the validation windows (default ${COMPARE_DEFAULTS.prep})` })
    .option('batch-size', { type: 'number', describe: `windows per forward (default ${COMPARE_DEFAULTS.batch_size})` })
    .option('max-windows', { type: 'number', describe: 'first N validation windows, 0 = all (default 0)' })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'auto = CUDA when its provider loads, else CPU; cuda = CUDA or an error (default auto)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' })
    .option('json', jsonOption) as Argv<Args>,
  handler: async (argv) => {
    const r = await runCompare(String(argv.a), String(argv.b), { ...fromConfig(argv), ...flagsToConfig(argv, COMPARE_KEYS) }, argv.config ?? 'compare config');
    if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
  },
};

/** `kd teacher ship`. */
const shipCommand: CommandModule<object, Args> = {
  command: 'ship',
  describe: 'Copy a trained checkpoint as fp16 safetensors + config + tokenizer + training log (for data/)',
  builder: (y: Argv<object>) => y
    .option('config', configOption)
    .option('checkpoint', { type: 'string', describe: 'trained checkpoint directory (default runs/teacher)' })
    .option('out', { type: 'string', describe: 'output directory (default data/teacher)' }) as Argv<Args>,
  handler: (argv) => {
    const r = runShip({ ...fromConfig(argv), ...flagsToConfig(argv, ['checkpoint', 'out']) }, argv.config ?? 'ship config');
    process.stderr.write(`teacher ship: ${r.out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB with fp16 weights)\n`);
  },
};

/** `kd teacher <action>`: each action is a subcommand with only its own options (`kd teacher export --help`). */
export const command: CommandModule<object, Args> = {
  command: 'teacher',
  describe: 'Train the teacher (train), write it as ONNX (export), compare two ONNX exports (compare A.onnx B.onnx), or ship it to data/ (ship)',
  builder: (y: Argv<object>) => y
    .command(trainCommand)
    .command(exportCommand)
    .command(compareCommand)
    .command(shipCommand)
    .demandCommand(1, 'name a teacher action: train, export, compare or ship') as Argv<Args>,
  handler: () => undefined, // the subcommands do the work
};
