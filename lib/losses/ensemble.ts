/**
 * Ensemble distillation (seed article §8.1; DESIGN §4 "ensemble"): the target is the weighted
 * mixture p = Σ_i w_i p_i of several teachers' distributions over the same positions, each teacher
 * known only through its top-k ids, their logits and its log_z at τ (the exact normaliser).
 *
 * Where the top-k sets differ, teacher i's probability of an id outside its own top-k I_i is not
 * stored: only its total tail mass t_i = 1 − Σ_{j∈I_i} p_i(j) is. The estimator completes each teacher
 * by spreading t_i uniformly over the V − k_i ids outside I_i (the maximum-entropy completion given
 * what is stored):
 *
 *   p̃_i(j) = p_i(j) for j ∈ I_i,   t_i / (V − k_i) otherwise;      p̃ = Σ_i w_i p̃_i.
 *
 * p̃ is a distribution over the whole vocab, so the buckets the loss sees (the merged ids, plus the
 * rest as the tail bucket) are an exact aggregation of p̃ and sum to 1. Exact when every k_i = V.
 * Bound: p̃_i and p_i agree on I_i and put the same mass t_i on its complement, so
 * TV(p̃_i, p_i) ≤ t_i and, by convexity, TV(p̃, p) ≤ Σ_i w_i t_i — on any bucketing as well.
 * (Assigning 0 outside I_i instead would bias every such id low by up to w_i·p_i^(k_i).)
 */

/** Floor of p̃ before the log (fill ids get p̃ = 0 when every tail is 0): finite logits, no −inf·0. */
const MIN_PROB = 1e-30;

/** One teacher's top-k rows for N positions at one temperature (host side). */
export interface EnsembleMember {
  /** Top-k size k_i. */
  k: number;
  /** [N·k_i] top-k ids per position. */
  ids: Int32Array;
  /** [N·k_i] z − max z at those ids. */
  logits: Float32Array;
  /** [N] logsumexp(z/τ) − max(z)/τ at the temperature τ in use. */
  logZ: Float32Array;
}

/** The merged signal: K = Σ k_i ids per position, sorted by p̃ descending (TeacherSignal's layout). */
export interface EnsembleRows {
  K: number;
  /** [N·K] distinct ids per position: the union of the members' top-k, filled with the lowest other ids. */
  ids: Int32Array;
  /** [N·K] τ·(log p̃ − log p̃_max), so that p̃ = exp(logits/τ − logZ). */
  logits: Float32Array;
  /** [N] −log p̃_max (the normaliser of `logits` at τ). */
  logZ: Float32Array;
}

/**
 * Merges the members' top-k signals at τ into one top-K signal of the completed mixture p̃ (module
 * comment). Runs in float64 per position; O(N · K · n).
 * @param members n ≥ 1 teachers' rows over the same N positions, k_i ≤ realVocab
 * @param weights n mixture weights w_i ≥ 0 summing to 1 (within 1e-6)
 * @param N positions; tau temperature τ > 0 of logits and logZ; realVocab V
 * @throws Error when weights and members disagree in number, a weight is negative or they do not sum
 *   to 1, or an id is outside [0, V)
 */
export function ensembleRows(members: EnsembleMember[], weights: number[], N: number, tau: number, realVocab: number): EnsembleRows {
  checkWeights(weights, members.length);
  const K = Math.min(realVocab, members.reduce((s, m) => s + m.k, 0));
  const ids = new Int32Array(N * K), logits = new Float32Array(N * K), logZ = new Float32Array(N);
  const prob = new Float64Array(realVocab), inUnion = new Uint8Array(realVocab);
  const rowIds = new Int32Array(K), order = new Int32Array(K);
  for (let t = 0; t < N; t++) {
    // Each member's stored probabilities and the uniform share s_i of its tail.
    let spread = 0, n = 0;
    const shares = members.map((m) => {
      let inTopK = 0;
      for (let c = 0; c < m.k; c++) inTopK += Math.exp(m.logits[t * m.k + c] / tau - m.logZ[t]);
      return m.k < realVocab ? Math.max(0, 1 - inTopK) / (realVocab - m.k) : 0;
    });
    members.forEach((_, i) => { spread += weights[i] * shares[i]; });
    members.forEach((m, i) => {
      for (let c = 0; c < m.k; c++) {
        const j = m.ids[t * m.k + c];
        if (!(j >= 0 && j < realVocab)) throw new Error(`ensemble: teacher ${i} id ${j} at position ${t} is outside the vocab [0, ${realVocab})`);
        if (!inUnion[j]) { inUnion[j] = 1; prob[j] = spread; rowIds[n++] = j; }
        // Replace member i's share at j by its stored probability.
        prob[j] += weights[i] * (Math.exp(m.logits[t * m.k + c] / tau - m.logZ[t]) - shares[i]);
      }
    });
    for (let j = 0; n < K; j++) if (!inUnion[j]) { inUnion[j] = 1; prob[j] = spread; rowIds[n++] = j; }
    for (let c = 0; c < K; c++) order[c] = c;
    order.sort((a, b) => prob[rowIds[b]] - prob[rowIds[a]]);
    const logMax = Math.log(prob[rowIds[order[0]]]);
    for (let c = 0; c < K; c++) {
      const j = rowIds[order[c]];
      ids[t * K + c] = j;
      logits[t * K + c] = tau * (Math.log(Math.max(prob[j], MIN_PROB)) - logMax); // a zero tail gives p̃ = 0 at fill ids
      inUnion[j] = 0;
    }
    logZ[t] = -logMax;
  }
  return { K, ids, logits, logZ };
}

/** @throws Error unless there is one weight per member, each ≥ 0, summing to 1 within 1e-6. */
export function checkWeights(weights: number[], members: number): void {
  if (weights.length !== members) throw new Error(`ensemble: ${weights.length} weights for ${members} teachers`);
  if (weights.some((w) => !(w >= 0) || !Number.isFinite(w))) throw new Error(`ensemble: weights ${weights.join(', ')} must be finite and ≥ 0`);
  const sum = weights.reduce((s, w) => s + w, 0);
  if (Math.abs(sum - 1) > 1e-6) throw new Error(`ensemble: weights ${weights.join(', ')} sum to ${sum}, not 1`);
}
