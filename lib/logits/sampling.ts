/**
 * Random-sampling KD's draws (Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge
 * Distillation in LLMs", ACL 2025, arXiv 2503.16870, §3): per position, n token ids drawn with
 * replacement from the teacher's p_τg. The uniforms come from a counter-based hash of (seed,
 * sample id, position, draw), so a window's draws depend on nothing else: one worker or N, a
 * fresh run or a resume, any batch size, all give the same shards.
 *
 * Storage ("run-length (id, count)"): a position's n slots hold its draws sorted by descending
 * teacher logit (ties by id), so an id drawn c times fills c adjacent slots; the count of an id
 * is the length of its run, and every slot carries the same weight 1/n (see sampledWeights).
 */

/** Name of the uniform generator, recorded in the manifest (`sampling.uniforms`). */
export const UNIFORMS_KIND = 'kd-mix32-v1';

/** 32-bit finaliser of MurmurHash3 (fmix32): a bijection with full avalanche. */
function mix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Uniforms in [0, 1) for one window: [L·n], row-major [position, draw], each k/2^24 for an integer
 * k (exact in fp32). u = hash(seed, sampleId, t·n + j) with chained fmix32 rounds.
 * @param sampleId the window's sample_id (< 2^53)
 * @throws Error for a non-integer or negative sampleId / seed.
 */
export function sampleUniforms(seed: number, sampleId: number, L: number, n: number, out = new Float32Array(L * n)): Float32Array {
  if (!Number.isSafeInteger(sampleId) || sampleId < 0) throw new Error(`sampleUniforms: sample id must be an integer ≥ 0, got ${sampleId}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`sampleUniforms: seed must be an integer in [0, 2^32), got ${seed}`);
  const lo = sampleId >>> 0, hi = Math.floor(sampleId / 2 ** 32) >>> 0;
  const base = mix32(mix32(mix32(seed ^ 0x9e3779b9) ^ lo) ^ hi);
  for (let i = 0; i < L * n; i++) out[i] = (mix32(base ^ mix32(i + 0x6a09e667)) >>> 8) / 16777216;
  return out;
}

/**
 * The id the inverse CDF of p ∝ exp(s/τg) picks for uniform u: the first i with cdf_i > u·cdf_{V−1}·(1 − 2^-20),
 * cdf in fp32 as the ONNX graph computes it (CumSum of Exp). The factor keeps the threshold below the
 * total under rounding (it shifts ≤ 1e-6 of probability onto the first ids, below fp32 CumSum error).
 * Reference for tests and for small teachers; precompute samples inside the graph (lib/onnx/sample-graph.ts).
 * @param s [V] logits − max (≤ 0)
 */
export function inverseCdfDraw(s: Float32Array, tau: number, u: number): number {
  const cdf = new Float32Array(s.length);
  let acc = 0;
  for (let i = 0; i < s.length; i++) cdf[i] = acc = Math.fround(acc + Math.fround(Math.exp(Math.fround(s[i] / tau))));
  const thresh = Math.fround(Math.fround(u * cdf[s.length - 1]) * THRESHOLD_SCALE);
  for (let i = 0; i < s.length; i++) if (cdf[i] > thresh) return i;
  return s.length - 1;
}

/** 1 − 2^-20, see {@link inverseCdfDraw}. */
export const THRESHOLD_SCALE = 1 - 2 ** -20;

/**
 * Sorts each position's n draws into run-length order in place: descending value, ties by
 * ascending id, so equal ids are adjacent. ids/values [P·n].
 */
export function sortDraws(ids: Uint32Array | Int32Array, values: Float32Array, n: number): void {
  const order = new Array<number>(n), id = new Float64Array(n), val = new Float64Array(n);
  for (let p = 0; p < ids.length / n; p++) {
    const o = p * n;
    for (let j = 0; j < n; j++) { order[j] = j; id[j] = ids[o + j]; val[j] = values[o + j]; }
    order.sort((a, b) => val[b] - val[a] || id[a] - id[b]);
    for (let j = 0; j < n; j++) { ids[o + j] = id[order[j]]; values[o + j] = val[order[j]]; }
  }
}

/**
 * Weights of the sampled KD estimator, per slot: w_j = (1/n)·p_τ(x_j)/p_τg(x_j), with
 * log p_τ(x) = s_x/τ − logZ_τ. Draws x_1..x_n ~ p_τg i.i.d. give E[Σ_j w_j·f(x_j)] = Σ_i p_τ(i)·f(i)
 * (importance sampling; Anshumann et al. 2025 §3), so Σ_j w_j·(log p_τ − log q_τ)(x_j) is an unbiased
 * estimate of KL(p_τ ‖ q_τ) and its gradient in the student logits an unbiased estimate of the full
 * one. At τ = τg every weight is exactly 1/n (the paper's count/n targets).
 * @param values [N·n] stored s = z − max z at the draws
 * @param logZTau, logZGen [N] log-normalisers at τ and at τg
 * @returns [N·n] weights
 */
export function sampledWeights(values: Float32Array, n: number, tau: number, tauGen: number, logZTau: Float32Array, logZGen: Float32Array): Float32Array {
  const w = new Float32Array(values.length);
  if (tau === tauGen) return w.fill(1 / n);
  for (let i = 0; i < values.length; i++) {
    const p = Math.floor(i / n), s = values[i];
    w[i] = Math.exp(s / tau - logZTau[p] - (s / tauGen - logZGen[p])) / n;
  }
  return w;
}

/** Mean number of distinct ids per position of run-length-sorted draws [P·n] (adjacent equal ids form one run). */
export function meanUniqueIds(ids: ArrayLike<number>, n: number): number {
  const P = ids.length / n;
  let runs = 0;
  for (let p = 0; p < P; p++) for (let j = 0; j < n; j++) if (j === 0 || ids[p * n + j] !== ids[p * n + j - 1]) runs++;
  return P > 0 ? runs / P : 0;
}
