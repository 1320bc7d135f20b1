/**
 * What a lossy value codec costs, as a divergence: per position, KL(p ‖ p̂) between the teacher's
 * stored top-k distribution with exact values and with the codec's values, each over the k + 1
 * buckets the trainer's tail mode sees (the distinct slot ids plus the tail 1 − Σ, floored at
 * 1e-6 as lib/losses/topk.ts TAIL_FLOOR does, then normalised so that KL is a divergence).
 */

/** Tail floor, the trainer's TAIL_FLOOR (lib/losses/topk.ts). */
const TAIL_FLOOR = 1e-6;

/** Sum and maximum of per-position KL errors, in nats, over `positions` positions. */
export interface KlErrorTotals {
  sum: number;
  max: number;
  positions: number;
}

/** Zero totals, to add rows into. */
export function emptyKlTotals(): KlErrorTotals {
  return { sum: 0, max: 0, positions: 0 };
}

/**
 * Adds one row's per-position KL(p ‖ p̂) at temperature τ to `totals`:
 * p_j = exp(v_j/τ − log Z), p̂_j = exp(v̂_j/τ − log Z) over the distinct ids of each position
 * (repeats, as in sampled datasets, are adjacent and counted once), plus the tail bucket.
 * @param ids [L·k] slot ids in slot order (repeats adjacent)
 * @param exact [L·k] exact v = z − max z
 * @param decoded [L·k] the codec's v̂, same slots
 * @param logZ [L·T] per position log Z at each stored τ; column `tempIndex` is used
 * @param k slots per position; T = logZ.length / L
 */
export function addKlError(totals: KlErrorTotals, ids: ArrayLike<number>, exact: ArrayLike<number>, decoded: ArrayLike<number>,
  logZ: Float32Array, k: number, tempIndex: number, temperature: number): void {
  const L = exact.length / k, T = logZ.length / L;
  for (let t = 0; t < L; t++) {
    const lz = logZ[t * T + tempIndex];
    let massP = 0, massQ = 0, cross = 0;
    for (let j = 0; j < k; j++) {
      const s = t * k + j;
      if (j > 0 && ids[s] === ids[s - 1]) continue;
      const lp = exact[s] / temperature - lz, lq = decoded[s] / temperature - lz, p = Math.exp(lp);
      massP += p;
      massQ += Math.exp(lq);
      cross += p * (lp - lq);
    }
    const tailP = Math.max(1 - massP, TAIL_FLOOR), tailQ = Math.max(1 - massQ, TAIL_FLOOR);
    const zP = massP + tailP, zQ = massQ + tailQ;
    // KL of the normalised buckets: Σ (p/zP)·log((p/zP)/(q/zQ)).
    const kl = (cross + tailP * Math.log(tailP / tailQ)) / zP + Math.log(zQ / zP);
    totals.sum += kl;
    if (kl > totals.max) totals.max = kl;
    totals.positions++;
  }
}
