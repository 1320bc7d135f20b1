import { forwardKL } from './forward-kl.js';
import { jsd } from './jsd.js';
import { reverseKL } from './reverse-kl.js';
import { skewKL } from './skew-kl.js';
import { tvd } from './tvd.js';
import type { Divergence } from './types.js';

/** The distillation divergences by config name. */
export const LOSSES = {
  forward_kl: forwardKL,
  reverse_kl: reverseKL,
  jsd,
  tvd,
  skew_kl: skewKL,
} as const satisfies Record<string, Divergence>;

export type LossName = keyof typeof LOSSES;
export const LOSS_NAMES = Object.keys(LOSSES) as LossName[];

/** True when `name` is a registered loss. */
export function isLossName(name: string): name is LossName {
  return Object.prototype.hasOwnProperty.call(LOSSES, name);
}

/**
 * The divergence registered as `name`.
 * @throws Error listing the valid names and suggesting the closest one.
 */
export function getLoss(name: string): Divergence {
  if (isLossName(name)) return LOSSES[name];
  const closest = [...LOSS_NAMES].sort((a, b) => editDistance(name, a) - editDistance(name, b))[0];
  throw new Error(`unknown loss '${name}'; valid: ${LOSS_NAMES.join(', ')}. Did you mean '${closest}'?`);
}

/** Levenshtein distance, case-insensitive, '-' and '_' alike. */
function editDistance(a: string, b: string): number {
  const s = a.toLowerCase().replace(/-/g, '_');
  const t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    for (let j = 1; j <= t.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[t.length];
}
