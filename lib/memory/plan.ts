/**
 * The memory plan: bytes one training step of kd's trainer needs, as a pure function of the model
 * config, the batch shape and the memory options — and the choice of options that fits a budget.
 *
 * What TF.js holds (read from lib/model, lib/losses, lib/train and tfjs-core's engine):
 * - for the whole run: weights, AdamW's m and v (fp32: 3 × 4 bytes per parameter);
 * - during the backward pass: every tensor the tape saved in the forward pass and the gradient of
 *   every tensor on the tape stay live until the backward pass ends (engine.gradients disposes
 *   them together), plus the weight gradients as they form. With recomputation a layer's tape
 *   lives only while that layer is recomputed; blocked attention and the chunked loss recompute
 *   one block's probabilities / one chunk's logits at a time.
 * - after it: the gradients (clipByGlobalNorm replaces them one at a time) and AdamW's three
 *   temporaries of one variable (adamw.ts updates one variable at a time).
 * The stock wasm backend copies every tensor the tape saves (its Identity kernel copies; the cpu
 * and TensorFlow backends, and wasm with kd's kernels (lib/backend/wasm-kernels.ts), share the
 * buffer), so it needs more per activation, and a copy of each weight a matMul saves.
 * The activation terms are sums of features (counts of floats, below) times coefficients
 * (floats kept per feature unit) counted on real steps: scripts/calibrate-memory.ts measures
 * them, test/memory-plan.test.ts checks the totals against measured peaks.
 */
import { countParameters, headDim, LlamaConfig, llamaTensorShapes } from '../model/config.js';
import { MemoryOptions, UNCHUNKED } from './options.js';
import { COEFFICIENTS, FEATURE_NAMES, FeatureName } from './coefficients.js';

/** How the backend stores what the tape saves: 'copies' (the stock wasm kernels) or 'shares' (cpu, TensorFlow CPU/GPU, wasm with kd's kernels). */
export type SavedTensors = 'copies' | 'shares';

/** Everything the plan depends on. */
export interface PlanInput {
  model: LlamaConfig;
  seqLen: number;
  batchSize: number;
  /** Micro-batches per optimizer step (a second gradient buffer when > 1). */
  gradAccum: number;
  memory: MemoryOptions;
  /** Distillation: top-k of the teacher signal, its mode and α (α = 0: CE only, no teacher tensors). */
  loss: { k: number; mode: 'tail' | 'renormalize'; alpha: number };
  dropout: boolean;
  /** Gradient clipping on (kept for the record: clipping replaces the gradients one at a time, no copy). */
  gradClip: boolean;
  saved: SavedTensors;
}

/** The plan's numbers, bytes. */
export interface MemoryPlan {
  parameters: number;
  weights_bytes: number;
  gradients_bytes: number;
  optimizer_bytes: number;
  /** Tensors kept for the backward pass (saved activations and their gradients) at its peak. */
  activations_bytes: number;
  /** The largest short-lived piece: one attention block, one loss chunk, or one optimizer update. */
  transient_bytes: number;
  transient: 'attention block' | 'loss chunk' | 'optimizer update';
  /** The step's peak: the larger of the backward pass and the optimizer update. */
  total_bytes: number;
  /** Which phase the peak is in. */
  peak_phase: 'backward' | 'optimizer';
  memory: MemoryOptions;
}

const F32 = 4;

