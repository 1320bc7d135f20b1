/** Additive bias of a masked attention score: large but finite, so a fully masked row is never NaN. */
export const MASK_BIAS = -1e9;

/**
 * The additive causal mask of G stacked query-head groups, optionally with a sliding window:
 * row r is query position t = r mod L, and key s is visible iff s ≤ t and, with window w,
 * s > t − w (the query and its w − 1 predecessors; HF masking_utils' sliding_window_overlay).
 * @param window null for full causal attention, else w ≥ 1
 * @returns [G·L, L] row-major: 0 where visible, MASK_BIAS elsewhere
 */
export function attentionMask(L: number, G: number, window: number | null): Float32Array {
  const mask = new Float32Array(G * L * L);
  for (let r = 0; r < G * L; r++) {
    const t = r % L, first = window === null ? 0 : Math.max(0, t - window + 1);
    for (let s = 0; s < L; s++) if (s < first || s > t) mask[r * L + s] = MASK_BIAS;
  }
  return mask;
}
