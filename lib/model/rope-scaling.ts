/**
 * RoPE without TF.js: HF `rope_scaling` config values (keys, checks), the inverse frequencies and
 * the cos/sin tables, so that reading a config.json (kd plan, config validation) or building an
 * ONNX graph (kd precompute, kd teacher export) does not load TF.js. lib/model/rope.ts applies them.
 */

/**
 * HF `rope_scaling` as a config.json holds it. `rope_type` (or its old name `type`) selects the
 * variant; kd implements 'default', 'linear' and 'llama3' (transformers' modeling_rope_utils.py).
 */
export interface RopeScaling {
  rope_type?: string;
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** Keys each implemented rope_type takes (HF's `_validate_*_parameters` required keys). */
const ROPE_KEYS: Record<string, string[]> = {
  default: [],
  linear: ['factor'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

/** The rope variant of a config: 'default' without rope_scaling. */
export const ropeType = (s: RopeScaling | null | undefined): string => (s ? s.rope_type ?? s.type ?? 'default' : 'default');

/**
 * Checks a `rope_scaling` value. @returns the problem as `<key> <what>` (key `rope_scaling` or
 * `rope_scaling.<field>`), or undefined when kd implements it exactly.
 */
export function checkRopeScaling(v: unknown): { key: string; problem: string } | undefined {
  if (v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) return { key: 'rope_scaling', problem: 'must be an object such as {"rope_type": "llama3", ...} or null' };
  const s = v as Record<string, unknown>;
  if (s.rope_type !== undefined && s.type !== undefined && s.rope_type !== s.type) {
    return { key: 'rope_scaling.type', problem: `'${String(s.type)}' disagrees with rope_type '${String(s.rope_type)}'` };
  }
  const kind = ropeType(s as RopeScaling);
  const keys = ROPE_KEYS[kind];
  if (!keys) return { key: 'rope_scaling.rope_type', problem: `'${kind}' is not implemented by kd (only ${Object.keys(ROPE_KEYS).join(', ')})` };
  for (const k of keys) {
    if (typeof s[k] !== 'number' || !Number.isFinite(s[k]) || (s[k] as number) <= 0) return { key: `rope_scaling.${k}`, problem: `must be a number > 0 for rope_type '${kind}'` };
  }
  for (const k of Object.keys(s)) {
    if (k !== 'rope_type' && k !== 'type' && !keys.includes(k)) return { key: `rope_scaling.${k}`, problem: `is not a parameter of rope_type '${kind}' (it takes ${keys.join(', ') || 'none'})` };
  }
  if (kind === 'llama3' && (s.high_freq_factor as number) <= (s.low_freq_factor as number)) {
    return { key: 'rope_scaling.high_freq_factor', problem: 'must be greater than low_freq_factor' };
  }
  return undefined;
}

/**
 * Inverse frequencies of the rotary embedding, θ^(−2i/d) for i < d/2 (Su et al. 2021, eq. 15),
 * rescaled as transformers' rope init functions do:
 * - linear (`_compute_linear_scaling_rope_parameters`): every frequency / factor;
 * - llama3 (`_compute_llama3_parameters`): with wavelength λ = 2π/f and original context C,
 *   λ < C/high_freq_factor keeps f, λ > C/low_freq_factor gives f/factor, and in between
 *   (1 − s)·f/factor + s·f with s = (C/λ − low_freq_factor) / (high_freq_factor − low_freq_factor).
 * Computed in float64 (HF uses float32; the difference is ~1e-7 relative). All three have
 * attention scaling 1, so cos/sin are not rescaled.
 * @param scaling a `rope_scaling` that passed {@link checkRopeScaling}, or null/undefined
 * @returns [headDim / 2] frequencies in radians per position
 */
export function ropeInvFreq(headDim: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  const f = Float64Array.from({ length: headDim / 2 }, (_, i) => Math.pow(theta, (-2 * i) / headDim));
  const kind = ropeType(scaling);
  if (kind === 'linear') return f.map((x) => x / scaling!.factor!);
  if (kind !== 'llama3') return f;
  const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: ctx } = scaling as Required<RopeScaling>;
  return f.map((x) => {
    const wavelen = (2 * Math.PI) / x;
    if (wavelen < ctx / hi) return x;
    if (wavelen > ctx / lo) return x / factor;
    const s = (ctx / wavelen - lo) / (hi - lo);
    return ((1 - s) * x) / factor + s * x;
  });
}

/**
 * Rotary position embedding tables, Hugging Face (non-interleaved) layout:
 * angle[t, i] = t·invFreq[i], cos/sin = cat(angle, angle). Source: Su et al. 2021 (RoFormer)
 * eq. 34, as implemented by `LlamaRotaryEmbedding`.
 * @param invFreq [headDim / 2] (see {@link ropeInvFreq})
 * @returns cos, sin [seqLen, headDim] float32 (host arrays; positions 0..seqLen−1)
 */
export function ropeTables(seqLen: number, invFreq: ArrayLike<number>): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length, headDim = 2 * half;
  const cos = new Float32Array(seqLen * headDim), sin = new Float32Array(seqLen * headDim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * invFreq[i];
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[t * headDim + i] = cos[t * headDim + i + half] = c;
      sin[t * headDim + i] = sin[t * headDim + i + half] = s;
    }
  }
  return { cos, sin };
}
