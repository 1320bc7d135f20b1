/**
 * export: a trained student checkpoint → ONNX (same IO as the teacher, through exportLlamaOnnx:
 * fp32, fp16, int8 weight-only per channel (DequantizeLinear → MatMul) or int4 weight-only MatMulNBits) and HF safetensors (config.json, model.safetensors
 * in F32 or F16, tokenizer.json).
 *
 *   <out>/onnx/model.onnx (+ config.json, tokenizer.json beside it, so `kd eval` counts parameters
 *   and `kd prep --tokenizer` finds the tokenizer)
 *   <out>/hf/config.json, model.safetensors, tokenizer.json
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isBool, isInt, isOneOf, isString, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { countParameters } from '../lib/model/config.js';
import { ONNX_DTYPES, ONNX_IOS, OnnxDtype, OnnxIo, writeLlamaOnnx } from '../lib/onnx/index.js';
import { checkSelfContainedSize, exportWeightBytes } from '../lib/onnx/external-data.js';
import { SAFETENSORS_DTYPES, SafetensorsDtype } from '../lib/model/safetensors.js';
import { DEFAULT_MAX_SHARD_SIZE, INDEX_FILE, isByteSize, parseByteSize, planShards } from '../lib/model/sharded.js';
import { refuseExisting, sideFiles, writePlanned } from '../lib/onnx/export-files.js';
import { qatExportMismatch, TrainedQat } from '../lib/quant/qat.js';
import { readJson } from '../lib/util/fs.js';

export interface StudentExportConfig {
  /** Trained student checkpoint directory (config.json, model.safetensors, tokenizer.json). */
  checkpoint: string;
  /** Output directory (onnx/ and hf/ inside). */
  out: string;
  /** ONNX weights: fp32, fp16, int8 weight-only per output channel (QDQ), or int4 weight-only (MatMulNBits). */
  dtype: OnnxDtype;
  /** ONNX graph IO (default optimum, as the teacher). */
  io: OnnxIo;
  /** int4 quantization block along the input dimension. */
  block_size: number;
  /** int4 without zero points. */
  symmetric: boolean;
  /** safetensors dtype of the HF copy (BF16 rounds to nearest even; a BF16 checkpoint saved as BF16 is bit-exact). */
  safetensors_dtype: SafetensorsDtype;
  /** Shard the HF copy above this size ("5GB" = 5·10⁹ bytes as transformers, "500MB", "2GiB" or bytes). */
  max_shard_size: number | string;
  /** ONNX weights in model.onnx.data (external data): needed above protobuf's 2 GiB. */
  external_data: boolean;
  /** Replace existing output files (default: any existing output is refused before anything is written). */
  overwrite: boolean;
}

export const STUDENT_EXPORT_DEFAULTS: StudentExportConfig = {
  checkpoint: 'runs/demo/distilled', out: 'runs/export', dtype: 'fp32', io: 'optimum', block_size: 32, symmetric: false, safetensors_dtype: 'F32', max_shard_size: DEFAULT_MAX_SHARD_SIZE, external_data: false, overwrite: false,
};

const CHECKS = {
  checkpoint: isString, out: isString, dtype: isOneOf(...ONNX_DTYPES), io: isOneOf(...ONNX_IOS), block_size: isInt(16, 4096), symmetric: isBool,
  safetensors_dtype: isOneOf(...SAFETENSORS_DTYPES), max_shard_size: isByteSize, external_data: isBool, overwrite: isBool,
};

export interface StudentExportResult {
  checkpoint: string;
  parameters: number;
  onnx: { path: string; dtype: OnnxDtype; io: OnnxIo; bytes: number };
  /** The checkpoint's quantization-aware training (from its train.json), when it had one. */
  qat?: TrainedQat & { warning?: string };
  safetensors: { dir: string; dtype: SafetensorsDtype; bytes: number; files: string[] };
}

/**
 * Writes the ONNX and the HF safetensors copies of a student checkpoint.
 * @throws Error "<path>: exists; --overwrite replaces it" for any existing output file (checked
 *   before anything is written); the checkpoint loader's and exporter's errors.
 */
