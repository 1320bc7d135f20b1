/**
 * Floats kept per unit of each feature of lib/memory/plan.ts at the backward pass's peak, by how
 * the backend stores saved tensors and whether layers are recomputed. Counted on real training
 * steps by scripts/calibrate-memory.ts (a non-negative least-squares fit of measured peaks; rerun
 * it after changing what the model, the losses or the trainer keep) and checked against new
 * measurements by test/memory-plan.test.ts.
 */

/** The features, floats each (see planFeatures for their definitions). */
export const FEATURE_NAMES = [
  'layer_d', 'layer_f', 'layer_qkv', 'layer_scores', 'layer_block_keys', 'layer_weights', 'layer_dropout', 'layer_dropout_scores',
  'recompute_inputs', 'head_logits', 'head_chunks_weights', 'head_d', 'head_topk', 'head_vd', 'head_vd_tied', 'tables',
] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];
type Table = Record<FeatureName, number>;

/**
 * COEFFICIENTS[saved][recompute ? 'recompute' : 'plain'] (scripts/calibrate-memory.ts, 40 configurations each, seed 1):
 * 'copies' on the stock wasm kernels, 'shares' on cpu (wasm with kd's kernels measures the same peaks).
 */
export const COEFFICIENTS: Record<'copies' | 'shares', Record<'plain' | 'recompute', Table>> = {
  copies: {
    plain: { layer_d: 23.1, layer_f: 19.64, layer_qkv: 22.89, layer_scores: 5.93, layer_block_keys: 6.14, layer_weights: 2.22, layer_dropout: 55.29, layer_dropout_scores: 39.16, recompute_inputs: 0, head_logits: 2.68, head_chunks_weights: 0.69, head_d: 10.9, head_topk: 40.15, head_vd: 2.16, head_vd_tied: 3.61, tables: 1.48 },
    recompute: { layer_d: 33.1, layer_f: 22.67, layer_qkv: 17.73, layer_scores: 5.9, layer_block_keys: 0, layer_weights: 2.73, layer_dropout: 40.38, layer_dropout_scores: 44.45, recompute_inputs: 0, head_logits: 2.06, head_chunks_weights: 0.52, head_d: 0, head_topk: 30.2, head_vd: 2.23, head_vd_tied: 2.67, tables: 4.04 },
  },
  shares: {
    plain: { layer_d: 16.65, layer_f: 17.24, layer_qkv: 18.91, layer_scores: 4.97, layer_block_keys: 3.83, layer_weights: 0.7, layer_dropout: 46.81, layer_dropout_scores: 29.19, recompute_inputs: 0, head_logits: 2.26, head_chunks_weights: 0, head_d: 9.57, head_topk: 30.91, head_vd: 1.74, head_vd_tied: 4.08, tables: 1.32 },
    recompute: { layer_d: 26.57, layer_f: 18.12, layer_qkv: 17.04, layer_scores: 5.46, layer_block_keys: 0, layer_weights: 1.13, layer_dropout: 40.16, layer_dropout_scores: 29.81, recompute_inputs: 0, head_logits: 2.28, head_chunks_weights: 0, head_d: 0, head_topk: 18.8, head_vd: 0.91, head_vd_tied: 2.51, tables: 0.96 },
  },
};
