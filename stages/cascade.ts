/**
 * cascade: dynamic distillation (seed article §8.3) measured — per validation position the student
 * answers when its confidence passes a threshold, otherwise the teacher does. Reports, across
 * thresholds, the cascade's perplexity, the share routed to the teacher and the compute per token,
 * as cascade.{json,md} and a PNG curve (perplexity against compute).
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { FieldCheck, flagsToConfig, isBool, isInt, isOneOf, isString, mergeConfig, optional, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { readWindows } from '../lib/data/windows.js';
import { lineChartSpec, writeChart } from '../lib/metrics/charts.js';
import { cascadeCurve, CONFIDENCES, forwardFlopsPerToken, positionScores, type CascadePoint, type Confidence, type PositionScores } from '../lib/metrics/cascade.js';
import { openOnnxSession, runLogits, type Device } from '../lib/onnx/index.js';
import { readJson, writeFileAtomic } from '../lib/util/fs.js';

/** `kd cascade`'s settings; each field is its flag in kebab case. */
export interface CascadeConfig {
  /** Student .onnx (kd export's onnx/model.onnx, config.json beside it); required. */
  student: string | null;
  /** Teacher .onnx (kd teacher export, config.json beside it); required. */
  teacher: string | null;
  /** Prep output directory (validation windows). */
  prep: string;
  /** Output directory (cascade.json, cascade.md, cascade.png). */
  out: string;
  /** Confidence measures swept. */
  confidence: Confidence[];
  /** First N validation windows (0 = all). */
  max_windows: number;
  /** Windows per forward, the same for both models. */
  batch_size: number;
  /** ONNX Runtime device: auto = CUDA when its provider loads, else CPU. */
  device: Device;
  /** Replace an existing cascade.json in `out`. */
  overwrite: boolean;
  /** No progress bar and no printed table. */
  quiet: boolean;
}

export const CASCADE_DEFAULTS: CascadeConfig = {
  student: null, teacher: null, prep: 'runs/prep', out: 'runs/cascade', confidence: [...CONFIDENCES], max_windows: 0, batch_size: 8, device: 'auto', overwrite: false, quiet: false,
};

const CHECKS: Record<keyof CascadeConfig, FieldCheck> = {
  student: optional(isString), teacher: optional(isString), prep: isString, out: isString,
  confidence: (v) => (Array.isArray(v) && v.length > 0 && v.every((c) => (CONFIDENCES as readonly unknown[]).includes(c)) && new Set(v).size === v.length ? undefined : `must be a non-empty list of distinct measures among ${CONFIDENCES.join(', ')}`),
  max_windows: isInt(0), batch_size: isInt(1, 4096), device: isOneOf('auto', 'cpu', 'cuda'), overwrite: isBool, quiet: isBool,
};

/**
 * The cascade's settings: `partial` (flags and/or a config file) over CASCADE_DEFAULTS, validated
 * before any file is read.
 * @throws Error naming the flag or `source` for an unknown key, a value out of range, or a missing student/teacher.
 */
export function resolveCascadeConfig(partial: Record<string, unknown>, source = 'cascade config'): CascadeConfig & { student: string; teacher: string } {
  const cfg = resolveConfig(CASCADE_DEFAULTS, CHECKS, partial, source);
  for (const role of ['student', 'teacher'] as const) {
    if (cfg[role] === null) throw new Error(`${source}: ${role} is required (--${role}, the ${role}'s .onnx)`);
  }
  return cfg as CascadeConfig & { student: string; teacher: string };
}

export interface CascadeSummary {
  student: { path: string; ppl: number; flops_per_token: number };
  teacher: { path: string; ppl: number; flops_per_token: number };
  scored_tokens: number;
  points: CascadePoint[];
  files: string[];
}

/**
 * Thresholds swept: the student's own deciles of the confidence (so each step moves ~10 % of the
 * positions, whatever the student's calibration), plus the two ends (all student, all teacher) as
 * finite numbers past every value (JSON has no Infinity): max probability 2, entropy ln V + 1 nats.
 */
function thresholds(c: Confidence, s: PositionScores, vocab: number): number[] {
  const sorted = Float64Array.from(c === 'max_prob' ? s.maxProb : s.entropy).sort();
  const deciles = Array.from({ length: 9 }, (_, i) => sorted[Math.floor(((i + 1) / 10) * sorted.length)]);
  return c === 'max_prob' ? [0, ...deciles, 2] : [-1, ...deciles, Math.log(vocab) + 1];
}

