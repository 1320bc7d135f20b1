/**
 * The plots of `kd eval` (Vega-Lite specs rendered by lib/metrics/charts.ts): students' training
 * curves, validation perplexity bars, and the teacher's top-k mass coverage.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { TopLevelSpec } from 'vega-lite';
import { IGNORE_INDEX, openLogitDataset } from '../shards/index.js';

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const CONFIG = { font: FONT, axis: { labelFontSize: 11, titleFontSize: 13 }, legend: { labelFontSize: 11, titleFontSize: 12 }, header: { labelFontSize: 13, titleFontSize: 13 } };
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const ROLE_COLORS: Record<string, string> = { teacher: '#4c78a8', baseline: '#e45756', distilled: '#54a24b' };

/** One point of a training curve. */
export interface CurvePoint { step: number; value: number; metric: string; student: string }

const METRICS = [
  { key: 'kd', title: 'KD term (train, τ²-scaled divergence)' },
  { key: 'ce', title: 'CE term (train, nats/token)' },
  { key: 'val_loss', title: 'validation loss (nats/token)' },
] as const;

/**
 * Reads the curve points of one student's metrics.jsonl: training records (`step` with `kd`/`ce`)
 * and evaluation records (`val_loss`). A KD term that is 0 throughout (α = 0) is left out.
 */
export function readCurves(metricsJsonl: string, student: string): CurvePoint[] {
  if (!existsSync(metricsJsonl)) return [];
  const points: CurvePoint[] = [];
  for (const line of readFileSync(metricsJsonl, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: Record<string, unknown>;
    try { r = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
    if (typeof r.step !== 'number') continue;
    for (const m of METRICS) {
      const v = r[m.key];
      if (typeof v === 'number' && Number.isFinite(v)) points.push({ step: r.step, value: v, metric: m.title, student });
    }
  }
  const kdTitle = METRICS[0].title;
  return points.some((p) => p.metric === kdTitle && p.value !== 0) ? points : points.filter((p) => p.metric !== kdTitle);
}

/** Training curves: one panel per term (independent y), one line per student. */
export function trainingCurvesSpec(points: CurvePoint[], subtitle?: string | string[]): TopLevelSpec {
  const students = [...new Set(points.map((p) => p.student))];
  const metrics = METRICS.map((m) => m.title).filter((t) => points.some((p) => p.metric === t));
  return {
    $schema: SCHEMA,
    title: { text: 'Student training curves', subtitle, anchor: 'start', fontSize: 16, subtitleFontSize: 12 },
    background: 'white', padding: 12,
    data: { values: points },
    facet: { row: { field: 'metric', type: 'nominal', sort: metrics, title: null, header: { labelAngle: 0, labelAlign: 'left', labelAnchor: 'start', labelOrient: 'top', labelFontWeight: 'bold' } } },
    spec: {
      width: 640, height: 180,
      layer: [
        { mark: { type: 'line', strokeWidth: 1.5, clip: true } },
        { mark: { type: 'point', filled: true, size: 50 }, transform: [{ filter: `datum.metric === '${METRICS[2].title}'` }] },
      ],
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'training step', axis: { tickMinStep: 1 } },
        y: { field: 'value', type: 'quantitative', title: 'loss', scale: { zero: false } },
        color: { field: 'student', type: 'nominal', title: 'student', sort: students, scale: { domain: students, range: students.map((s) => ROLE_COLORS[s] ?? '#888') } },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  } as TopLevelSpec;
}

/** Validation perplexity bars (one per model, value printed on the bar). */
export function perplexityBarsSpec(rows: { model: string; ppl: number }[], subtitle?: string | string[]): TopLevelSpec {
  const models = rows.map((r) => r.model);
  return {
    $schema: SCHEMA,
    title: { text: 'Validation perplexity (lower is better)', subtitle, anchor: 'start', fontSize: 16, subtitleFontSize: 12 },
    width: 480, height: 300, background: 'white', padding: 12,
    data: { values: rows.map((r) => ({ ...r, label: r.ppl.toFixed(2) })) },
    encoding: {
      x: { field: 'model', type: 'nominal', sort: models, title: 'model', axis: { labelAngle: 0, labelFontSize: 13 } },
      y: { field: 'ppl', type: 'quantitative', title: 'validation perplexity (exp of nats/token)', scale: { zero: true } },
    },
    layer: [
      { mark: { type: 'bar', width: { band: 0.6 } }, encoding: { color: { field: 'model', type: 'nominal', legend: null, scale: { domain: models, range: models.map((m) => ROLE_COLORS[m] ?? '#888') } } } },
      { mark: { type: 'text', dy: -8, fontSize: 13, fontWeight: 'bold' }, encoding: { text: { field: 'label', type: 'nominal' } } },
    ],
    config: CONFIG,
  } as TopLevelSpec;
}

/** Per-position teacher probability mass held by the stored top-k at τ = 1. */
export interface TopkMass {
  /** One value per scored position, in [0, 1]. */
  masses: Float64Array;
  k: number;
  windows: number;
  teacher: string;
  mean: number;
  median: number;
  p10: number;
}

/**
 * Σ_topk exp(topk_logit − log_z[τ=1]) per position with a target, over the first `maxWindows`
 * windows of a logit dataset; null when τ = 1 is not among the stored temperatures.
 */
export async function topkMass(dataDir: string, maxWindows = 256): Promise<TopkMass | null> {
  const ds = await openLogitDataset(dataDir);
  const { seqLen: L, k, numTemps: T } = ds.layout;
  const t1 = ds.manifest.temperatures.indexOf(1);
  if (t1 < 0) return null; // log_z at τ = 1 not stored: the mass cannot be computed
  const masses: number[] = [];
  let windows = 0;
  for await (const row of ds.rows()) {
    for (let p = 0; p < L; p++) {
      if (row.target_ids[p] === IGNORE_INDEX) continue;
      const lz = row.log_z[p * T + t1];
      let m = 0;
      for (let j = 0; j < k; j++) m += Math.exp(row.topk_logits[p * k + j] - lz);
      masses.push(Math.min(1, m));
    }
    if (++windows >= maxWindows) break;
  }
  const sorted = Float64Array.from(masses).sort();
  const q = (f: number) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))] : NaN;
  return {
    masses: Float64Array.from(masses), k, windows, teacher: ds.manifest.teacher.path,
    mean: masses.reduce((a, b) => a + b, 0) / Math.max(1, masses.length), median: q(0.5), p10: q(0.1),
  };
}

