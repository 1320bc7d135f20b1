/**
 * Learning rate at optimizer step `step` (0-based): linear warmup to `lr` over `warmup` steps, then
 * cosine decay to `minLr` at `total` steps (Loshchilov & Hutter 2017, SGDR eq. 5 without restarts).
 */
export function cosineWithWarmup(step: number, o: { lr: number; minLr: number; warmup: number; total: number }): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const progress = Math.min(1, (step - o.warmup) / Math.max(1, o.total - o.warmup));
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}

export type TemperatureSchedule = 'constant' | 'step';

/**
 * Distillation temperature for a (0-based) epoch: 'constant' gives `t`; 'step' is the seed article's
 * per-epoch schedule max(t − 0.5·epoch, 1) (with t = 3: 3, 2.5, 2, 1.5, 1, 1, …).
 */
export function temperatureAt(schedule: TemperatureSchedule, t: number, epoch: number): number {
  return schedule === 'constant' ? t : Math.max(t - 0.5 * epoch, 1);
}
