import { mulberry32, normalSampler } from './random.js';

/** What kind of fixed projection a dataset's hidden states went through (manifest `hidden.projection.kind`). */
export const PROJECTION_KIND = 'gaussian-mulberry32-boxmuller';

/**
 * The fixed random projection P [rows, dim] of `kd precompute --hidden-dim` (Johnson–Lindenstrauss
 * style: E‖xP‖² = ‖x‖²), regenerable from the seed alone:
 * P[r, c] = n_{r·dim + c} / √dim, where n_0, n_1, … are standard normals from Box–Muller
 * (`normalSampler`: √(−2 ln(1 − u₁)) · cos(2π u₂), two uniforms per sample) over the uniforms of
 * mulberry32(seed) (lib/util/random.ts), in that order. Computed in float64; the graph uses its
 * float32 rounding.
 * @returns row-major [rows·dim] float64 values
 */
export function randomProjection(rows: number, dim: number, seed: number): Float64Array {
  const normal = normalSampler(mulberry32(seed)), scale = 1 / Math.sqrt(dim);
  const out = new Float64Array(rows * dim);
  for (let i = 0; i < out.length; i++) out[i] = normal() * scale;
  return out;
}
