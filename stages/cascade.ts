/**
 * cascade: dynamic distillation (seed article §8.3) measured — per validation position the student
 * answers when its confidence passes a threshold, otherwise the teacher does. Reports, across
 * thresholds, the cascade's perplexity, the share routed to the teacher and the compute per token,
 * as cascade.{json,md} and a PNG curve (perplexity against compute).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { createProgress } from '../lib/cli/progress.js';
import { readWindows } from '../lib/data/windows.js';
import { lineChartSpec, writeChart } from '../lib/metrics/charts.js';
import { cascadeCurve, CONFIDENCES, forwardFlopsPerToken, positionScores, type CascadePoint, type Confidence, type PositionScores } from '../lib/metrics/cascade.js';
import { openOnnxSession, runLogits, type Device } from '../lib/onnx/index.js';
import { readJson, writeFileAtomic } from '../lib/util/fs.js';

export interface CascadeOptions {
  student: string;
  teacher: string;
  prep: string;
  out: string;
  confidence?: Confidence[];
  /** First N validation windows (0 = all). */
  max_windows?: number;
  batch_size?: number;
  device?: Device;
  overwrite?: boolean;
  quiet?: boolean;
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

/** The HF config.json beside an exported .onnx (kd export, kd teacher export write one). */
function configBeside(model: string): Parameters<typeof forwardFlopsPerToken>[0] {
  const path = join(dirname(model), 'config.json');
  if (!existsSync(path)) throw new Error(`${model}: no config.json beside it (needed for FLOPs per token; kd export and kd teacher export write one)`);
  return readJson(path) as Parameters<typeof forwardFlopsPerToken>[0];
}

/**
 * Runs both models over the packed validation windows and writes the cascade report to `out`.
 * @throws Error naming the file for a missing model or config.json, models of different vocab, or an existing report without `overwrite`
 */
export async function run(o: CascadeOptions): Promise<CascadeSummary> {
  const report = join(o.out, 'cascade.json');
  if (existsSync(report) && !o.overwrite) throw new Error(`${report} exists: pass --overwrite to replace it`);
  for (const m of [o.student, o.teacher]) if (!existsSync(m)) throw new Error(`${m}: no such model`);
  const cs = configBeside(o.student), ct = configBeside(o.teacher);
  if (cs.vocab_size !== ct.vocab_size) throw new Error(`${o.student}: vocab_size ${cs.vocab_size} is not the teacher's ${ct.vocab_size} (${o.teacher}): a cascade needs one tokenizer`);
  const w = readWindows(o.prep, 'validation');
  const n = o.max_windows ? Math.min(o.max_windows, w.rows) : w.rows, L = w.seqLen, B = o.batch_size ?? 8;
  const sessions = await Promise.all([o.student, o.teacher].map((m) => openOnnxSession(m, { device: o.device ?? 'auto' })));
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
  const points = (o.confidence ?? [...CONFIDENCES]).flatMap((c) => cascadeCurve(student, teacher, c, thresholds(c, student, cs.vocab_size), flops));
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

type Args = CascadeOptions & { json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'cascade',
  describe: 'Dynamic distillation: route each position to the teacher when the student is not confident; PPL, routed share and FLOPs per threshold',
  builder: (y: Argv<object>) => y
    .option('student', { type: 'string', demandOption: true, describe: 'student .onnx (kd export; config.json beside it)' })
    .option('teacher', { type: 'string', demandOption: true, describe: 'teacher .onnx (kd teacher export; config.json beside it)' })
    .option('prep', { type: 'string', default: 'runs/prep', describe: 'prep output directory (validation windows)' })
    .option('out', { type: 'string', default: 'runs/cascade', describe: 'output directory (cascade.json, cascade.md, cascade.png)' })
    .option('confidence', { type: 'array', choices: [...CONFIDENCES], describe: 'confidence measures (default both)' })
    .option('max-windows', { type: 'number', default: 0, describe: 'first N validation windows (0 = all)' })
    .option('batch-size', { type: 'number', default: 8 })
    .option('device', { choices: ['auto', 'cpu', 'cuda'] as const, default: 'auto' as const })
    .option('overwrite', { type: 'boolean', default: false })
    .option('quiet', { type: 'boolean', default: false })
    .option('json', { type: 'boolean', default: false }) as unknown as Argv<Args>,
  handler: async (argv) => {
    const s = await run({ ...argv, max_windows: argv['max-windows' as keyof Args] as number, batch_size: argv['batch-size' as keyof Args] as number });
    if (argv.json) process.stdout.write(JSON.stringify(s) + '\n');
  },
};