/** Feature values (floats) of a step: what the coefficients multiply. */
export function planFeatures(p: PlanInput): Record<FeatureName, number> {
  const c = p.model, n = c.num_hidden_layers, L = p.seqLen, B = p.batchSize, N = B * L;
  const d = c.hidden_size, f = c.intermediate_size, hd = headDim(c), H = c.num_attention_heads, KV = c.num_key_value_heads;
  const q = H * hd, kv = KV * hd, V = c.vocab_size;
  const Lb = Math.min(p.memory.attentionQueryBlock, L), blocked = Lb < L;
  const Nc = Math.min(p.memory.lossChunk, N), chunks = Math.ceil(N / Nc);
  const groups = p.loss.alpha > 0 && p.loss.alpha < 1 ? 2 : 1; // softmaxes over V: one per distinct τ
  const k = p.loss.alpha > 0 ? p.loss.k : 0;
  const layerMatrices = llamaTensorShapes(c).filter(([name, s]) => name.startsWith('model.layers.0.') && s.length === 2).reduce((a, [, s]) => a + s[0] * s[1], 0);
  // Keys seen per query block, summed over blocks (causal: block b sees keys < its end).
  let keysSeen = 0;
  for (let q0 = 0; q0 < L; q0 += Lb) keysSeen += Math.min(L, q0 + Lb);
  const kept = p.memory.recompute ? 1 : n; // layers whose whole tape is live at the backward peak
  // Unblocked, every kept layer's scores and probabilities are on the tape; blocked, only the block
  // being (re)computed exists, in any layer.
  const scores = blocked ? B * H * Lb * L : kept * B * H * L * L;
  const x: Record<FeatureName, number> = {
    layer_d: kept * N * d, layer_f: kept * N * f, layer_qkv: kept * N * (q + kv), layer_scores: scores,
    layer_block_keys: blocked ? kept * B * kv * keysSeen : 0, layer_weights: kept * layerMatrices,
    layer_dropout: p.dropout ? kept * N * d : 0, layer_dropout_scores: p.dropout ? scores : 0,
    recompute_inputs: p.memory.recompute ? n * N * d : 0,
    head_logits: Nc * V * groups, head_chunks_weights: chunks > 1 ? chunks * d * V : 0, head_d: N * d, head_topk: N * k,
    head_vd: c.tie_word_embeddings ? 0 : V * d, head_vd_tied: c.tie_word_embeddings ? V * d : 0, // the tied head is a transposed copy, with its own gradient
    tables: (blocked ? 0 : (H / KV) * L * L) + 2 * (H / KV + 1) * L * hd,
  };
  return x;
}

/**
 * The memory plan of one optimizer step.
 * @throws Error when the batch shape is not positive integers.
 */
export function planMemory(p: PlanInput): MemoryPlan {
  for (const [name, v] of [['seq_len', p.seqLen], ['batch_size', p.batchSize], ['grad_accum', p.gradAccum]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`memory plan: ${name} must be an integer ≥ 1, got ${v}`);
  }
  const P = countParameters(p.model);
  const largest = Math.max(...llamaTensorShapes(p.model).map(([, s]) => s.reduce((a, b) => a * b, 1)));
  const coef = COEFFICIENTS[p.saved][p.memory.recompute ? 'recompute' : 'plain'];
  const x = planFeatures(p);
  const act = FEATURE_NAMES.reduce((sum, name) => sum + coef[name] * x[name], 0);
  const grads = P * (p.gradAccum > 1 ? 2 : 1); // the running sum and this micro-batch's
  const backward = 3 * P + grads + act;
  // Optimizer: gradients and three temporaries of the largest variable; with accumulation the
  // sum, the last micro-batch's gradients and the new sum exist at once before (loop.ts).
  const update = 3 * P + P + 3 * largest;
  const accumulate = p.gradAccum > 1 ? 6 * P : 0;
  const optimizerPeak = Math.max(update, accumulate);
  const transients = {
    'attention block': (coef.layer_scores * x.layer_scores + coef.layer_dropout_scores * x.layer_dropout_scores) / (p.memory.attentionQueryBlock < p.seqLen || p.memory.recompute ? 1 : p.model.num_hidden_layers),
    'loss chunk': coef.head_logits * x.head_logits,
    'optimizer update': 3 * largest,
  };
  const [transient, t] = (Object.entries(transients) as [MemoryPlan['transient'], number][]).sort((a, b) => b[1] - a[1])[0];
  return {
    parameters: P, weights_bytes: F32 * P, gradients_bytes: F32 * grads, optimizer_bytes: F32 * 2 * P,
    activations_bytes: Math.round(F32 * act), transient_bytes: Math.round(F32 * t), transient,
    total_bytes: Math.round(F32 * Math.max(backward, optimizerPeak)), peak_phase: backward >= optimizerPeak ? 'backward' : 'optimizer',
    memory: p.memory,
  };
}

/** Candidate settings, cheapest (fastest) first: what choosePlan tries in order. */
export function candidateOptions(L: number, N: number): MemoryOptions[] {
  const sizes = (top: number) => [...new Set([Number.POSITIVE_INFINITY, ...[4096, 2048, 1024, 512, 256, 128, 64].filter((s) => s < top)])];
  const out: MemoryOptions[] = [];
  for (const recompute of [false, true]) {
    for (const lossChunk of sizes(N)) {
      for (const attentionQueryBlock of sizes(L)) out.push({ recompute, attentionQueryBlock, lossChunk });
    }
  }
  return out;
}

