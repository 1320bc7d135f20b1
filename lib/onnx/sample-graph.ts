/**
 * Graph surgery for sampled mode (DESIGN §3.2 `sampled`; Anshumann et al., ACL 2025): the teacher
 * draws n ids per position from its own p_τg on the device, by inverse CDF, so that — as with
 * top-k — only [B, L, n] ids and values and [B, L, |τ|] normalisers leave onnxruntime.
 */
import { attr, DT, valueInfo } from './proto.js';
import { editGraph } from './raw.js';
import { expSums, startSurgery, topkOutputInfos, WIDTH_OUTPUT } from './topk-graph.js';
import { THRESHOLD_SCALE } from '../logits/sampling.js';

/** The uniforms input of a sampled graph: float [batch_size, sequence_length, n], in [0, 1). */
export const UNIFORMS_INPUT = 'sample_uniforms';

export interface SampledSurgeryOptions {
  /** Draws per position n ≥ 1. */
  samples: number;
  /** Sampling temperature τg > 0: draws come from softmax(z/τg). */
  samplingTemperature: number;
  /** Temperatures τ > 0 whose log_z is stored, in output order (must include τg). */
  temperatures: number[];
  /** Name for error messages (e.g. the .onnx path). */
  source?: string;
}

/** Ids per block of the two-level search. */
export const SEARCH_BLOCK = 256;

/**
 * For each threshold t_j, the first index i with cdf_i > t_j, as int64 [B, L, n]: first the block of
 * {@link SEARCH_BLOCK} ids whose last cdf value is the first above t_j, then the first id above t_j
 * inside it — the same index as one pass over all V ids (cdf is non-decreasing: a running fp32 sum
 * of non-negative terms never decreases), for n·(nb + 256) comparisons instead of n·V (nb = ⌈V/256⌉;
 * 16·12 + 256·12 at V = 4096, 594·12 + 256·12 at Qwen2.5's V = 152064). V is padded to nb·256 with
 * +∞, which no threshold below cdf_{V−1} reaches.
 * @param cdf float [B, L, V] @param thresh float [B, L, n], each < cdf_{V−1}
 */
function firstAbove(g: ReturnType<typeof startSurgery>['g'], cdf: string, thresh: string): string {
  const axis0 = attr.int('axis', 0), b = g.int64([SEARCH_BLOCK]);
  const shape = g.op('Shape', [cdf]);
  const bl = g.op('Slice', [shape, g.int64([0]), g.int64([2])]); // [B, L]
  const V = g.op('Slice', [shape, g.int64([2]), g.int64([3])]); // [1]
  const padLen = g.op('Mod', [g.op('Sub', [b, g.op('Mod', [V, b])]), b]);
  const padded = g.op('Pad', [cdf, g.op('Concat', [g.int64([0, 0, 0, 0, 0]), padLen], [axis0]), g.float([Infinity], [])]);
  const blocks = g.op('Reshape', [padded, g.op('Concat', [bl, g.int64([-1, SEARCH_BLOCK])], [axis0])]); // [B, L, nb, 256]
  const ends = g.op('Reshape', [g.slice(blocks, SEARCH_BLOCK - 1, SEARCH_BLOCK, 3), g.op('Concat', [bl, g.int64([1, -1])], [axis0])]); // [B, L, 1, nb]
  const t = g.unsqueeze(thresh, [3]); // [B, L, n, 1]
  const firstTrue = (x: string, keep: number) => g.op('ArgMax', [g.op('Cast', [x], [attr.int('to', DT.INT32)])], [attr.int('axis', 3), attr.int('keepdims', keep)]); // first maximum
  const block = firstTrue(g.op('Greater', [ends, t]), 1); // [B, L, n, 1]
  const rows = g.op('Expand', [block, g.op('Concat', [g.op('Shape', [thresh]), b], [axis0])]); // [B, L, n, 256]
  const inner = firstTrue(g.op('Greater', [g.op('GatherElements', [blocks, rows], [attr.int('axis', 2)]), t]), 0); // [B, L, n]
  return g.op('Add', [g.op('Mul', [g.squeeze(block, [3]), b]), inner]);
}