/** Histogram of per-position top-k mass (share of positions per bin of width 0.05). */
export function topkMassSpec(t: TopkMass): TopLevelSpec {
  const bins = 20;
  const counts = new Array<number>(bins).fill(0);
  for (const m of t.masses) counts[Math.min(bins - 1, Math.floor(m * bins))]++;
  const n = Math.max(1, t.masses.length);
  const values = counts.map((c, i) => ({ lo: i / bins, hi: (i + 1) / bins, share: c / n }));
  return {
    $schema: SCHEMA,
    title: {
      text: `Teacher top-${t.k} probability mass per position (τ = 1)`,
      subtitle: [`${t.masses.length.toLocaleString('en-US')} positions of the first ${t.windows} windows; mean ${t.mean.toFixed(3)}, median ${t.median.toFixed(3)}, 10th percentile ${t.p10.toFixed(3)}`, `teacher: ${t.teacher}`],
      anchor: 'start', fontSize: 16, subtitleFontSize: 12,
    },
    width: 720, height: 300, background: 'white', padding: 12,
    data: { values },
    mark: { type: 'bar', color: '#4c78a8', stroke: 'white', strokeWidth: 0.5 },
    encoding: {
      x: { field: 'lo', type: 'quantitative', bin: { binned: true, step: 1 / bins }, title: `probability mass in the stored top-${t.k} (1 = the whole distribution)`, scale: { domain: [0, 1] }, axis: { format: '.1f', values: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1] } },
      x2: { field: 'hi' },
      y: { field: 'share', type: 'quantitative', title: 'share of positions', axis: { format: '%' } },
    },
    config: CONFIG,
  } as TopLevelSpec;
}
