/**
 * What a logit dataset says about its teacher, from the stored top-k alone (for `kd inspect`).
 *
 * Per position, at the temperature τ (1 when stored): p_i = exp(v_i − log_z_τ·…) for the stored
 * ids, with v_i = (z_i − max z)/τ, so
 * - covered mass  m = Σ_topk p_i (exact up to the fp16 rounding of v_i), tail r = 1 − m;
 * - entropy H = −Σ_all p log p is bracketed without the tail's shape: every tail probability
 *   is ≤ p_k (the smallest stored one), hence
 *     H ≥ H_k + r·(−log p_k)               (tail packed into entries of size p_k),
 *     H ≤ H_k + r·log((V − k)/r)          (tail spread evenly over the V − k other rows),
 *   with H_k = −Σ_topk p_i log p_i and V the teacher's logit width. Both bounds are exact when
 *   r = 0; the gap shrinks with r.
 */

/** Per-position distributions of a statistic over all positions. */
export interface MassSummary {
  mean: number;
  /** 5th percentile (positions with the least covered mass), to 1e-5. */
  p05: number;
  min: number;
}

/** Result of {@link TeacherStats}. */
export interface TeacherStatsResult {
  positions: number;
  /** Temperature the numbers are computed at. */
  temperature: number;
  /** Σ_topk p_i per position. */
  topk_mass: MassSummary;
  /** Mean probability of the top-1 id. */
  top1_prob_mean: number;
  /** Mean teacher entropy, nats: lower and upper bound (see the module comment). */
  entropy_nats: { lower: number; upper: number };
}

const BINS = 100_000;

/** Streaming accumulator of teacher statistics over rows of a logit dataset. */
export class TeacherStats {
  private readonly hist = new Uint32Array(BINS + 1);
  private n = 0;
  private massSum = 0;
  private massMin = Infinity;
  private top1Sum = 0;
  private hLow = 0;
  private hHigh = 0;
  private readonly tauIndex: number;
  readonly temperature: number;

  /**
   * @param k stored ids per position
   * @param temperatures stored temperatures (log_z column order); statistics use τ = 1 when
   *   stored, else the first
   * @param vocab logit width of the teacher (V in the upper entropy bound)
   */
  constructor(private readonly k: number, private readonly temperatures: number[], private readonly vocab: number) {
    const one = temperatures.indexOf(1);
    this.tauIndex = one >= 0 ? one : 0;
    this.temperature = temperatures[this.tauIndex];
  }

  /**
   * Adds every position of one row.
   * @param topkLogits [L·k] z_i − max z, sorted descending per position
   * @param logZ [L·T] logsumexp(z/τ) − max(z)/τ per stored τ
   * @param ids [L·k] the slots' ids, for sampled datasets: a repeated draw (adjacent equal ids)
   *   counts once; absent: every slot is a distinct id (top-k)
   */
  add(topkLogits: Float32Array, logZ: Float32Array, ids?: ArrayLike<number>): void {
    const { k } = this, T = this.temperatures.length, tau = this.temperature;
    const L = topkLogits.length / k;
    for (let t = 0; t < L; t++) {
      const lz = logZ[t * T + this.tauIndex];
      let mass = 0, h = 0, logPk = 0, distinct = 0;
      for (let j = 0; j < k; j++) {
        if (ids && j > 0 && ids[t * k + j] === ids[t * k + j - 1]) continue;
        distinct++;
        const logP = topkLogits[t * k + j] / tau - lz;
        const p = Math.exp(logP);
        mass += p;
        h -= p * logP;
        logPk = logP;
      }
      if (mass > 1) mass = 1; // fp16 rounding of the stored logits
      const r = 1 - mass;
      this.hLow += h + (r > 0 ? -r * logPk : 0);
      this.hHigh += h + (r > 0 && this.vocab > distinct ? r * Math.log((this.vocab - distinct) / r) : 0);
      this.top1Sum += Math.exp(topkLogits[t * k] / tau - lz);
      this.massSum += mass;
      if (mass < this.massMin) this.massMin = mass;
      this.hist[Math.floor(mass * BINS)]++;
      this.n++;
    }
  }

  /** The statistics so far (NaN fields when no position was added). */
  result(): TeacherStatsResult {
    const n = this.n;
    let p05 = NaN;
    for (let i = 0, seen = 0; i <= BINS && n > 0; i++) {
      seen += this.hist[i];
      if (seen >= 0.05 * n) { p05 = i / BINS; break; }
    }
    return {
      positions: n, temperature: this.temperature,
      topk_mass: { mean: this.massSum / n, p05, min: n > 0 ? this.massMin : NaN },
      top1_prob_mean: this.top1Sum / n,
      entropy_nats: { lower: this.hLow / n, upper: this.hHigh / n },
    };
  }
}
