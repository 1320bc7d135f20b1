/**
 * eval: the seed article's table from measurements — parameters, validation perplexity (token-
 * weighted, DESIGN §5), bits per byte, tokens/s in the same runtime (ONNX Runtime, same batch shape)
 * and memory (weights bytes, peak RSS of a child process per model) for the teacher, the baseline
 * student and the distilled student. Writes report.json, report.md and PNG plots (students'
 * training curves, perplexity bars, and with --data the teacher's top-k mass coverage).
 */
import { cpus, totalmem } from 'node:os';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { FieldCheck, flagsToConfig, isBool, isInt, isOneOf, isString, optional, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { withHfDefaults } from '../lib/model/architectures.js';
import { countParameters, LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { evaluateOnnxIsolated, OnnxEvalResult } from '../lib/metrics/onnx-eval.js';
import { checkContextLength, Device, exportLlamaOnnx, externalDataFiles, parameterCountOf, readOnnx, writeOnnx } from '../lib/onnx/index.js';
import { readJson, writeFileAtomic } from '../lib/util/fs.js';
import { writeChart } from '../lib/metrics/charts.js';
import { perplexityBarsSpec, readCurves, topkMass, topkMassSpec, trainingCurvesSpec, type CurvePoint } from '../lib/metrics/eval-charts.js';
import { readManifest } from '../lib/shards/index.js';

export interface EvalConfig {
  /** Prep output directory (validation windows). */
  prep: string;
  /** Report directory. */
  out: string;
  /**
   * Logit dataset directory: k, the teacher, and the top-k mass coverage plot (default: the
   * dataset the distilled student's train.json names, when it exists).
   */
  data: string | null;
  /** Teacher .onnx. */
  teacher: string | null;
  /** Baseline student checkpoint directory (trained with α = 0). */
  baseline: string | null;
  /** Distilled student checkpoint directory. */
  distilled: string | null;
  /** Windows per forward, the same for every model. */
  batch_size: number;
  /** First N validation windows (0 = all). */
  max_windows: number;
  /**
   * Sliding-window stride over each validation document (windows of seq_len predictions);
   * null = seq_len / 2; 0 = score the packed validation windows instead.
   */
  stride: number | null;
  /** ONNX Runtime device: auto = CUDA when its provider loads, else CPU with a message; cuda = CUDA or an error. */
  device: Device;
  /** Replace the report an --out already holds (report.json / report.md); without it such an --out is refused up front. */
  overwrite: boolean;
  /** No progress bar and no printed table. */
  quiet: boolean;
}

export const EVAL_DEFAULTS: EvalConfig = {
  prep: 'runs/prep', out: 'runs/demo', data: null, teacher: null, baseline: null, distilled: null, batch_size: 8, max_windows: 0, stride: null, device: 'auto', overwrite: false, quiet: false,
};

const CHECKS: Record<keyof EvalConfig, FieldCheck> = {
  prep: isString, out: isString, data: optional(isString), teacher: optional(isString), baseline: optional(isString), distilled: optional(isString),
  batch_size: isInt(1, 4096), max_windows: isInt(0), stride: optional(isInt(0)), device: isOneOf('auto', 'cpu', 'cuda'), overwrite: isBool, quiet: isBool,
};

/** One row of the report. */
export interface ModelReport extends OnnxEvalResult {
  parameters: number;
  weights_bytes: number;
  onnx: string;
  /** From the checkpoint's train.json, when there is one. */
  training?: Record<string, unknown>;
}

export type Report = Record<string, ModelReport | Record<string, unknown>>;

/** The files that make an --out hold an eval report (the plots and onnx/ are rewritten with them). */
const REPORT_FILES = ['report.json', 'report.md'];

/**
 * Refuses, before any model is evaluated, an `out` that cannot take the report: a file (or a path
 * under one), or a directory holding a report already unless `overwrite` (DESIGN §6).
 * @throws Error "<out>: is a file, expected the report directory (--out)" or
 *   "<out>: holds an eval report already (report.json); --overwrite replaces it, or choose another --out".
 */
export function checkReportDir(out: string, overwrite: boolean): void {
  let p = out;
  while (!existsSync(p) && p !== dirname(p)) p = dirname(p);
  if (existsSync(p) && !statSync(p).isDirectory()) throw new Error(`${p}: is a file, expected the report directory (--out)`);
  if (p !== out || overwrite) return;
  const held = REPORT_FILES.filter((f) => existsSync(join(out, f)));
  if (held.length > 0) throw new Error(`${out}: holds an eval report already (${held.join(', ')}); --overwrite replaces it, or choose another --out`);
}

/**
 * Evaluates every model given; see the module comment.
 * @throws Error naming the flag or file: nothing to evaluate, an --out that cannot take the report
 *   (checked first), a missing model, a context shorter than the windows.
 */
export async function run(partial: Record<string, unknown>, source = 'eval config'): Promise<Report> {
  const cfg = resolveConfig(EVAL_DEFAULTS, CHECKS, partial, source);
  const roles = (['teacher', 'baseline', 'distilled'] as const).filter((r) => cfg[r]);
  if (roles.length === 0) throw new Error(`${source}: nothing to evaluate (give --teacher, --baseline and/or --distilled)`);
  checkReportDir(cfg.out, cfg.overwrite);
  const seqLen = readJson<{ seq_len: number }>(join(cfg.prep, 'windows.json'), 'windows.json').seq_len;
  const stride = cfg.stride ?? Math.max(1, Math.floor(seqLen / 2));
  const report: Report = {};
  const progress = createProgress('eval', roles.length, 'models', cfg.quiet);
  const curves: CurvePoint[] = [];
  for (const [i, role] of roles.entries()) {
    const { onnx, parameters, training, metrics } = asOnnx(cfg[role]!, join(cfg.out, 'onnx', `${role}.onnx`));
    checkContextLength(cfg[role]!, seqLen, join(cfg.prep, 'windows.json'));
    const measured = await evaluateOnnxIsolated(onnx, { prep: cfg.prep, batchSize: cfg.batch_size, maxWindows: cfg.max_windows, stride, device: cfg.device });
    report[role] = { parameters, weights_bytes: onnxBytesOnDisk(onnx), onnx, ...measured, ...(training ? { training } : {}) };
    if (metrics) curves.push(...readCurves(metrics, role));
    progress.update(i + 1, `${role} ppl ${measured.ppl.toFixed(2)}`);
  }
  progress.stop();
  mkdirSync(cfg.out, { recursive: true }); // only now: a failed evaluation leaves no output directory behind
  if (!cfg.data) {
    // Default: the logit dataset the distilled student was trained on, when it is still there.
    const trainedOn = ((report.distilled as ModelReport | undefined)?.training as { data?: unknown } | undefined)?.data;
    if (typeof trainedOn === 'string' && existsSync(join(trainedOn, 'manifest.json'))) cfg.data = trainedOn;
  }
  report.conditions = await conditions(cfg, report, stride);
  report.plots = await plots(cfg, report, roles, curves);
  writeFileAtomic(join(cfg.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  const md = markdown(report, roles);
  writeFileAtomic(join(cfg.out, 'report.md'), md);
  if (!cfg.quiet) process.stderr.write(md);
  return report;
}

/** Bytes of a model file plus its external data files. */
function onnxBytesOnDisk(path: string): number {
  return externalDataFiles(readOnnx(path), path).reduce((n, f) => n + statSync(join(dirname(path), f)).size, statSync(path).size);
}

/** An .onnx path as is, or a checkpoint directory exported to `target`. */
function asOnnx(path: string, target: string): { onnx: string; parameters: number; training?: Record<string, unknown>; metrics?: string } {
  if (!existsSync(path)) throw new Error(`${path}: model not found`);
  if (statSync(path).isDirectory()) {
    const { cfg, weights } = loadCheckpoint(path);
    mkdirSync(dirname(target), { recursive: true });
    writeOnnx(target, exportLlamaOnnx(cfg, weights));
    const trainJson = join(path, 'train.json');
    const training = existsSync(trainJson) ? readJson<{ summary: Record<string, unknown>; config: Record<string, unknown> }>(trainJson) : undefined;
    return {
      onnx: target, parameters: countParameters(cfg), metrics: join(path, 'metrics.jsonl'),
      training: training && { ...training.summary, alpha: training.config.alpha, temperature: training.config.temperature, loss: training.config.loss, topk_mode: training.config.topk_mode, data: training.config.data },
    };
  }
  return { onnx: path, parameters: onnxParameters(path) };
}

/**
 * Parameters of the model at `path` (.onnx): from the config.json beside it, with HF's defaults for
 * absent keys (no tie_word_embeddings means untied, as in transformers), else counted in the graph.
 */
export function onnxParameters(path: string): number {
  const config = join(dirname(path), 'config.json');
  return existsSync(config) ? countParameters(resolveLlamaConfig(withHfDefaults(readJson(config)) as Partial<LlamaConfig>, config)) : parameterCountOf(readOnnx(path), path);
}

async function conditions(cfg: EvalConfig, report: Report, stride: number): Promise<Record<string, unknown>> {
  const windows = readJson<{ source: string; seq_len: number; splits: { validation: { rows: number; tokens: number } } }>(join(cfg.prep, 'windows.json'));
  const any = Object.values(report)[0] as ModelReport;
  const manifest = cfg.data ? await readManifest(cfg.data) : undefined;
  const students = (['baseline', 'distilled'] as const).map((r) => [r, (report[r] as ModelReport | undefined)?.training] as const).filter(([, t]) => t);
  return {
    ...(manifest ? { logits: { dir: cfg.data, k: manifest.k, mode: manifest.mode, temperatures: manifest.temperatures, teacher: manifest.teacher.path, teacher_dtype: manifest.teacher.dtype } } : {}),
    ...(students.length ? { training_backend: Object.fromEntries(students.map(([r, t]) => [r, t!.backend])) } : {}),
    data: windows.source, seq_len: windows.seq_len,
    scoring: stride > 0 ? `each validation document by sliding windows of ${windows.seq_len} predictions, stride ${stride}${cfg.max_windows ? ` (first ${cfg.max_windows} documents)` : ''}` : `${cfg.max_windows || windows.splits.validation.rows} packed validation windows of ${windows.seq_len} tokens`,
    scored_tokens: any.scored_tokens, batch_shape: `${cfg.batch_size}×${windows.seq_len}`, runtime: `onnxruntime-node (${any.execution_provider})`,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
  };
}

/** Writes the PNG (and SVG) plots next to report.md; returns their file names by kind. */
async function plots(cfg: EvalConfig, report: Report, roles: readonly string[], curves: CurvePoint[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const c = report.conditions as Record<string, unknown>;
  if (curves.length) {
    const sub = (['baseline', 'distilled'] as const).filter((r) => (report[r] as ModelReport | undefined)?.training).map((r) => {
      const t = (report[r] as ModelReport).training as Record<string, unknown>;
      return `${r}: α=${t.alpha}${Number(t.alpha) > 0 ? `, τ=${t.temperature}` : ''}, ${t.steps} steps, ${Number(t.tokens_seen).toLocaleString('en-US')} tokens, TF.js ${t.backend}`;
    });
    if (!curves.some((p) => p.metric.startsWith('KD') && p.student === 'baseline') && roles.includes('baseline')) sub.push('the baseline (α = 0) has no KD term');
    await writeChart(join(cfg.out, 'training_curves'), trainingCurvesSpec(curves, sub));
    out.training_curves = 'training_curves.png';
  }
  const bars = roles.map((r) => ({ model: r, ppl: (report[r] as ModelReport).ppl }));
  await writeChart(join(cfg.out, 'perplexity'), perplexityBarsSpec(bars, `${c.scored_tokens} scored tokens of ${c.data}`));
  out.perplexity = 'perplexity.png';
  if (cfg.data) {
    const mass = await topkMass(cfg.data, 256);
    if (!mass) {
      if (!cfg.quiet) process.stderr.write(`eval: ${cfg.data} stores no τ = 1, so no top-k mass plot\n`);
    } else {
      await writeChart(join(cfg.out, 'topk_mass'), topkMassSpec(mass));
      out.topk_mass = 'topk_mass.png';
      (c.logits as Record<string, unknown>).topk_mass = { mean: mass.mean, median: mass.median, p10: mass.p10, positions: mass.masses.length, windows: mass.windows };
    }
  }
  return out;
}

function markdown(report: Report, roles: readonly string[]): string {
  const rows = roles.map((r) => {
    const m = report[r] as ModelReport;
    const t = m.training as Record<string, number> | undefined;
    return `| ${r} | ${(m.parameters / 1e6).toFixed(2)} M | ${m.ppl.toFixed(2)} | ${m.bpb.toFixed(3)} | ${m.tokens_per_s.toFixed(0)} | ${(m.weights_bytes / 2 ** 20).toFixed(1)} MiB | ${(m.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB | ${t ? `${t.steps} steps, ${Number(t.tokens_seen).toLocaleString('en-US')} tokens, α=${t.alpha}${t.alpha > 0 ? `, τ=${t.temperature}` : ''}, TF.js ${t.backend}` : ''} |`;
  });
  const c = report.conditions as Record<string, unknown>;
  const lg = c.logits as { dir: string; k: number; mode: string; teacher: string; teacher_dtype: string; topk_mass?: { mean: number; median: number } } | undefined;
  const plots = (report.plots ?? {}) as Record<string, string>;
  const captions: Record<string, string> = { training_curves: 'Student training curves', perplexity: 'Validation perplexity', topk_mass: 'Teacher top-k mass coverage' };
  return [
    '| model | params | val PPL | bits/byte | tokens/s | weights | peak RSS | training |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows, '',
    `Validation perplexity over ${c.scored_tokens} scored tokens of ${c.data}: ${c.scoring}. Speed on ${c.runtime}, batch ${c.batch_shape}; ${c.machine}.`,
    ...(lg ? [`Distillation data: ${lg.dir}, top-${lg.k} ${lg.mode} logits of the teacher ${lg.teacher} (${lg.teacher_dtype})${lg.topk_mass ? `; the stored top-${lg.k} holds ${(100 * lg.topk_mass.mean).toFixed(1)}% of the teacher's probability mass on average at τ = 1 (median ${(100 * lg.topk_mass.median).toFixed(1)}%)` : ''}.`] : []),
    '',
    ...Object.entries(plots).flatMap(([kind, file]) => [`![${captions[kind] ?? kind}](${file})`, '']),
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'eval',
  describe: 'Perplexity, bits/byte, tokens/s and memory of teacher, baseline and distilled student → report.md/json',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('prep', { type: 'string', describe: `prep output directory (default ${EVAL_DEFAULTS.prep})` })
    .option('out', { type: 'string', describe: `report directory (default ${EVAL_DEFAULTS.out})` })
    .option('data', { type: 'string', describe: 'logit dataset directory: k and teacher in the report, and the top-k mass coverage plot (default: the distilled student\'s training data, when present)' })
    .option('teacher', { type: 'string', describe: 'teacher .onnx (or checkpoint directory)' })
    .option('baseline', { type: 'string', describe: 'baseline student: checkpoint directory or .onnx' })
    .option('distilled', { type: 'string', describe: 'distilled student: checkpoint directory or .onnx' })
    .option('batch-size', { type: 'number', describe: `windows per forward, same for every model (default ${EVAL_DEFAULTS.batch_size})` })
    .option('max-windows', { type: 'number', describe: 'first N validation windows, 0 = all (default 0)' })
    .option('stride', { type: 'number', describe: 'sliding-window stride over validation documents; 0 = packed windows (default seq_len / 2)' })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'ONNX Runtime device: auto = CUDA when its provider loads, else CPU (default auto)' })
    .option('overwrite', { type: 'boolean', describe: 'replace the report an existing --out holds (default: such an --out is refused before evaluating)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar and no printed table' })
    .option('json', { type: 'boolean', describe: 'print report.json on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const report = await run({ ...fromFile, ...flagsToConfig(argv, Object.keys(CHECKS)) }, argv.config ?? 'eval config');
    if (argv.json) process.stdout.write(JSON.stringify(report) + '\n');
  },
};
