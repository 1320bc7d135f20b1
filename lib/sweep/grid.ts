import { FieldCheck, isBool, isInt, isString, optional, resolveConfig } from '../cli/config.js';
import { TRAIN_KEYS, TrainConfig } from '../train/config.js';

/** `kd sweep` configuration (pipelines/configs/sweep.json). */
export interface SweepConfig {
  /** Train config file (JSON/YAML) every run starts from; null = the student defaults. */
  base: string | null;
  /** Train config keys set for every run, over `base` (e.g. max_steps, eval_every). */
  train: Record<string, unknown>;
  /**
   * Train config key → list of values; the runs are the cartesian product, in key order. A list of
   * such grids runs the union of their products (e.g. α × τ, then a few losses at one α). Runs with
   * α = 0 ignore the distillation keys (temperature, schedule, loss, …) and collapse into one
   * baseline per combination of the other keys.
   */
  grid: Grid | Grid[];
  /** Output directory: one sub-directory per run, results.{csv,md,json}, val_loss.{png,svg}. */
  out: string;
  /** Runs at a time, each in its own `kd train` process (a wasm process uses one core). */
  parallel: number;
  /** Retrain runs that already finished (default: reuse their train.json; interrupted runs resume). */
  force: boolean;
  /** No progress display or summary. */
  quiet: boolean;
}

/** Train config key → the values it takes. */
export type Grid = Record<string, unknown[]>;

export const SWEEP_DEFAULTS: SweepConfig = { base: null, train: {}, grid: {}, out: 'runs/sweep', parallel: 1, force: false, quiet: false };

const isObject: FieldCheck = (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'must be an object');
const CHECKS: Record<keyof SweepConfig, FieldCheck> = {
  base: optional(isString), train: isObject, out: isString, parallel: isInt(1, 64), force: isBool, quiet: isBool,
  grid: (v) => {
    for (const g of Array.isArray(v) ? v : [v]) {
      if (isObject(g)) return 'must be an object of train config keys → lists of values, or a list of such objects';
      for (const [k, vals] of Object.entries(g as Record<string, unknown>)) {
        if (!(TRAIN_KEYS as string[]).includes(k)) return `has unknown train config key '${k}' (valid: ${TRAIN_KEYS.join(', ')})`;
        if (!Array.isArray(vals) || vals.length === 0) return `'${k}' must be a non-empty list of values`;
        if (k === 'out' || k === 'resume') return `cannot vary '${k}'`;
      }
    }
    return undefined;
  },
};
export const SWEEP_KEYS = Object.keys(CHECKS) as (keyof SweepConfig)[];

/** Defaults + `partial`, validated. @throws Error naming `source` on unknown keys or bad values. */
export function resolveSweepConfig(partial: Record<string, unknown>, source = 'sweep config'): SweepConfig {
  return resolveConfig(SWEEP_DEFAULTS, CHECKS, partial, source);
}

/** Keys that only matter when α > 0. */
export const KD_KEYS: (keyof TrainConfig)[] = ['temperature', 'temperature_schedule', 'temperature_min', 'loss', 'topk_mode', 'jsd_beta', 'skew_lambda'];

/** One run of a sweep: its name (directory) and the grid values it sets. */
export interface SweepRun {
  name: string;
  values: Record<string, unknown>;
}

/**
 * The runs of a grid (or of a list of grids: the union of their products): the cartesian product of
 * the values in key order, α = 0 runs stripped of the distillation keys and de-duplicated into
 * 'baseline' runs. Names list the keys that vary across all runs (a key set by some runs and not
 * others varies), short: `a0.8_t2_cosine`; a single combination is named 'run'.
 * @throws Error when two different runs would get the same name.
 */
export function expandGrid(grid: Grid | Grid[]): SweepRun[] {
  const combos = (Array.isArray(grid) ? grid : [grid]).flatMap(product);
  const all = (c: Record<string, unknown>) => (c.alpha === 0 ? Object.fromEntries(Object.entries(c).filter(([k]) => !KD_KEYS.includes(k as keyof TrainConfig))) : c);
  const values = combos.map(all);
  const keys = [...new Set(values.flatMap((v) => Object.keys(v)))];
  const applies = (k: string, v: Record<string, unknown>) => v.alpha !== 0 || !KD_KEYS.includes(k as keyof TrainConfig);
  const varying = keys.filter((k) => k === 'alpha' && values.some((v) => v.alpha === 0)
    || new Set(values.filter((v) => applies(k, v)).map((v) => (k in v ? JSON.stringify(v[k]) : undefined))).size > 1);
  const runs = new Map<string, SweepRun>();
  for (const v of values) {
    const baseline = v.alpha === 0;
    const parts = varying.filter((k) => k in v).map((k) => (k === 'alpha' && baseline ? 'baseline' : namePart(k, v[k])));
    const name = parts.length > 0 ? parts.join('_') : 'run';
    const seen = runs.get(name);
    if (seen && JSON.stringify(sorted(seen.values)) !== JSON.stringify(sorted(v))) {
      throw new Error(`sweep grid: runs ${JSON.stringify(seen.values)} and ${JSON.stringify(v)} would both be named '${name}'; give the grids distinct values`);
    }
    if (!seen) runs.set(name, { name, values: v });
  }
  return [...runs.values()];
}

function product(g: Grid): Record<string, unknown>[] {
  let combos: Record<string, unknown>[] = [{}];
  for (const k of Object.keys(g)) combos = combos.flatMap((c) => g[k].map((v) => ({ ...c, [k]: v })));
  return combos;
}

const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

const SHORT: Record<string, string> = { alpha: 'a', temperature: 't', temperature_min: 'tmin', lr: 'lr', seed: 'seed', dropout: 'drop' };

function namePart(key: string, value: unknown): string {
  const v = typeof value === 'string' ? value : JSON.stringify(value);
  const part = key in SHORT ? `${SHORT[key]}${v}` : typeof value === 'string' ? v : `${key}${v}`;
  return part.replace(/[^A-Za-z0-9._-]+/g, '-');
}
