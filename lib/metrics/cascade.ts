/**
 * Dynamic distillation as a student → teacher cascade (seed article §8.3): per position the
 * student answers when it is confident, otherwise the teacher does. Scores are per scored
 * position; the curve sweeps the confidence threshold.
 */

/** How the student's confidence at a position is measured. */
export type Confidence = 'max_prob' | 'entropy';
export const CONFIDENCES: readonly Confidence[] = ['max_prob', 'entropy'];

/** Per scored position (targets ≠ −100), in order: float64 NLL of the target, max probability, entropy (nats). */
export interface PositionScores { nll: Float64Array; maxProb: Float64Array; entropy: Float64Array }

/**
 * Scores of the positions with a label from full logits, by a float64 log-softmax over the real vocab.
 * @param logits float32 [N, V] (V ≥ realVocab; columns ≥ realVocab are padding and ignored)
 * @param labels [N] target ids, −100 = not scored
 * @returns arrays of length #{labels ≠ −100}
 */
export function positionScores(logits: Float32Array, V: number, labels: ArrayLike<number | bigint>, realVocab: number): PositionScores {
  const N = labels.length;
  const scored: number[] = [];
  for (let t = 0; t < N; t++) if (Number(labels[t]) !== -100) scored.push(t);
  const nll = new Float64Array(scored.length), maxProb = new Float64Array(scored.length), entropy = new Float64Array(scored.length);
  scored.forEach((t, i) => {
    const row = logits.subarray(t * V, t * V + realVocab);
    let max = -Infinity;
    for (const z of row) if (z > max) max = z;
    let sum = 0, weighted = 0;
    for (const z of row) { const e = Math.exp(z - max); sum += e; weighted += e * (z - max); }
    const logSum = Math.log(sum);
    nll[i] = logSum - (row[Number(labels[t])] - max);
    maxProb[i] = 1 / sum;
    entropy[i] = logSum - weighted / sum; // H = log Σe − Σ p·(z − max)
  });
  return { nll, maxProb, entropy };
}

/** One threshold of the cascade. */
export interface CascadePoint {
  confidence: Confidence;
  /** Student answers when max_prob ≥ threshold (max_prob) or entropy ≤ threshold (entropy). */
  threshold: number;
  /** exp(Σ NLL of the answering model / N). */
  ppl: number;
  /** Share of positions routed to the teacher. */
  teacher_share: number;
  /** FLOPs per token: the student's (it always runs) + teacher_share × the teacher's. */
  flops_per_token: number;
}

/**
 * The cascade at each threshold: perplexity of the per-position choice, routed share, compute.
 * @param student, teacher scores over the same positions (teacher's nll only is used)
 * @param flops forward FLOPs per token of each model (e.g. {@link forwardFlopsPerToken})
 * @throws Error when the two score sets differ in length or are empty
 */
export function cascadeCurve(student: PositionScores, teacher: Pick<PositionScores, 'nll'>, confidence: Confidence, thresholds: number[],
  flops: { student: number; teacher: number }): CascadePoint[] {
  const N = student.nll.length;
  if (N === 0) throw new Error('cascade: no scored positions');
  if (teacher.nll.length !== N) throw new Error(`cascade: ${N} student positions but ${teacher.nll.length} teacher positions`);
  return thresholds.map((threshold) => {
    let nll = 0, routed = 0;
    for (let i = 0; i < N; i++) {
      const confident = confidence === 'max_prob' ? student.maxProb[i] >= threshold : student.entropy[i] <= threshold;
      if (confident) nll += student.nll[i]; else { nll += teacher.nll[i]; routed++; }
    }
    const share = routed / N;
    return { confidence, threshold, ppl: Math.exp(nll / N), teacher_share: share, flops_per_token: flops.student + share * flops.teacher };
  });
}

/**
 * Forward FLOPs per token of a decoder LM, 2 × the weights of its matrix multiplies (Kaplan et
 * al. 2020, §2.1: C_forward ≈ 2N; attention's context-length term and the embedding lookup left out).
 * @param c HF config keys (head_dim defaults to hidden_size / num_attention_heads)
 */
export function forwardFlopsPerToken(c: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads?: number; head_dim?: number | null; vocab_size: number }): number {
  const d = c.hidden_size, hd = c.head_dim ?? d / c.num_attention_heads, kv = c.num_key_value_heads ?? c.num_attention_heads;
  const perLayer = d * c.num_attention_heads * hd * 2 + d * kv * hd * 2 + 3 * d * c.intermediate_size;
  return 2 * (c.num_hidden_layers * perLayer + d * c.vocab_size);
}
