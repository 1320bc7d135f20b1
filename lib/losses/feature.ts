/**
 * Hidden-state (feature) distillation terms: the student's residual state h_s at a layer, mapped by
 * W into the teacher's stored space, against the teacher's state h_t at its layer (DESIGN §4:
 * `β_feat · MSE(W·h_s, h_t)`).
 * - `mse`: FitNets' hint loss with a learned regressor (Romero et al. 2015, "FitNets: Hints for
 *   Thin Deep Nets", eq. 3): ½‖u_h − r(v)‖² there; here the mean over the feature dimension,
 *   (1/d_t) Σ_j ((h_s W)_j − h_t,j)², so its scale does not grow with the width.
 * - `cosine`: DistilBERT's cosine embedding loss on hidden states (Sanh et al. 2019, §3):
 *   1 − cos(h_s W, h_t).
 * Both are summed over positions with a target (mask 1); the caller divides by the step's target
 * count N, as for the KD and CE terms, so gradient accumulation equals one large batch.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Feature distances by name. */
export const FEATURE_LOSSES = ['mse', 'cosine'] as const;
export type FeatureLossName = (typeof FEATURE_LOSSES)[number];

/** Guard of the cosine's norms: cos = a·b / max(‖a‖‖b‖, ε), so zero states give 1 − 0 = 1, not NaN. */
const COS_EPS = 1e-8;

/**
 * Σ_t mask_t · dist(h_s,t W, h_t,t) over positions (see the module comment for dist).
 * @param student h_s [N, d_s] float32
 * @param teacher h_t [N, d_t] float32
 * @param W [d_s, d_t], or undefined for the identity (then d_s must equal d_t)
 * @param mask [N] 1 where the position has a target, else 0
 * @returns scalar, the masked sum (not normalised)
 * @throws Error naming both shapes when they do not fit, or for an unknown loss name.
 */
export function featureLossSum(student: tf.Tensor2D, teacher: tf.Tensor2D, W: tf.Tensor2D | undefined, mask: tf.Tensor1D, kind: FeatureLossName): tf.Scalar {
  const [N, ds] = student.shape, [Nt, dt] = teacher.shape;
  if (N !== Nt || mask.shape[0] !== N) throw new Error(`feature loss: student [${student.shape}], teacher [${teacher.shape}] and mask [${mask.shape}] must have the same positions`);
  if (W ? W.shape[0] !== ds || W.shape[1] !== dt : ds !== dt) {
    throw new Error(`feature loss: student [${student.shape}] cannot map onto teacher [${teacher.shape}] with W ${W ? `[${W.shape}]` : '= identity'}`);
  }
  if (!(FEATURE_LOSSES as readonly string[]).includes(kind)) throw new Error(`feature loss '${kind}' is unknown (valid: ${FEATURE_LOSSES.join(', ')})`);
  return tf.tidy(() => {
    const mapped = W ? tf.matMul(student, W) : student; // [N, d_t]
    const perPosition = kind === 'mse'
      ? tf.mean(tf.squaredDifference(mapped, teacher), -1) // [N]
      : tf.sub(1, tf.div(tf.sum(tf.mul(mapped, teacher), -1), tf.maximum(tf.mul(tf.norm(mapped, 2, -1), tf.norm(teacher, 2, -1)), COS_EPS)));
    return tf.sum(tf.mul(perPosition, mask)) as tf.Scalar;
  });
}