/** The choice of {@link choosePlan}. */
export interface PlanChoice {
  plan: MemoryPlan;
  /** Plans tried that did not fit, for the message. */
  tried: number;
}

/**
 * Picks the memory options of a run: unchunked without recomputation when that fits `budget`,
 * else the first candidate (candidateOptions: no recomputation before recomputation, large chunks
 * before small) that fits. `fixed.recompute` forces recomputation on or off.
 * @param budget bytes the backend can hold (Infinity: no limit, gives the unchunked plan)
 * @throws Error `<where>: does not fit <budget>: …` with the smallest plan's numbers when none fits.
 */
export function choosePlan(input: Omit<PlanInput, 'memory'>, budget: number, fixed: { recompute?: boolean } = {}, where = 'memory plan'): PlanChoice {
  const N = input.seqLen * input.batchSize;
  const candidates = candidateOptions(input.seqLen, N).filter((m) => fixed.recompute === undefined || m.recompute === fixed.recompute);
  let best: MemoryPlan | undefined;
  for (const [i, memory] of candidates.entries()) {
    const plan = planMemory({ ...input, memory: normalise(memory, input.seqLen, N) });
    if (plan.total_bytes <= budget) return { plan, tried: i };
    if (!best || plan.total_bytes < best.total_bytes) best = plan;
  }
  throw new Error(`${where}: ${describeFit(best!, input.seqLen, input.batchSize)} does not fit the ${formatBytes(budget)} budget even with the smallest setting (${describeOptions(best!.memory)}); reduce --batch-size or the sequence length, or use a device with more memory`);
}

/**
 * The leanest plan: the first candidate (in choosePlan's order, fastest first) within 2 % of the
 * smallest total, so that tiny savings do not cost tiny blocks. What `kd plan` shows without a budget.
 */
export function leanestPlan(input: Omit<PlanInput, 'memory'>, fixed: { recompute?: boolean } = {}): MemoryPlan {
  const N = input.seqLen * input.batchSize;
  const plans = candidateOptions(input.seqLen, N).filter((m) => fixed.recompute === undefined || m.recompute === fixed.recompute)
    .map((m) => planMemory({ ...input, memory: normalise(m, input.seqLen, N) }));
  const least = Math.min(...plans.map((p) => p.total_bytes));
  return plans.find((p) => p.total_bytes <= least * 1.02)!;
}

/** Infinity where the size covers everything, so equal plans print the same. */
function normalise(m: MemoryOptions, L: number, N: number): MemoryOptions {
  return { recompute: m.recompute, attentionQueryBlock: m.attentionQueryBlock >= L ? UNCHUNKED.attentionQueryBlock : m.attentionQueryBlock, lossChunk: m.lossChunk >= N ? UNCHUNKED.lossChunk : m.lossChunk };
}

/** "1.5 GiB" (binary units, one decimal). */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return 'unlimited';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** "recompute on, attention blocks of 256 queries, loss chunks of 1024 positions". */
export function describeOptions(m: MemoryOptions): string {
  const block = Number.isFinite(m.attentionQueryBlock) ? `attention blocks of ${m.attentionQueryBlock} queries` : 'attention unblocked';
  const chunk = Number.isFinite(m.lossChunk) ? `loss chunks of ${m.lossChunk} positions` : 'loss unchunked';
  return `recompute ${m.recompute ? 'on' : 'off'}, ${block}, ${chunk}`;
}

/** The plan in one line: "L = 2048, B = 1: 21.3 GiB = weights 4.1 + gradients 4.1 + AdamW 8.2 + activations 3.9 GiB (peak in backward)". */
export function describeFit(p: MemoryPlan, L: number, B: number): string {
  const g = (b: number) => (b / 1024 ** 3).toFixed(2);
  return `L = ${L}, B = ${B}: ${formatBytes(p.total_bytes)} at the peak (${p.peak_phase}; weights ${g(p.weights_bytes)} + gradients ${g(p.gradients_bytes)} + AdamW moments ${g(p.optimizer_bytes)} GiB, activations kept ${g(p.activations_bytes)} GiB, largest transient ${g(p.transient_bytes)} GiB: ${p.transient})`;
}
