/**
 * precompute: run the ONNX teacher once over the training windows and store its top-k soft labels
 * (ids, z − max z as fp16, log_z at every stored temperature) in Parquet shards + manifest.json
 * (DESIGN §3.2). The graph gets TopK and normaliser outputs first (DESIGN §3.4), so the full
 * [B, L, V] logits never leave onnxruntime.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { FieldCheck, flagsToConfig, isBool, isInt, isOneOf, isString, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { readWindows, WindowSet } from '../lib/data/windows.js';
import { addTopKOutputs, readOnnx, vocabSizeOf } from '../lib/onnx/index.js';
import { openOnnxSession, runTopK, OnnxSession } from '../lib/onnx/session.js';
import { idDtypeFor, LogitManifest, LogitRow, ShardEntry, shardFileName, writeManifest, writeShard } from '../lib/shards/index.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { sha256 } from '../lib/util/fs.js';
import { TOOL_VERSION } from '../lib/cli/version.js';

export interface PrecomputeConfig {
  /** Teacher ONNX file (decoder-only LM with a `logits` output). */
  teacher: string;
  /** Prep output directory: windows and tokenizer.json. */
  prep: string;
  /** Output directory of the logit dataset. */
  out: string;
  /** Ids stored per position. */
  k: number;
  /** Temperatures whose normaliser log_z is stored. */
  temperatures: number[];
  /** Windows per teacher forward. */
  batch_size: number;
  /** Windows per shard file. */
  rows_per_shard: number;
  /** Only the first N training windows (0 = all). */
  max_windows: number;
  /** auto: CUDA when its provider loads, else CPU. */
  device: 'auto' | 'cpu' | 'cuda';
  quiet: boolean;
}

export const PRECOMPUTE_DEFAULTS: PrecomputeConfig = {
  teacher: 'runs/teacher/model.onnx', prep: 'runs/prep', out: 'runs/logits', k: 32,
  temperatures: [1, 1.5, 2, 2.5, 3, 3.5, 4], batch_size: 8, rows_per_shard: 1024, max_windows: 0, device: 'auto', quiet: false,
};

const CHECKS: Record<keyof PrecomputeConfig, FieldCheck> = {
  teacher: isString, prep: isString, out: isString, k: isInt(1, 1 << 20),
  temperatures: (v) => (Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === 'number' && t > 0) ? undefined : 'must be a non-empty list of numbers > 0'),
  batch_size: isInt(1, 4096), rows_per_shard: isInt(1), max_windows: isInt(0), device: isOneOf('auto', 'cpu', 'cuda'), quiet: isBool,
};

export interface PrecomputeSummary {
  out: string;
  windows: number;
  positions: number;
  shards: number;
  bytes: number;
  bytes_per_position: number;
  execution_provider: string;
  seconds: number;
  tokens_per_s: number;
}

/** Runs precompute; see the module comment. */
export async function run(partial: Record<string, unknown>, source = 'precompute config'): Promise<PrecomputeSummary> {
  const started = performance.now();
  const cfg = resolveConfig(PRECOMPUTE_DEFAULTS, CHECKS, partial, source);
  const windows = readWindows(cfg.prep, 'train');
  const tokenizer = loadTokenizer(join(cfg.prep, 'tokenizer.json'));
  const teacherBytes = readOnnx(cfg.teacher);
  const vocab = vocabSizeOf(teacherBytes, cfg.teacher);
  if (vocab < tokenizer.vocabSize) {
    throw new Error(`${cfg.teacher}: teacher vocabulary (${vocab}) is smaller than the tokenizer's (${tokenizer.vocabSize}, ${tokenizer.path})`);
  }
  if (cfg.k > tokenizer.vocabSize) throw new Error(`${source}: k = ${cfg.k} is larger than the vocabulary (${tokenizer.vocabSize})`);
  const graph = addTopKOutputs(teacherBytes, { k: cfg.k, temperatures: cfg.temperatures, source: cfg.teacher });
  const session = await openOnnxSession(graph, { device: cfg.device, source: cfg.teacher });
  const n = cfg.max_windows > 0 ? Math.min(cfg.max_windows, windows.rows) : windows.rows;
  // A manifest is written last; remove an old one so a half-rewritten directory never looks complete.
  mkdirSync(cfg.out, { recursive: true });
  rmSync(join(cfg.out, 'manifest.json'), { force: true });
  const layout = { seqLen: windows.seqLen, k: cfg.k, numTemps: cfg.temperatures.length, idDtype: idDtypeFor(tokenizer.vocabSize), valueDtype: 'float16' as const };
  const progress = createProgress('precompute', n * windows.seqLen, 'tokens', cfg.quiet);
  const shards: ShardEntry[] = [];
  for (let start = 0, index = 0; start < n; start += cfg.rows_per_shard, index++) {
    const end = Math.min(n, start + cfg.rows_per_shard);
    const rows = await teacherRows(session, windows, start, end, cfg.batch_size, (done) => progress.update(done * windows.seqLen));
    const file = shardFileName(index);
    const written = await writeShard(join(cfg.out, file), rows, layout);
    shards.push({ file, rows: written.rows, first_sample_id: String(start), bytes: written.bytes, sha256: written.sha256 });
  }
  progress.stop();
  const bytes = shards.reduce((s, e) => s + e.bytes, 0);
  const manifest: LogitManifest = {
    format: 'kd-logits', version: 1,
    teacher: { path: cfg.teacher, sha256: sha256(teacherBytes), dtype: 'fp32', execution_provider: session.executionProvider, input_names: session.inputNames, output_names: ['logits'] },
    tokenizer: { sha256: tokenizer.sha256, vocab_size: vocab, real_vocab_size: tokenizer.vocabSize },
    windows: { source: join(cfg.prep, 'windows.json'), sha256: windows.meta.splits.train.sha256 },
    seq_len: windows.seqLen, k: cfg.k, mode: 'topk', temperatures: cfg.temperatures,
    encoding: { ids: layout.idDtype, values: layout.valueDtype, layout: 'packed-le' },
    shards, totals: { rows: n, positions: n * windows.seqLen, bytes }, tool_version: TOOL_VERSION, created_at: new Date().toISOString(),
  };
  await writeManifest(cfg.out, manifest);
  const seconds = (performance.now() - started) / 1000;
  const summary: PrecomputeSummary = {
    out: cfg.out, windows: n, positions: n * windows.seqLen, shards: shards.length, bytes,
    bytes_per_position: bytes / (n * windows.seqLen), execution_provider: session.executionProvider, seconds, tokens_per_s: (n * windows.seqLen) / seconds,
  };
  if (!cfg.quiet) process.stderr.write(formatSummary(summary));
  return summary;
}

