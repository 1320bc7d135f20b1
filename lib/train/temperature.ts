import { TrainConfig } from './config.js';
import { nearestStored, StepPosition, temperatureAt, TemperatureSpec } from './schedule.js';

/** The temperature a run uses at each step, and a one-line note on how it was chosen. */
export interface TemperaturePlan {
  at(pos: StepPosition): number;
  note: string;
}

/**
 * Resolves the config's temperature schedule against the temperatures a logit dataset stored.
 *
 * 'renormalize' mode (or α = 0) needs no stored log_z: every schedule runs exactly as written.
 * 'tail' mode needs log_z at the temperature used, so:
 * - 'constant' and 'step' must only reach stored temperatures (every epoch of `cfg.epochs` checked);
 * - 'linear' and 'cosine' must start and end on stored temperatures, and every step snaps to the
 *   stored temperature nearest the schedule's value within [temperature_min, temperature] — a
 *   staircase through the stored set, e.g. 4 → 3.5 → … → 1 with the default set. The note says so.
 * @throws Error naming the stored temperatures when a needed one is missing.
 */
export function planTemperature(cfg: TrainConfig, stored: readonly number[]): TemperaturePlan {
  const spec: TemperatureSpec = { schedule: cfg.temperature_schedule, start: cfg.temperature, min: cfg.temperature_min };
  const exact = { at: (pos: StepPosition) => temperatureAt(spec, pos), note: describe(spec) };
  if (cfg.alpha === 0 || cfg.topk_mode === 'renormalize') return exact;
  if (spec.schedule === 'constant' || spec.schedule === 'step') {
    for (let epoch = 0; epoch < cfg.epochs; epoch++) requireStored(temperatureAt(spec, { step: 0, epoch, totalSteps: 1 }), stored);
    return exact;
  }
  requireStored(spec.start, stored);
  requireStored(spec.min, stored);
  const steps = stored.filter((t) => t >= spec.min - 1e-9 && t <= spec.start + 1e-9).sort((a, b) => b - a);
  return {
    at: (pos) => nearestStored(temperatureAt(spec, pos), stored, spec.min, spec.start)!,
    note: `${describe(spec)}, snapped in tail mode to the nearest stored temperature (${steps.join(' → ')}); topk_mode 'renormalize' follows the schedule exactly`,
  };
}

/** @throws Error unless `tau` is one of the stored temperatures (to 1e-6). */
export function requireStored(tau: number, stored: readonly number[]): number {
  const i = stored.findIndex((t) => Math.abs(t - tau) < 1e-6);
  if (i < 0) throw new Error(`temperature ${Number(tau.toPrecision(6))} was not stored by precompute (stored: ${stored.join(', ')}); use one of those or topk_mode 'renormalize'`);
  return i;
}

function describe(s: TemperatureSpec): string {
  switch (s.schedule) {
    case 'constant': return `τ=${s.start} (constant)`;
    case 'step': return `τ=max(${s.start} − 0.5·epoch, ${s.min}) (step)`;
    default: return `τ ${s.start} → ${s.min} (${s.schedule} per step)`;
  }
}
