/**
 * Graph surgery on decoder ONNX models (DESIGN §3.4): replace the full [B, L, V] `logits`
 * output by what precompute stores (top-k ids/values and log-normalizers) or by what
 * evaluation needs (log-probabilities at the labels), so only small tensors leave the device.
 */
import { GraphBuilder } from './graph-builder.js';
import { attr, describeValueInfo, DT, valueInfo } from './proto.js';
import { editGraph, GraphView, viewGraph } from './raw.js';

/** Prefix of every value/node name we add, so it cannot clash with names in the user's graph. */
export const PREFIX = 'kd_surgery/';

/** Output names written by {@link addTopKOutputs} / {@link addScoringOutputs}. */
export const TOPK_OUTPUTS = ['topk_ids', 'topk_logits', 'log_z'] as const;
/**
 * The width of the teacher's logits as the graph computes them, int64 [1]: a graph may declare its
 * vocabulary dim symbolically and have an lm_head narrower than its embedding, so only a run shows it.
 */
export const WIDTH_OUTPUT = 'logits_width';
export const SCORING_OUTPUT = 'token_logprobs';

export interface TopKSurgeryOptions {
  /** Ids kept per position (1 ≤ k ≤ V). */
  k: number;
  /** Temperatures τ > 0 for which log_z is computed, in output order. */
  temperatures: number[];
  /** Name for error messages (e.g. the .onnx path). */
  source?: string;
}

/** Checks the model, returns a builder at its opset and `logits` cast to float32 [B, L, V]. */
export function startSurgery(bytes: Uint8Array, source: string): { g: GraphBuilder; logits: string; view: GraphView; vocab: number | string } {
  const view = viewGraph(bytes, source);
  const out = view.outputs.find((o) => o.name === 'logits');
  if (!out) {
    const names = view.outputs.map((o) => o.name).join(', ') || 'none';
    throw new Error(`${source}: ONNX model has no 'logits' output (outputs: ${names})`);
  }
  if (view.opset < 13) throw new Error(`${source}: ONNX opset ${view.opset} is too old for graph surgery (need ≥ 13)`);
  const g = new GraphBuilder(view.opset, PREFIX);
  const { elemType, dims } = describeValueInfo(out);
  const logits = elemType === DT.FLOAT ? 'logits' : g.op('Cast', ['logits'], [attr.int('to', DT.FLOAT)]);
  return { g, logits, view, vocab: dims.length === 3 ? dims[2] : '?' };
}

/**
 * Σ_j exp(s_j/τ) over the last axis for every τ: [B, L, |τ|] from s = logits − max ≤ 0 [B, L, V].
 * Temperatures are visited in descending order and exp(s/τ) is taken as exp(s/(2τ))² when 2τ was
 * already computed (τ = 2 from 4, 1 from 2, 1.5 from 3): one Mul instead of Mul + Exp, within a
 * few ulp. (ORT's CPU Sqrt, the other direction, was off by 1e-3 relative after two steps.)
 */
export function expSums(g: GraphBuilder, s: string, temperatures: number[]): string {
  const exps = new Map<number, string>();
  for (const t of [...new Set(temperatures)].sort((a, b) => b - a)) {
    const double = exps.get(2 * t);
    exps.set(t, double ? g.op('Mul', [double, double]) : g.op('Exp', [t === 1 ? s : g.op('Mul', [s, g.float([1 / t], [])])]));
  }
  const sums = temperatures.map((t) => g.reduce('ReduceSum', exps.get(t)!, [-1], true)); // [B, L, 1] each
  return sums.length === 1 ? sums[0] : g.op('Concat', sums, [attr.int('axis', -1)]);
}

/**
 * Replaces all graph outputs of a decoder model by:
 * - `topk_ids` int64 [batch_size, sequence_length, k]: TopK(logits, largest, sorted; ties to the
 *   lower id),
 * - `topk_logits` float [B, L, k]: top-k values − max(logits) (so the first is 0),
 * - `log_z` float [B, L, |τ|]: per τ, logsumexp(logits/τ) − max/τ (DESIGN §3.2), computed as
 *   Log(ReduceSum(exp((logits − max)/τ))): exponents ≤ 0 and the max term is exactly 1, so no
 *   overflow and no log(0). ORT's ReduceLogSumExp was ~3× slower on the CPU provider; see expSums
 *   for the squaring shortcut between temperatures that differ by a factor 2. (Splitting the
 *   vocabulary into cache-sized column chunks was tried: ±2 % on [1024, 4096], not kept.)
 * - `logits_width` int64 [1]: the last dim of `logits` (see {@link WIDTH_OUTPUT}).
 * fp16 (or other) logits are cast to float32 first. Other bytes of the model are kept as is.
 * @throws Error "<source>: ONNX model has no 'logits' output (outputs: …)"; "<source>: not an
 *   ONNX model (…)"; for k < 1, k > V, a temperature ≤ 0, or an opset < 13.
 */