/** Teacher top-k rows of windows [start, end), in batches; `onDone(windowsDone)` reports progress. */
async function teacherRows(h: OnnxSession, w: WindowSet, start: number, end: number, batchSize: number, onDone: (n: number) => void): Promise<LogitRow[]> {
  const L = w.seqLen, rows: LogitRow[] = [];
  for (let b0 = start; b0 < end; b0 += batchSize) {
    const B = Math.min(batchSize, end - b0);
    const ids = new BigInt64Array(B * L);
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) ids[b * L + t] = BigInt(w.ids[(b0 + b) * (L + 1) + t]);
    let r;
    try { r = await runTopK(h, ids, B, L); } catch (e) {
      throw new Error(`${(e as Error).message.replace(/batch row (\d+)/, (_, i) => `window ${b0 + Number(i)}`)}`);
    }
    const { k, numTemperatures: T } = r;
    for (let b = 0; b < B; b++) {
      const row = w.ids.subarray((b0 + b) * (L + 1), (b0 + b + 1) * (L + 1));
      rows.push({
        sample_id: BigInt(b0 + b),
        input_ids: Uint32Array.from(row.subarray(0, L)),
        target_ids: Int32Array.from(row.subarray(1)),
        topk_ids: Uint32Array.from(r.topkIds.subarray(b * L * k, (b + 1) * L * k)),
        topk_logits: r.topkLogits.slice(b * L * k, (b + 1) * L * k),
        log_z: r.logZ.slice(b * L * T, (b + 1) * L * T),
      });
    }
    onDone(b0 + B);
  }
  return rows;
}

function formatSummary(s: PrecomputeSummary): string {
  return [
    `precompute: ${s.windows} windows (${s.positions.toLocaleString('en-US')} positions) in ${s.seconds.toFixed(1)} s, ${s.tokens_per_s.toFixed(0)} tokens/s on ${s.execution_provider}`,
    `  ${s.shards} shard(s), ${(s.bytes / 2 ** 20).toFixed(1)} MiB, ${s.bytes_per_position.toFixed(1)} bytes/position → ${s.out}`, '',
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'precompute',
  describe: 'Run the ONNX teacher over the training windows and store its top-k soft labels as Parquet shards',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('teacher', { type: 'string', describe: `teacher .onnx (default ${PRECOMPUTE_DEFAULTS.teacher})` })
    .option('prep', { type: 'string', describe: `prep output directory (default ${PRECOMPUTE_DEFAULTS.prep})` })
    .option('out', { type: 'string', describe: `logit dataset directory (default ${PRECOMPUTE_DEFAULTS.out})` })
    .option('k', { type: 'number', describe: `ids stored per position (default ${PRECOMPUTE_DEFAULTS.k})` })
    .option('temperatures', { type: 'array', number: true, describe: `temperatures whose log_z is stored (default ${PRECOMPUTE_DEFAULTS.temperatures.join(' ')})` })
    .option('batch-size', { type: 'number', describe: `windows per teacher forward (default ${PRECOMPUTE_DEFAULTS.batch_size})` })
    .option('rows-per-shard', { type: 'number', describe: `windows per shard file (default ${PRECOMPUTE_DEFAULTS.rows_per_shard})` })
    .option('max-windows', { type: 'number', describe: 'only the first N training windows, 0 = all (default 0)' })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'execution provider: auto = CUDA when it loads, else CPU (default auto)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const summary = await run({ ...fromFile, ...flagsToConfig(argv, Object.keys(CHECKS)) }, argv.config ?? 'precompute config');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