/**
 * Refuses a model path that is missing or a directory: the cascade reads one .onnx per model (a
 * directory is not searched, as kd eval would export a checkpoint directory; here the user names the
 * file). For a directory the message lists the .onnx files up to two levels down, e.g. kd export's
 * `<out>/onnx/model.onnx`.
 * @throws Error "<dir>: is a directory; --student takes the student's .onnx file, e.g. <dir>/onnx/model.onnx"
 */
export function checkModelFile(path: string, role: 'student' | 'teacher'): void {
  if (!existsSync(path)) throw new Error(`${path}: no such model (--${role})`);
  if (!statSync(path).isDirectory()) return;
  const found = onnxFilesUnder(path, 2);
  const hint = found.length === 0 ? ` (it holds none; kd export writes <out>/onnx/model.onnx)`
    : found.length === 1 ? `, e.g. --${role} ${found[0]}` : ` (it holds ${found.length}: ${found.slice(0, 3).join(', ')}${found.length > 3 ? ', …' : ''})`;
  throw new Error(`${path}: is a directory; --${role} takes the ${role}'s .onnx file${hint}`);
}

/** The .onnx files in `dir` and its subdirectories up to `depth` levels down, sorted. */
function onnxFilesUnder(dir: string, depth: number): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(dir, e.name);
    if (e.isFile() && e.name.endsWith('.onnx')) out.push(p);
    else if (e.isDirectory() && depth > 0) out.push(...onnxFilesUnder(p, depth - 1));
  }
  return out;
}

/** The HF config.json beside an exported .onnx (kd export, kd teacher export write one). */
function configBeside(model: string): Parameters<typeof forwardFlopsPerToken>[0] {
  const path = join(dirname(model), 'config.json');
  if (!existsSync(path)) throw new Error(`${model}: no config.json beside it (needed for FLOPs per token; kd export and kd teacher export write one)`);
  return readJson(path) as Parameters<typeof forwardFlopsPerToken>[0];
}

/**
 * Runs both models over the packed validation windows and writes the cascade report to `out`.
 * @param partial CascadeConfig keys (flags and/or a config file); see resolveCascadeConfig
 * @throws Error naming the flag or file for a bad setting, a missing model or config.json, models of
 *   different vocab, or an existing report without `overwrite`
 */
export async function run(partial: Record<string, unknown>, source = 'cascade config'): Promise<CascadeSummary> {
  const o = resolveCascadeConfig(partial, source);
  const report = join(o.out, 'cascade.json');
  if (existsSync(report) && !o.overwrite) throw new Error(`${report} exists: pass --overwrite to replace it`);
  checkModelFile(o.student, 'student');
  checkModelFile(o.teacher, 'teacher');
  const cs = configBeside(o.student), ct = configBeside(o.teacher);
  if (cs.vocab_size !== ct.vocab_size) throw new Error(`${o.student}: vocab_size ${cs.vocab_size} is not the teacher's ${ct.vocab_size} (${o.teacher}): a cascade needs one tokenizer`);
  const w = readWindows(o.prep, 'validation');
  const n = o.max_windows ? Math.min(o.max_windows, w.rows) : w.rows, L = w.seqLen, B = o.batch_size;
  const sessions = await Promise.all([o.student, o.teacher].map((m) => openOnnxSession(m, { device: o.device })));
  const parts: PositionScores[][] = [[], []];
  const progress = createProgress('cascade', n, 'windows', o.quiet);
  for (let b0 = 0; b0 < n; b0 += B) {
    const b = Math.min(B, n - b0), ids = new BigInt64Array(b * L), labels = new Int32Array(b * L);
    for (let r = 0; r < b; r++) for (let t = 0; t < L; t++) {
      ids[r * L + t] = BigInt(w.ids[(b0 + r) * (L + 1) + t]);
      labels[r * L + t] = w.ids[(b0 + r) * (L + 1) + t + 1];
    }
    for (let m = 0; m < 2; m++) {
      const { logits, dims } = await runLogits(sessions[m], ids, b, L);
      parts[m].push(positionScores(logits, dims[2], labels, cs.vocab_size));
    }
    progress.update(b0 + b);
  }
  progress.stop();
  const [student, teacher] = parts.map(concat);
  const flops = { student: forwardFlopsPerToken(cs), teacher: forwardFlopsPerToken(ct) };
  const points = o.confidence.flatMap((c) => cascadeCurve(student, teacher, c, thresholds(c, student, cs.vocab_size), flops));
  const pplOf = (s: PositionScores) => Math.exp(s.nll.reduce((a, v) => a + v, 0) / s.nll.length);
  mkdirSync(o.out, { recursive: true });
  const summary: CascadeSummary = {
    student: { path: o.student, ppl: pplOf(student), flops_per_token: flops.student },
    teacher: { path: o.teacher, ppl: pplOf(teacher), flops_per_token: flops.teacher },
    scored_tokens: student.nll.length, points, files: ['cascade.json', 'cascade.md', 'cascade.png'],
  };
  writeFileAtomic(report, JSON.stringify(summary, null, 2) + '\n');
  writeFileAtomic(join(o.out, 'cascade.md'), markdown(summary));
  await writeChart(join(o.out, 'cascade'), lineChartSpec({
    title: 'Student → teacher cascade', subtitle: `${summary.scored_tokens} validation tokens; student answers when confident`,
    xTitle: 'FLOPs per token', yTitle: 'perplexity', seriesTitle: 'confidence',
    points: points.map((p) => ({ x: p.flops_per_token, y: p.ppl, series: p.confidence })),
  }));
  if (!o.quiet) process.stderr.write(markdown(summary) + `→ ${o.out}\n`);
  return summary;
}

