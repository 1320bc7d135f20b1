import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LineChart } from '../metrics/charts.js';
import type { TrainConfig } from '../train/config.js';
import type { TrainSummary } from '../train/trainer.js';
import { KD_KEYS, SweepRun } from './grid.js';

/** What one run of a sweep produced. */
export interface RunResult {
  name: string;
  /** The grid values of the run. */
  values: Record<string, unknown>;
  status: 'ok' | 'failed' | 'interrupted' | 'not run';
  error?: string;
  config?: TrainConfig;
  summary?: TrainSummary;
  /** Validation evaluations from metrics.jsonl, in step order. */
  val: { step: number; loss: number; ppl: number }[];
  /** best_val_ppl ÷ that of the matching baseline (α = 0, same other keys) − 1; undefined for baselines and without one. */
  vsBaseline?: number;
}

/** Reads a run directory's train.json and metrics.jsonl. */
export function readRunResult(dir: string, run: SweepRun, status?: RunResult['status'], error?: string): RunResult {
  const result: RunResult = { name: run.name, values: run.values, status: status ?? 'not run', error, val: [] };
  const trainJson = join(dir, 'train.json');
  if (existsSync(trainJson)) {
    const t = JSON.parse(readFileSync(trainJson, 'utf8')) as { config: TrainConfig; summary: TrainSummary };
    result.config = t.config; result.summary = t.summary;
    if (!status) result.status = t.summary.interrupted ? 'interrupted' : 'ok';
  }
  const metrics = join(dir, 'metrics.jsonl');
  if (existsSync(metrics)) {
    for (const line of readFileSync(metrics, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const r = JSON.parse(line) as { step: number; val_loss?: number; val_ppl?: number };
      if (r.val_loss !== undefined) result.val.push({ step: r.step, loss: r.val_loss, ppl: r.val_ppl! });
    }
  }
  return result;
}

/**
 * Finished runs by best validation perplexity (ascending; ties by name), then the others; fills
 * `vsBaseline`.
 */
export function rankRuns(results: RunResult[]): RunResult[] {
  const ok = results.filter((r) => r.status === 'ok' && r.summary && Number.isFinite(r.summary.best_val_ppl));
  const rest = results.filter((r) => !ok.includes(r));
  ok.sort((a, b) => a.summary!.best_val_ppl - b.summary!.best_val_ppl || a.name.localeCompare(b.name));
  const baselines = ok.filter((r) => r.config?.alpha === 0);
  const others = (r: RunResult) => JSON.stringify(Object.entries(r.values).filter(([k]) => k !== 'alpha' && !KD_KEYS.includes(k as keyof TrainConfig)));
  for (const r of ok) {
    const base = r.config?.alpha === 0 ? undefined : baselines.find((b) => others(b) === others(r));
    if (base) r.vsBaseline = r.summary!.best_val_ppl / base.summary!.best_val_ppl - 1;
  }
  return [...ok, ...rest];
}

/** One table row per run: the fields of the CSV (numbers at full precision). */
function row(r: RunResult, rank: number, extraKeys: string[]): Record<string, string | number> {
  const c = r.config, s = r.summary, kd = c && c.alpha > 0;
  const out: Record<string, string | number> = {
    rank: r.status === 'ok' ? rank : '', run: r.name, status: r.status,
    alpha: c?.alpha ?? '', temperature: kd ? c.temperature : '', temperature_schedule: kd ? c.temperature_schedule : '',
    loss: kd ? c.loss : '', topk_mode: kd ? c.topk_mode : '',
  };
  for (const k of extraKeys) out[k] = JSON.stringify(r.values[k] ?? (c as unknown as Record<string, unknown>)?.[k] ?? '');
  Object.assign(out, {
    best_val_ppl: s?.best_val_ppl ?? '', best_val_loss: s?.best_val_loss ?? '', best_step: s?.best_step ?? '',
    final_val_ppl: s?.val_ppl ?? '', final_train_loss: s?.final_train_loss ?? '', vs_baseline: r.vsBaseline ?? '',
    steps: s?.steps ?? '', seconds: s?.seconds ?? '', tokens_per_s: s?.tokens_per_s ?? '', error: r.error ?? '',
  });
  return out;
}

const FIXED = ['alpha', 'temperature', 'temperature_schedule', 'loss', 'topk_mode'];
const extraKeysOf = (gridKeys: string[]) => gridKeys.filter((k) => !FIXED.includes(k));

/** The ranked results as CSV (RFC 4180 quoting), one row per run. */
export function resultsCsv(ranked: RunResult[], gridKeys: string[]): string {
  const rows = ranked.map((r, i) => row(r, i + 1, extraKeysOf(gridKeys)));
  const header = Object.keys(rows[0] ?? row({ name: '', values: {}, status: 'not run', val: [] }, 0, extraKeysOf(gridKeys)));
  const cell = (v: string | number) => (typeof v === 'string' && /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : String(v));
  return [header.join(','), ...rows.map((r) => header.map((h) => cell(r[h])).join(','))].join('\n') + '\n';
}

/**
 * The ranked results as markdown: a headline (best run, baseline), the table, and per grid key the
 * mean and best perplexity of each value (distillation keys over α > 0 runs only).
 */
export function resultsMarkdown(ranked: RunResult[], gridKeys: string[], title: string): string {
  const fmt = (v: unknown, d = 2) => (typeof v === 'number' ? (Number.isFinite(v) ? v.toFixed(d) : '—') : v === '' || v === undefined ? '—' : String(v));
  const pct = (v: number | undefined) => (v === undefined ? '—' : `${v >= 0 ? '+' : '−'}${Math.abs(100 * v).toFixed(1)}%`);
  const ok = ranked.filter((r) => r.status === 'ok');
  const lines = [`# ${title}`, ''];
  if (ok.length > 0) {
    const best = ok[0], base = ok.find((r) => r.config?.alpha === 0);
    lines.push(`Best: **${best.name}**, validation perplexity ${fmt(best.summary!.best_val_ppl)} at step ${best.summary!.best_step}` +
      (base && base !== best ? ` (${pct(best.vsBaseline)} vs the baseline's ${fmt(base.summary!.best_val_ppl)})` : '') + '.', '');
  }
  const extra = extraKeysOf(gridKeys);
  const head = ['rank', 'run', 'α', 'τ', 'schedule', 'loss', ...extra, 'best val ppl', 'vs baseline', 'best step', 'final val ppl', 'steps', 'min', 'status'];
  const numeric = new Set(['rank', 'best val ppl', 'vs baseline', 'best step', 'final val ppl', 'steps', 'min']);
  lines.push(`| ${head.join(' | ')} |`, `|${head.map((h) => (numeric.has(h) ? '---:' : '---')).join('|')}|`);
  ranked.forEach((r, i) => {
    const c = r.config, s = r.summary, kd = c && c.alpha > 0;
    lines.push(`| ${[
      r.status === 'ok' ? i + 1 : '', r.name, c?.alpha ?? '—', kd ? tauText(c) : '—', kd ? c.temperature_schedule : '—', kd ? `${c.loss}/${c.topk_mode}` : '—',
      ...extra.map((k) => JSON.stringify(r.values[k])), fmt(s?.best_val_ppl), pct(r.vsBaseline), s?.best_step ?? '—', fmt(s?.val_ppl),
      s?.steps ?? '—', s ? (s.seconds / 60).toFixed(1) : '—', r.status === 'ok' ? 'ok' : `${r.status}${r.error ? `: ${r.error.replace(/\|/g, '\\|')}` : ''}`,
    ].join(' | ')} |`);
  });
  const varying = gridKeys.filter((k) => new Set(ranked.map((r) => JSON.stringify(r.config?.[k as keyof TrainConfig]))).size > 1);
  for (const key of varying) {
    const pool = ok.filter((r) => !KD_KEYS.includes(key as keyof TrainConfig) || r.config!.alpha > 0);
    const groups = new Map<string, number[]>();
    for (const r of pool) {
      const v = JSON.stringify(r.config![key as keyof TrainConfig]);
      groups.set(v, [...(groups.get(v) ?? []), r.summary!.best_val_ppl]);
    }
    if (groups.size < 2) continue;
    lines.push('', `By ${key}${KD_KEYS.includes(key as keyof TrainConfig) ? ' (α > 0 runs)' : ''}:`, '', `| ${key} | runs | mean best val ppl | best |`, '|---|---:|---:|---:|');
    const sorted = [...groups.entries()].sort((a, b) => mean(a[1]) - mean(b[1]));
    for (const [v, ppls] of sorted) lines.push(`| ${v} | ${ppls.length} | ${fmt(mean(ppls))} | ${fmt(Math.min(...ppls))} |`);
  }
  return lines.join('\n') + '\n';
}

/** τ, or its range for schedules that decay ("4 → 1"). */
const tauText = (c: TrainConfig) => (c.temperature_schedule === 'constant' || c.temperature === c.temperature_min ? `${c.temperature}` : `${c.temperature} → ${c.temperature_min}`);

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Validation loss per step, one line per run in rank order; baselines dashed. */
export function valLossChart(ranked: RunResult[], title: string, subtitle?: string | string[]): LineChart {
  const label = (r: RunResult) => `${r.name} (ppl ${r.summary ? r.summary.best_val_ppl.toFixed(1) : '—'})`;
  const shown = ranked.filter((r) => r.val.length > 0);
  return {
    title, subtitle, xTitle: 'optimizer step', yTitle: 'validation loss (nats/token)', seriesTitle: 'run (best val ppl), best first',
    points: shown.flatMap((r) => r.val.map((v) => ({ x: v.step, y: v.loss, series: label(r) }))),
    order: shown.map(label),
    dashed: shown.filter((r) => r.config?.alpha === 0).map(label),
  };
}
