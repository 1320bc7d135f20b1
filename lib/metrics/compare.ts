/**
 * How far one model's next-token distributions are from another's on the same inputs: top-1
 * agreement, mean KL(A‖B) over the full (real) vocabulary, and each model's NLL at the targets.
 * Pure arithmetic on logits; `onnx-compare.ts` feeds it from two ONNX sessions.
 */

/** Summary of a comparison; KL and NLL in nats. */
export interface ComparisonResult {
  /** Positions compared. */
  positions: number;
  /** Fraction of positions where argmax A = argmax B (ties → lowest id). */
  top1_agreement: number;
  /** Mean over positions of KL(p_A ‖ p_B) = Σ_v p_A(v)·(log p_A(v) − log p_B(v)). */
  mean_kl: number;
  /** Largest per-position KL(A‖B). */
  max_kl: number;
  /** Positions with a target (−1 targets are not scored). */
  scored_tokens: number;
  /** exp(mean NLL of the targets) under A and under B (DESIGN §5, token-weighted); NaN without targets. */
  ppl_a: number;
  ppl_b: number;
}

/** log-softmax of row[0:n] in float64 into `out`; returns the argmax (lowest id on ties). */
function logSoftmax(row: Float32Array, n: number, out: Float64Array): number {
  let arg = 0;
  for (let i = 1; i < n; i++) if (row[i] > row[arg]) arg = i;
  const max = row[arg];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = row[i] - lse;
  return arg;
}

/** Accumulates {@link ComparisonResult} over batches of logits (float64 sums). */
export class LogitComparison {
  private positions = 0;
  private agree = 0;
  private klSum = 0;
  private klMax = 0;
  private scored = 0;
  private nllA = 0;
  private nllB = 0;
  private readonly la: Float64Array;
  private readonly lb: Float64Array;

  /**
   * @param width logits per position as the models emit them (V)
   * @param realVocab entries that exist (≤ V); padded rows beyond it get no probability mass
   */
  constructor(readonly width: number, readonly realVocab = width) {
    if (!(realVocab >= 1 && realVocab <= width)) throw new Error(`LogitComparison: real vocab ${realVocab} must be in [1, ${width}]`);
    this.la = new Float64Array(realVocab);
    this.lb = new Float64Array(realVocab);
  }

  /**
   * Adds `n` positions.
   * @param a logits of model A [n·V] @param b logits of model B [n·V]
   * @param targets [n] next-token ids, −1 = not scored (optional)
   * @throws Error when the sizes are not n·V, or when A or B has a non-finite logit (naming the position).
   */
  add(a: Float32Array, b: Float32Array, n: number, targets?: ArrayLike<number>): void {
    const V = this.width, R = this.realVocab;
    if (a.length !== n * V || b.length !== n * V) throw new Error(`LogitComparison: got ${a.length} and ${b.length} logits, expected ${n} × ${V}`);
    for (let p = 0; p < n; p++) {
      const ra = a.subarray(p * V, p * V + R), rb = b.subarray(p * V, p * V + R);
      const argA = logSoftmax(ra, R, this.la), argB = logSoftmax(rb, R, this.lb);
      if (!Number.isFinite(this.la[argA]) || !Number.isFinite(this.lb[argB])) {
        throw new Error(`LogitComparison: non-finite logits at position ${this.positions + p} (${Number.isFinite(this.la[argA]) ? 'B' : 'A'})`);
      }
      if (argA === argB) this.agree++;
      let kl = 0;
      for (let i = 0; i < R; i++) kl += Math.exp(this.la[i]) * (this.la[i] - this.lb[i]);
      this.klSum += kl;
      this.klMax = Math.max(this.klMax, kl);
      const t = targets ? targets[p] : -1;
      if (t >= 0) {
        if (t >= R) throw new Error(`LogitComparison: target id ${t} at position ${this.positions + p} is outside the vocabulary (${R})`);
        this.scored++;
        this.nllA -= this.la[t];
        this.nllB -= this.lb[t];
      }
    }
    this.positions += n;
  }

  result(): ComparisonResult {
    const n = this.positions, s = this.scored;
    return {
      positions: n, top1_agreement: this.agree / n, mean_kl: this.klSum / n, max_kl: this.klMax, scored_tokens: s,
      ppl_a: s ? Math.exp(this.nllA / s) : NaN, ppl_b: s ? Math.exp(this.nllB / s) : NaN,
    };
  }
}