function concat(parts: PositionScores[]): PositionScores {
  const cat = (k: keyof PositionScores) => Float64Array.from(parts.flatMap((p) => Array.from(p[k])));
  return { nll: cat('nll'), maxProb: cat('maxProb'), entropy: cat('entropy') };
}

function markdown(s: CascadeSummary): string {
  const rows = s.points.map((p) => `| ${p.confidence} | ${p.threshold.toFixed(3)} | ${p.ppl.toFixed(2)} | ${(100 * p.teacher_share).toFixed(1)} % | ${(p.flops_per_token / 1e6).toFixed(2)} |`);
  return [
    '# Student → teacher cascade (kd cascade)', '',
    `Student ${s.student.ppl.toFixed(2)} ppl at ${(s.student.flops_per_token / 1e6).toFixed(2)} MFLOPs/token; teacher ${s.teacher.ppl.toFixed(2)} at ${(s.teacher.flops_per_token / 1e6).toFixed(2)}; ${s.scored_tokens} packed validation tokens.`,
    'The student answers at max_prob ≥ threshold (or entropy ≤ threshold); FLOPs = student + routed share × teacher (the teacher\'s context prefill is not counted).', '',
    '| confidence | threshold | PPL | to teacher | MFLOPs/token |', '|---|---:|---:|---:|---:|', ...rows, '',
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'cascade',
  describe: 'Dynamic distillation: route each position to the teacher when the student is not confident; PPL, routed share and FLOPs per threshold',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('student', { type: 'string', describe: 'student .onnx file, e.g. kd export\'s <out>/onnx/model.onnx (config.json beside it; not a directory); required' })
    .option('teacher', { type: 'string', describe: 'teacher .onnx file (kd teacher export; config.json beside it; not a directory); required' })
    .option('prep', { type: 'string', describe: `prep output directory: validation windows (default ${CASCADE_DEFAULTS.prep})` })
    .option('out', { type: 'string', describe: `output directory: cascade.json, cascade.md, cascade.png (default ${CASCADE_DEFAULTS.out})` })
    .option('confidence', { type: 'array', choices: [...CONFIDENCES], describe: 'confidence measures (default both)' })
    .option('max-windows', { type: 'number', describe: 'first N validation windows, 0 = all (default 0)' })
    .option('batch-size', { type: 'number', describe: `windows per forward (default ${CASCADE_DEFAULTS.batch_size})` })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'ONNX Runtime device: auto = CUDA when its provider loads, else CPU (default auto)' })
    .option('overwrite', { type: 'boolean', describe: 'replace an existing cascade.json in --out' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar and no printed table' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const s = await run(mergeConfig(fromFile, flagsToConfig(argv, Object.keys(CHECKS))), argv.config ?? 'cascade config');
    if (argv.json) process.stdout.write(JSON.stringify(s) + '\n');
  },
};