export function addTopKOutputs(modelBytes: Uint8Array, opts: TopKSurgeryOptions): Uint8Array {
  const source = opts.source ?? 'model';
  const { k, temperatures } = opts;
  if (!Number.isInteger(k) || k < 1) throw new Error(`${source}: top-k k must be an integer ≥ 1, got ${k}`);
  if (temperatures.length === 0 || temperatures.some((t) => !(t > 0) || !Number.isFinite(t))) {
    throw new Error(`${source}: temperatures must be a non-empty list of finite values > 0, got [${temperatures}]`);
  }
  const { g, logits, vocab } = startSurgery(modelBytes, source);
  if (typeof vocab === 'number' && k > vocab) throw new Error(`${source}: top-k k = ${k} exceeds the vocabulary size ${vocab}`);
  const axisLast = attr.int('axis', -1);
  const values = g.fresh('topk_values');
  g.emit('TopK', [logits, g.int64([k])], [values, 'topk_ids'], [axisLast, attr.int('largest', 1), attr.int('sorted', 1)]);
  const max = g.slice(values, 0, 1, -1); // [B, L, 1]: sorted, so the first value is the max
  g.named('topk_logits', 'Sub', [values, max]);
  const total = expSums(g, g.op('Sub', [logits, max]), temperatures); // [B, L, |τ|]
  g.named('log_z', 'Log', [total]);
  g.named(WIDTH_OUTPUT, 'Slice', [g.op('Shape', [logits]), g.int64([-1]), g.int64([0x7fffffff])]);
  return editGraph(modelBytes, {
    dropOutputs: true,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [],
    outputs: topkOutputInfos(k, temperatures.length),
  }, source);
}

/** Value infos of the outputs precompute reads: topk_ids, topk_logits [B, L, k], log_z [B, L, T], logits_width. */
export function topkOutputInfos(k: number, numTemperatures: number) {
  const bl = ['batch_size', 'sequence_length'];
  return [
    valueInfo('topk_ids', DT.INT64, [...bl, k]),
    valueInfo('topk_logits', DT.FLOAT, [...bl, k]),
    valueInfo('log_z', DT.FLOAT, [...bl, numTemperatures]),
    valueInfo(WIDTH_OUTPUT, DT.INT64, [1]),
  ];
}

/**
 * Adds an input `labels` int64 [batch_size, sequence_length] and replaces all graph outputs by
 * `token_logprobs` float [B, L] = log_softmax(logits)[labels]. Labels are clamped to ≥ 0 so the
 * ignore index (−100) gathers a valid entry; the caller masks those positions.
 * @throws Error as {@link addTopKOutputs} for a non-ONNX model or one without `logits`, or when
 *   the model already has an input named `labels`.
 */
export function addScoringOutputs(modelBytes: Uint8Array, source = 'model'): Uint8Array {
  const { g, logits, view } = startSurgery(modelBytes, source);
  if (view.inputs.some((i) => i.name === 'labels')) {
    throw new Error(`${source}: ONNX model already has an input named 'labels'`);
  }
  const logp = g.op('LogSoftmax', [logits], [attr.int('axis', -1)]); // [B, L, V]
  const index = g.unsqueeze(g.op('Max', ['labels', g.int64([0], [])]), [-1]); // [B, L, 1]
  const picked = g.op('GatherElements', [logp, index], [attr.int('axis', -1)]);
  g.named(SCORING_OUTPUT, 'Squeeze', [picked, g.int64([-1])]);
  const bl = ['batch_size', 'sequence_length'];
  return editGraph(modelBytes, {
    dropOutputs: true,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo('labels', DT.INT64, bl)],
    outputs: [valueInfo(SCORING_OUTPUT, DT.FLOAT, bl)],
  }, source);
}
