import * as tf from '@tensorflow/tfjs-core';
import { checkTargets, countTargets, liveMask, nllAt, safeTargets } from './cross-entropy.js';
import { checkJsdBeta } from './jsd.js';
import { getLoss, type LossName } from './registry.js';
import type { TeacherSignal, TopKMode } from './signal.js';
import { studentLogProbsAtGroups, type IdGroup } from './student-logprobs.js';
import { bucketLogProbs, checkSignal } from './topk.js';
import { sampledForwardKl } from './sampled.js';

/** Options of the distillation loss (validated on every call; cheap). */
export interface DistillOptions {
  /** Weight of the KD term, in [0, 1]: 1 = pure distillation, 0 = plain CE (no teacher needed). */
  alpha: number;
  /** Temperature τ > 0 of both teacher and student in the KD term (CE is always at τ = 1). */
  temperature: number;
  /** Divergence of the KD term (see LOSSES). */
  loss: LossName;
  /** Handling of the mass outside the teacher's top-k (see TopKMode). */
  mode: TopKMode;
  /** Real vocab size; logits columns at and beyond it are padding and get no mass. */
  realVocab: number;
  /** Generalized JSD β, 0 < β < 1 (loss 'jsd' only; default 0.5). */
  beta?: number;
  /** Skew KL λ, 0 ≤ λ < 1 (loss 'skew_kl' only; default 0.1). */
  lambda?: number;
}

/** The loss and its parts; the caller owns (and disposes) the three tensors. */
export interface DistillResult {
  /** Scalar to minimise: [α·kdSum + (1 − α)·ceSum] / normalizer. */
  total: tf.Scalar;
  /** Σ_t τ²·KD_t over the scored positions (0, not computed, when α = 0). */
  kdSum: tf.Scalar;
  /** Σ_t CE_t over the scored positions (0, not computed, when α = 1). */
  ceSum: tf.Scalar;
  /** Number of scored positions (target ≠ −100) in this call. */
  tokens: number;
}

/**
 * Distillation loss of DESIGN §4, token-averaged:
 *
 *   total = (1/N) Σ_t [α·τ²·KD_t + (1 − α)·CE_t],   N = #{t : target_t ≠ −100},
 *
 * with KD_t = D(p_τ ‖ q_τ) over the teacher's top-k buckets (topk.ts) and D from LOSSES;
 * τ² keeps the soft-target gradients on the scale of the hard ones (Hinton et al. 2015,
 * §2). N = 0 gives total 0 with a zero (finite) gradient. α = 0 skips the KD term (the
 * signal may be undefined), α = 1 skips CE. Reads the targets back to count N.
 * @param studentLogits float32 [N, V] (flatten [B, L, V] first), V ≥ realVocab
 * @param signal teacher top-k signal for the same N positions (undefined only if α = 0)
 * @param targets int32 [N], next-token ids or −100
 */
export function distillationLoss(
  studentLogits: tf.Tensor2D,
  signal: TeacherSignal | undefined,
  targets: tf.Tensor1D,
  opts: DistillOptions,
): DistillResult {
  return distill(studentLogits, signal, targets, opts, undefined);
}

/**
 * As distillationLoss, but total = Σ_t [α·τ²·KD_t + (1 − α)·CE_t] / normalizer, for
 * gradient accumulation: pass the scored-token count of all micro-batches of the step,
 * so that their summed gradients equal those of one big batch.
 * @param normalizer > 0 (may be 0 only when this call has no scored positions)
 */
export function distillationLossNormalized(
  studentLogits: tf.Tensor2D,
  signal: TeacherSignal | undefined,
  targets: tf.Tensor1D,
  opts: DistillOptions,
  normalizer: number,
): DistillResult {
  if (!(normalizer >= 0) || !Number.isFinite(normalizer)) throw new Error(`normalizer must be a finite token count ≥ 0, got ${normalizer}`);
  return distill(studentLogits, signal, targets, opts, normalizer);
}

function distill(
  studentLogits: tf.Tensor2D,
  signal: TeacherSignal | undefined,
  targets: tf.Tensor1D,
  opts: DistillOptions,
  normalizer: number | undefined,
): DistillResult {
  if (studentLogits.rank !== 2) throw new Error(`student logits [${studentLogits.shape}] must be [N, V]; flatten [B, L, V] first`);
  const [n, v] = studentLogits.shape;
  const tokens = checkDistillInputs(n, v, signal, targets, opts);
  const denom = normalizer ?? tokens;
  if (denom === 0 && tokens > 0) throw new Error(`normalizer is 0 but this batch has ${tokens} scored positions`);
  const { total, kdSum, ceSum } = tf.tidy(() => {
    const { kdSum, ceSum } = lossSums(studentLogits, signal, targets, opts);
    return { kdSum, ceSum, total: combineSums(kdSum, ceSum, opts.alpha, denom) };
  });
  return { total, kdSum, ceSum, tokens };
}