export function run(partial: Record<string, unknown>, source = 'export config'): StudentExportResult {
  const cfg = resolveConfig<StudentExportConfig>(STUDENT_EXPORT_DEFAULTS, CHECKS, partial, source);
  const { cfg: model, weights } = loadCheckpoint(cfg.checkpoint);
  const qat = trainedQat(cfg.checkpoint, cfg);
  if (qat?.warning) process.stderr.write(`kd: warning: ${qat.warning}\n`);
  const onnxDir = join(cfg.out, 'onnx'), hfDir = join(cfg.out, 'hf');
  const onnxPath = join(onnxDir, 'model.onnx');
  const side = sideFiles(onnxPath, cfg.checkpoint, model, cfg.dtype === 'fp16' ? 'float16' : 'float32');
  const maxShardSize = parseByteSize(cfg.max_shard_size, '--max-shard-size');
  const shards = planShards(weights, cfg.safetensors_dtype, maxShardSize).map((s) => s.file);
  const hfFiles = ['config.json', ...shards, ...(shards.length > 1 ? [INDEX_FILE] : []), ...(side.tokenizer ? ['tokenizer.json'] : [])].map((f) => ({ path: join(hfDir, f) }));
  refuseExisting([{ path: onnxPath }, ...(cfg.external_data ? [{ path: `${onnxPath}.data` }] : []), ...side.files, ...hfFiles], cfg.overwrite);
  if (!cfg.external_data) checkSelfContainedSize(onnxPath, exportWeightBytes(weights, cfg.dtype)); // before anything is written
  mkdirSync(onnxDir, { recursive: true });
  writePlanned(side.files);
  const sizes = writeLlamaOnnx(onnxPath, model, weights, {
    dtype: cfg.dtype, io: cfg.io, blockSize: cfg.block_size, symmetric: cfg.symmetric, externalData: cfg.external_data, source: cfg.checkpoint,
    tokenizerSha256: side.tokenizer && createHash('sha256').update(side.tokenizer).digest('hex'),
  });
  const tokenizer = join(cfg.checkpoint, 'tokenizer.json');
  const hf = saveCheckpoint(hfDir, model, weights, { dtype: cfg.safetensors_dtype, maxShardSize, tokenizer: side.tokenizer ? tokenizer : undefined });
  return {
    checkpoint: cfg.checkpoint, parameters: countParameters(model),
    onnx: { path: onnxPath, dtype: cfg.dtype, io: cfg.io, bytes: sizes.modelBytes + sizes.dataBytes }, ...(qat ? { qat } : {}),
    safetensors: { dir: hfDir, dtype: cfg.safetensors_dtype, bytes: hf.bytes, files: hf.files },
  };
}

/** QAT settings of the run that wrote `checkpoint` (its train.json) and whether `cfg` exports what it trained. */
function trainedQat(checkpoint: string, cfg: StudentExportConfig): (TrainedQat & { warning?: string }) | undefined {
  const path = join(checkpoint, 'train.json');
  const config = existsSync(path) ? (readJson(path) as { config?: Partial<TrainedQat> }).config : undefined;
  if (!config?.qat || config.qat === 'none') return undefined;
  const trained = { qat: config.qat, qat_block_size: config.qat_block_size ?? 32 };
  const warning = qatExportMismatch(trained, cfg.dtype, cfg.block_size, cfg.symmetric);
  return { ...trained, ...(warning ? { warning } : {}) };
}

/** One summary line. */
export function summary(r: StudentExportResult): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `export: ${r.checkpoint} (${(r.parameters / 1e6).toFixed(2)} M params) → ${r.onnx.path} ${mib(r.onnx.bytes)} ${r.onnx.dtype}, ${r.onnx.io} IO; ${r.safetensors.dir}/${r.safetensors.files.length > 1 ? `${r.safetensors.files.length - 1} shards` : 'model.safetensors'} ${mib(r.safetensors.bytes)} ${r.safetensors.dtype}\n`;
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'export',
  describe: 'Write a trained student checkpoint as ONNX (fp32/fp16/int8/int4, teacher IO) and as HF safetensors',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('checkpoint', { type: 'string', describe: `student checkpoint directory (default ${STUDENT_EXPORT_DEFAULTS.checkpoint})` })
    .option('out', { type: 'string', describe: `output directory: onnx/model.onnx and hf/ (default ${STUDENT_EXPORT_DEFAULTS.out})` })
    .option('dtype', { choices: ONNX_DTYPES, describe: 'ONNX weights: fp32, fp16 (weights and activations), int8 (per-channel DequantizeLinear → MatMul linears), int4 (MatMulNBits weight-only linears) (default fp32)' })
    .option('io', { choices: ONNX_IOS, describe: 'ONNX graph IO, as kd teacher export (default optimum)' })
    .option('block-size', { type: 'number', describe: 'int4: quantization block, power of two ≥ 16 (default 32)' })
    .option('symmetric', { type: 'boolean', describe: 'int4: symmetric blocks without zero points (default false)' })
    .option('safetensors-dtype', { choices: SAFETENSORS_DTYPES, describe: 'dtype of hf/model.safetensors (default F32)' })
    .option('max-shard-size', { type: 'string', describe: 'shard hf/ above this size with model.safetensors.index.json: 5GB (= 5·10⁹ bytes, as transformers), 500MB, 2GiB or bytes (default 5GB)' })
    .option('external-data', { type: 'boolean', describe: 'ONNX weights in onnx/model.onnx.data (external data), needed above 2 GiB (default false)' })
    .option('overwrite', { type: 'boolean', describe: 'replace existing output files (default: an existing output is refused)' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' }) as Argv<Args>,
  handler: (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const r = run({ ...fromFile, ...flagsToConfig(argv, Object.keys(CHECKS)) }, argv.config ?? 'export config');
    process.stderr.write(summary(r));
    if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
  },
};
