/**
 * Learning rate at optimizer step `step` (0-based): linear warmup to `lr` over `warmup` steps, then
 * cosine decay to `minLr` at `total` steps (Loshchilov & Hutter 2017, SGDR eq. 5 without restarts).
 */
export function cosineWithWarmup(step: number, o: { lr: number; minLr: number; warmup: number; total: number }): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const progress = Math.min(1, (step - o.warmup) / Math.max(1, o.total - o.warmup));
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}

export const TEMPERATURE_SCHEDULES = ['constant', 'step', 'linear', 'cosine'] as const;
export type TemperatureSchedule = (typeof TEMPERATURE_SCHEDULES)[number];

/** A distillation temperature schedule: from `start` down to `min` (τ > 0 both). */
export interface TemperatureSpec {
  schedule: TemperatureSchedule;
  start: number;
  /** Floor of 'step', end point of 'linear' and 'cosine'; ignored by 'constant'. */
  min: number;
}

/** Where a step sits in the run: the schedules are pure functions of it (exact resume). */
export interface StepPosition {
  /** 0-based optimizer step. */
  step: number;
  /** 0-based epoch of that step. */
  epoch: number;
  /** Optimizer steps of the whole run. */
  totalSteps: number;
}

/**
 * Distillation temperature at a step:
 * - 'constant': `start`;
 * - 'step': the seed article's per-epoch schedule max(start − 0.5·epoch, min) (with start = 3,
 *   min = 1: 3, 2.5, 2, 1.5, 1, 1, …);
 * - 'linear': start + (min − start)·u, and 'cosine': min + ½(start − min)(1 + cos πu), both per
 *   optimizer step with u = step / (totalSteps − 1) ∈ [0, 1], so the first step trains at `start`
 *   and the last at `min` (decaying per step rather than per epoch works for one-epoch runs and
 *   max_steps alike).
 */
export function temperatureAt(spec: TemperatureSpec, at: StepPosition): number {
  const { start, min } = spec;
  const u = at.totalSteps > 1 ? Math.min(1, Math.max(0, at.step / (at.totalSteps - 1))) : 0;
  switch (spec.schedule) {
    case 'constant': return start;
    case 'step': return Math.max(start - 0.5 * at.epoch, min);
    case 'linear': return start + (min - start) * u;
    case 'cosine': return min + 0.5 * (start - min) * (1 + Math.cos(Math.PI * u));
  }
}

/**
 * The stored temperature nearest to `tau` among those in [lo, hi] (ties go to the higher one), for
 * continuous schedules in 'tail' mode, whose exact tail bucket needs a stored log_z.
 * @returns undefined when no stored temperature lies in [lo, hi].
 */
export function nearestStored(tau: number, stored: readonly number[], lo: number, hi: number): number | undefined {
  let best: number | undefined;
  for (const t of stored) {
    if (t < lo - 1e-9 || t > hi + 1e-9) continue;
    if (best === undefined || Math.abs(t - tau) < Math.abs(best - tau) - 1e-12 || (Math.abs(Math.abs(t - tau) - Math.abs(best - tau)) <= 1e-12 && t > best)) best = t;
  }
  return best;
}