/**
 * Checks the options and the shapes of N positions of a V-wide student against the teacher
 * signal and targets (as distillationLoss does), then counts the scored positions.
 * @returns the number of targets ≠ −100 (reads the targets back)
 * @throws Error naming the offending value or shapes.
 */
export function checkDistillInputs(n: number, v: number, signal: TeacherSignal | undefined, targets: tf.Tensor1D, opts: DistillOptions): number {
  checkOptions(opts, v);
  checkTargets(targets, n);
  if (opts.alpha > 0) {
    if (!signal) throw new Error(`alpha = ${opts.alpha} > 0 needs a teacher signal`);
    checkSignal(signal, signal.weights ? 'tail' : opts.mode); // sampled: logZ needed, whatever topk_mode says
    if (signal.weights && opts.loss !== 'forward_kl') throw new Error(`loss '${opts.loss}' needs the teacher's top-k; a sampled dataset's draws estimate forward_kl only (Anshumann et al. 2025)`);
    if (signal.ids.shape[0] !== n) throw new Error(`teacher ids [${signal.ids.shape}] and student logits [${n},${v}] differ in positions`);
  }
  return countTargets(targets, opts.realVocab);
}

/** [α·kdSum + (1 − α)·ceSum] / max(denom, 1): the differentiated scalar. */
export function combineSums(kdSum: tf.Scalar, ceSum: tf.Scalar, alpha: number, denom: number): tf.Scalar {
  return tf.div(tf.add(tf.mul(kdSum, alpha), tf.mul(ceSum, 1 - alpha)), Math.max(denom, 1)) as tf.Scalar;
}

/**
 * The two sums of the loss over N positions, without checks or normaliser:
 * kdSum = Σ_t τ²·KD_t and ceSum = Σ_t CE_t over positions with target ≠ −100 (each a zero
 * scalar when its weight, α resp. 1 − α, is 0). Inputs as distillationLoss, already checked
 * (see checkDistillInputs). Differentiable in `studentLogits`; the caller tidies.
 */
export function lossSums(
  studentLogits: tf.Tensor2D,
  signal: TeacherSignal | undefined,
  targets: tf.Tensor1D,
  opts: DistillOptions,
): { kdSum: tf.Scalar; ceSum: tf.Scalar } {
  const { alpha, temperature: tau, realVocab } = opts;
  const useKD = alpha > 0, useCE = alpha < 1;
  const live = liveMask(targets); // bool [N]
  const tgt = safeTargets(targets).reshape([-1, 1]) as tf.Tensor2D; // [N, 1]
  // One fused op for both terms: one softmax per distinct τ, one scatter in backprop.
  const groups: IdGroup[] = [];
  if (useKD) groups.push({ ids: (signal as TeacherSignal).ids, temperature: tau });
  if (useCE) groups.push({ ids: tgt, temperature: 1 });
  const logQs = studentLogProbsAtGroups(studentLogits, groups, realVocab);
  const kdLogQ = useKD ? logQs[0] : undefined; // [N, k]
  const ceLogQ = useCE ? logQs[groups.length - 1] : undefined; // [N, 1]
  const kdSum = kdLogQ ? tf.mul(maskedSum(kdPerPosition(kdLogQ, signal as TeacherSignal, opts), live), tau * tau) : tf.scalar(0);
  const ceSum = ceLogQ ? tf.sum(nllAt(ceLogQ.reshape([-1]) as tf.Tensor1D, targets)) : tf.scalar(0);
  return { kdSum: kdSum as tf.Scalar, ceSum: ceSum as tf.Scalar };
}

/** KD_t (without τ²) per position from the student's log-probs at the teacher ids: [N]. */
function kdPerPosition(studentLogQ: tf.Tensor2D, signal: TeacherSignal, opts: DistillOptions): tf.Tensor1D {
  if (signal.weights) return sampledForwardKl(studentLogQ, signal, opts.temperature);
  const { logP, logQ } = bucketLogProbs(signal, studentLogQ, opts.temperature, opts.mode);
  return getLoss(opts.loss)(logP, logQ, { beta: opts.beta, lambda: opts.lambda });
}

/**
 * Σ_t values_t over positions where `live` holds: the token sum of distillationLoss.
 * Other positions add exactly 0 (even where their values are ±inf or NaN) and pass a
 * zero upstream gradient. values [N], live bool [N] → scalar.
 */
export function maskedSum(values: tf.Tensor1D, live: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.where(live, values, tf.zerosLike(values))) as tf.Scalar);
}

function checkOptions(opts: DistillOptions, v: number): void {
  const { alpha, temperature, realVocab } = opts;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`alpha must be in [0, 1], got ${alpha}`);
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new Error(`temperature must be > 0, got ${temperature}`);
  if (!Number.isInteger(realVocab) || realVocab < 1 || realVocab > v) {
    throw new Error(`realVocab must be an integer in [1, ${v}] (the student logits' width), got ${realVocab}`);
  }
  getLoss(opts.loss); // throws on unknown names, with a suggestion
  if (opts.loss === 'jsd' && opts.beta !== undefined) checkJsdBeta(opts.beta);
}