/**
 * Adds input {@link UNIFORMS_INPUT} and replaces all outputs by the outputs of addTopKOutputs, with
 * the n draws in place of the top k (so precompute reads both graphs alike):
 * - `topk_ids` int64 [B, L, n]: draw j = the first id i with cdf_i > u_j·cdf_{V−1}·(1 − 2^-20),
 *   cdf = CumSum(exp((z − max z)/τg)) in fp32 — the inverse CDF of p_τg (lib/logits/sampling.ts
 *   inverseCdfDraw is the same in JS). Taking the first id above the threshold never picks an id
 *   whose exp underflowed to 0 (its cdf equals its predecessor's).
 * - `topk_logits` float [B, L, n]: z − max z at the drawn ids (unsorted; precompute sorts them).
 * - `log_z` float [B, L, |τ|] and `logits_width` as in addTopKOutputs.
 * The search is two-level (firstAbove): about n·(V/256 + 256) comparisons per position instead of n·V.
 * @throws Error for n < 1, τg ≤ 0, τg not among the temperatures, a model without `logits`, an
 *   opset < 14 (CumSum over a float needs 14), or one that already has the uniforms input.
 */
export function addSampledOutputs(modelBytes: Uint8Array, opts: SampledSurgeryOptions): Uint8Array {
  const source = opts.source ?? 'model';
  const { samples: n, samplingTemperature: tg, temperatures } = opts;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${source}: samples must be an integer ≥ 1, got ${n}`);
  if (!(tg > 0) || !Number.isFinite(tg)) throw new Error(`${source}: sampling temperature must be > 0, got ${tg}`);
  if (temperatures.length === 0 || temperatures.some((t) => !(t > 0) || !Number.isFinite(t))) {
    throw new Error(`${source}: temperatures must be a non-empty list of finite values > 0, got [${temperatures}]`);
  }
  if (!temperatures.includes(tg)) throw new Error(`${source}: the sampling temperature ${tg} must be one of the stored temperatures [${temperatures}] (its log_z weights the draws)`);
  const { g, logits, view } = startSurgery(modelBytes, source);
  if (view.opset < 14) throw new Error(`${source}: ONNX opset ${view.opset} is too old for sampled mode (CumSum on floats needs ≥ 14)`);
  if (view.inputs.some((i) => i.name === UNIFORMS_INPUT)) throw new Error(`${source}: ONNX model already has an input named '${UNIFORMS_INPUT}'`);
  const last = attr.int('axis', -1);
  const max = g.reduce('ReduceMax', logits, [-1], true); // [B, L, 1]
  const s = g.op('Sub', [logits, max]); // [B, L, V], ≤ 0
  const e = g.op('Exp', [tg === 1 ? s : g.op('Mul', [s, g.float([1 / tg], [])])]);
  const cdf = g.op('CumSum', [e, g.int64([-1], [])]); // [B, L, V]
  const total = g.slice(cdf, -1, 0x7fffffff, -1); // [B, L, 1]
  const thresh = g.op('Mul', [g.op('Mul', [UNIFORMS_INPUT, total]), g.float([THRESHOLD_SCALE], [])]); // [B, L, n]
  g.named('topk_ids', 'Identity', [firstAbove(g, cdf, thresh)]);
  g.named('topk_logits', 'GatherElements', [s, 'topk_ids'], [last]);
  g.named('log_z', 'Log', [expSums(g, s, temperatures)]);
  g.named(WIDTH_OUTPUT, 'Slice', [g.op('Shape', [logits]), g.int64([-1]), g.int64([0x7fffffff])]);
  const bl = ['batch_size', 'sequence_length'];
  return editGraph(modelBytes, {
    dropOutputs: true,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(UNIFORMS_INPUT, DT.FLOAT, [...bl, n])],
    outputs: topkOutputInfos(n, temperatures.length),
  }, source);
}
