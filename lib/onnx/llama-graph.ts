/**
 * The Llama forward pass (HF `LlamaForCausalLM` semantics, and the Qwen2 / Mistral variants:
 * projection biases, sliding-window masks, see model/architectures.ts; rope_scaling variants via
 * model/rope.ts's inverse frequencies) as ONNX nodes, in three precisions and with or without a
 * KV cache. `export-llama.ts` declares the graph IO around it.
 *
 * Precision (`dtype`):
 * - fp32: everything float32.
 * - fp16: weights, residual stream, projections, attention MatMuls and logits in float16; as in
 *   HF's fp16 models, RMSNorm statistics, the rotary tables and the attention softmax (with its
 *   mask) are float32 between Casts.
 * - int4: float32 activations; every q/k/v/o/gate/up/down weight is block-quantized to 4 bits for
 *   `com.microsoft.MatMulNBits` (see `int4.ts`); the embedding, the norms and the LM head stay
 *   float32 (quantizing the head moves every logit, and the embedding is a Gather, not a MatMul).
 * - int8: float32 activations; the same weights per-output-channel int8 (see `int8.ts`) as QDQ:
 *   an INT8 initializer [in, out] and a float32 scale per column → DequantizeLinear (axis 1) →
 *   MatMul. Measured against MatMulNBits with bits = 8 (`scripts/int8-layouts.ts`): as fast or
 *   faster at every shape, 12× at decode-sized products, and no 256-block limit.
 *
 * Where they run (ONNX Runtime 1.30; `scripts/onnx-placement.ts` prints it for any model):
 * - CPU provider, x86-64 (measured here, AVX2 without AVX512-FP16): MLAS has no fp16 GEMM, so
 *   ORT's InsertCastTransformer wraps the fp16 MatMuls, Adds, Muls and the rotary ops in Casts and
 *   stores their weights as fp32; only Gather/Reshape/Transpose/Split move fp16 data. fp16 is then
 *   fp32 arithmetic on fp16-rounded weights and activations, and slower than fp32 (the Casts).
 *   int4 runs natively: MatMulNBits (fp32 A, 4-bit B) with no inserted Cast; int8's
 *   DequantizeLinear runs natively (ORT may constant-fold it into an fp32 weight at load).
 * - CUDA provider (not measured here, no GPU; per ORT's kernel registrations): fp16 kernels exist
 *   for every op in these graphs (MatMul, Softmax, SimplifiedLayerNormalization, elementwise) and
 *   MatMulNBits has float and float16 kernels, so fp16 and int4 run on the GPU as written.
 */
import { layerWindow, ProjectionBiases, projectionBiases } from '../model/architectures.js';
import { headDim, LlamaConfig } from '../model/config.js';
import { ropeInvFreq } from '../model/rope-scaling.js';
import { HostTensor, NamedTensors } from '../model/tensors.js';
import { encodeHalf } from '../logits/fp16.js';
import { GraphBuilder } from './graph-builder.js';
import { quantizeInt4 } from './int4.js';
import { quantizeInt8 } from './int8.js';
import { attr, DT, floatTensor, halfTensor, int8Tensor, OnnxTypes, uint8Tensor } from './proto.js';

export type OnnxDtype = 'fp32' | 'fp16' | 'int8' | 'int4';

/**
 * Value names of the residual stream as `torch.onnx.export` (TorchScript) and Optimum name them
 * in HF Llama graphs: the embedding Gather's output, and decoder layer i's second residual Add
 * (`hidden_states = residual + mlp(...)`, module scope `/model/layers.i/`).
 */
export const EMBEDDING_OUTPUT_NAME = '/model/embed_tokens/Gather_output_0';
/** The residual stream after decoder layer i (0-based), see {@link EMBEDDING_OUTPUT_NAME}. */
export function layerOutputName(i: number): string {
  return `/model/layers.${i}/Add_1_output_0`;
}

export const OPSET = 17;
/** Additive bias for masked attention scores (float32): large but finite, so a fully masked row is never NaN. */
const MASK_BIAS = -1e9;

/** What the graph reads besides input_ids and attention_mask. */
export interface LlamaGraphIo {
  /** position_ids is an input ('input') or cumsum(attention_mask) − 1 ('derived', genai style). */
  positions: 'input' | 'derived';
  /** past_key_values.N.key/value inputs and present.N.key/value outputs. */
  past: boolean;
  /** use_cache_branch input (merged decoders): false makes the graph ignore the past. */
  useCacheBranch: boolean;
}

export interface LlamaGraphOptions {
  dtype: OnnxDtype;
  io: LlamaGraphIo;
  /** int4 only: quantization block along K (power of two ≥ 16). */
  blockSize: number;
  /** int4 only: symmetric (zero point 8, none stored) or asymmetric (per-block zero points). */
  symmetric: boolean;
}

/** Returns `src` [rows, cols] transposed to [cols, rows]. */
function transpose2d(src: HostTensor): Float32Array {
  const [rows, cols] = src.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = src.data[r * cols + c];
  }
  return out;
}

export class LlamaGraph {
  readonly g = new GraphBuilder(OPSET);
  /** Element type of activations and of the KV cache. */
  readonly act: number;
  readonly hd: number;
  private readonly bias: ProjectionBiases;
  private cos = '';
  private sin = '';
  /** Causal ∧ padding mask (bool [B, 1, 1, L, T]) and absolute query/key positions, for per-window biases. */
  private allowed = '';
  private queries = '';
  private keys = '';
  /** Additive mask bias per sliding window ('null' for full causal attention), built on first use. */
  private maskBias = new Map<string, string>();
  /** Number of past positions (int64 scalar) and, for merged decoders, the end of the past to use ([1]). */
  private pastLen = '';
  private pastEnd = '';

  constructor(readonly cfg: LlamaConfig, readonly weights: NamedTensors, readonly o: LlamaGraphOptions) {
    this.hd = headDim(cfg);
    this.act = o.dtype === 'fp16' ? DT.FLOAT16 : DT.FLOAT;
    this.bias = projectionBiases(cfg);
  }

  private tensor(name: string, dims: number[], data: Float32Array, half: boolean): string {
    this.g.initializers.push(half ? halfTensor(name, dims, encodeHalf(data)) : floatTensor(name, dims, data));
    return name;
  }

  /** A weight as stored (norm weights, the embedding table), in the activation type. */
  weight(name: string): string {
    const t = this.weights.get(name)!;
    return this.tensor(name, t.shape, t.data, this.o.dtype === 'fp16');
  }

  private cast(x: string, to: number): string {
    return this.g.op('Cast', [x], [attr.int('to', to)]);
  }

  /**
   * y = x·Wᵀ (+ b) for HF projection `<name>.weight` [out, in] (and `<name>.bias` when `bias`):
   * MatMul with `<name>.weight.T` [in, out] (int8: dequantized from `<name>.q8`), or MatMulNBits for int4, then Add.
   */
  linear(x: string, name: string, bias = false): string {
    const y = this.matmul(x, `${name}.weight`);
    return bias ? this.g.op('Add', [y, this.weight(`${name}.bias`)]) : y;
  }

  private matmul(x: string, name: string): string {
    const t = this.weights.get(name)!, [n, k] = t.shape;
    if (this.o.dtype === 'int8') return this.g.op('MatMul', [x, this.int8Weight(name, t)]);
    if (this.o.dtype !== 'int4') return this.g.op('MatMul', [x, this.tensor(`${name}.T`, [k, n], transpose2d(t), this.o.dtype === 'fp16')]);
    const q = quantizeInt4(t.data, n, k, this.o.blockSize, this.o.symmetric);
    const inputs = [x, `${name}.q4`, `${name}.scales`];
    this.g.initializers.push(uint8Tensor(inputs[1], [n, q.kBlocks, q.blockSize / 2], q.packed), floatTensor(inputs[2], [n, q.kBlocks], q.scales));
    if (q.zeroPoints) {
      inputs.push(`${name}.zero_points`);
      this.g.initializers.push(uint8Tensor(inputs[3], [n, Math.ceil(q.kBlocks / 2)], q.zeroPoints));
    }
    const out = this.g.fresh('MatMulNBits');
    const attrs = [attr.int('K', k), attr.int('N', n), attr.int('bits', 4), attr.int('block_size', q.blockSize)];
    this.g.nodes.push({ opType: 'MatMulNBits', domain: 'com.microsoft', name: `${out}_node`, input: inputs, output: [out], attribute: attrs });
    return out;
  }

  /** DequantizeLinear(`<name>.q8` int8 [in, out], `<name>.scale` [out], axis 1): the per-channel int8 weight as float32 [in, out]. */
  private int8Weight(name: string, t: HostTensor): string {
    const [n, k] = t.shape, q = quantizeInt8(t.data, n, k);
    const codes = new Int8Array(k * n); // HF [out, in] → [in, out], as MatMul reads it
    for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) codes[c * n + r] = q.codes[r * k + c];
    this.g.initializers.push(int8Tensor(`${name}.q8`, [k, n], codes), floatTensor(`${name}.scale`, [n], q.scales));
    return this.g.op('DequantizeLinear', [`${name}.q8`, `${name}.scale`], [attr.int('axis', 1)]);
  }

  /** HF LlamaRMSNorm: statistics in float32 (Pow→ReduceMean→Add→Sqrt→Div is the pattern ORT fuses), then · weight. */
  rmsNorm(x: string, weightName: string): string {
    const g = this.g, half = this.act === DT.FLOAT16;
    const x32 = half ? this.cast(x, DT.FLOAT) : x;
    const variance = g.reduce('ReduceMean', g.op('Pow', [x32, g.float([2], [])]), [-1], true);
    const std = g.op('Sqrt', [g.op('Add', [variance, g.float([this.cfg.rms_norm_eps], [])])]);
    const normed = g.op('Div', [x32, std]);
    return g.op('Mul', [half ? this.cast(normed, DT.FLOAT16) : normed, this.weight(weightName)]);
  }

  /** Sequence length L, total length T = mask width, past length P = T − L; causal ∧ padding [B, 1, 1, L, T]. */
  buildMask(): void {
    const g = this.g, dim = (x: string, i: number) => g.op('Gather', [g.op('Shape', [x]), g.int64([i], [])], [attr.int('axis', 0)]);
    const len = dim('input_ids', 1), total = dim('attention_mask', 1);
    this.pastLen = g.op('Sub', [total, len]);
    this.keys = g.unsqueeze(g.op('Range', [g.int64([0], []), total, g.int64([1], [])]), [0]); // [1, T]
    this.queries = g.unsqueeze(g.op('Range', [this.pastLen, total, g.int64([1], [])]), [1]); // [L, 1], absolute positions
    const causal = g.op('GreaterOrEqual', [this.queries, this.keys]); // [L, T]
    const pad = g.unsqueeze(this.cast('attention_mask', DT.BOOL), [1, 2, 3]); // [B, 1, 1, 1, T]
    this.allowed = g.op('And', [causal, pad]);
    if (this.o.io.useCacheBranch) {
      // Optimum's merged decoder runs the no-past branch when use_cache_branch is false; the past
      // is then ignored, which slicing it to length 0 reproduces without an If node.
      const pastDim = g.op('Gather', [g.op('Shape', ['past_key_values.0.key']), g.int64([2])], [attr.int('axis', 0)]); // [1]
      this.pastEnd = g.op('Mul', [pastDim, this.cast('use_cache_branch', DT.INT64)]);
    }
  }

  /**
   * The additive mask bias [B, 1, 1, L, T] of a layer: 0 where allowed, MASK_BIAS elsewhere; with a
   * sliding window w also key > query − w (HF masking_utils' sliding_window_overlay).
   */
  private maskFor(window: number | null): string {
    let bias = this.maskBias.get(String(window));
    if (!bias) {
      const g = this.g;
      const allowed = window === null ? this.allowed
        : g.op('And', [this.allowed, g.op('Greater', [this.keys, g.op('Sub', [this.queries, g.int64([window], [])])])]);
      bias = g.op('Where', [allowed, g.float([0], []), g.float([MASK_BIAS], [])]);
      this.maskBias.set(String(window), bias);
    }
    return bias;
  }

  /** position_ids [B, L]: the input, or HF's cumsum(mask) − 1 (1 where masked) over the last L columns. */
  positions(): string {
    if (this.o.io.positions === 'input') return 'position_ids';
    const g = this.g, m = this.cast('attention_mask', DT.INT64);
    const cs = g.op('Sub', [g.op('CumSum', [m, g.int64([1], [])]), g.int64([1], [])]);
    const all = g.op('Where', [g.op('Equal', [m, g.int64([0], [])]), g.int64([1], []), cs]); // [B, T]
    const total = g.op('Shape', ['attention_mask']);
    return g.op('Slice', [all, g.unsqueeze(this.pastLen, [0]), g.op('Slice', [total, g.int64([1]), g.int64([2])]), g.int64([1])]);
  }

  /** cos/sin tables [B, L, 1, head_dim] from positions (computed in float32 as HF does, then cast). */
  buildRope(positions: string): void {
    const g = this.g, half = this.hd / 2;
    const invFreq = ropeInvFreq(this.hd, this.cfg.rope_theta, this.cfg.rope_scaling); // rope_scaling folded into the frequencies
    const pos = g.unsqueeze(this.cast(positions, DT.FLOAT), [2]); // [B, L, 1]
    g.initializers.push(floatTensor('model.rotary_emb.inv_freq', [half], Float32Array.from(invFreq))); // HF's buffer name
    const freqs = g.op('Mul', [pos, 'model.rotary_emb.inv_freq']); // [B, L, hd/2]
    const emb = g.op('Concat', [freqs, freqs], [attr.int('axis', -1)]); // [B, L, hd]
    const table = (op: string) => {
      const t = g.unsqueeze(g.op(op, [emb]), [2]);
      return this.act === DT.FLOAT ? t : this.cast(t, this.act);
    };
    this.cos = table('Cos');
    this.sin = table('Sin');
  }

  /** HF apply_rotary_pos_emb on x [B, L, heads, hd]: x·cos + rotate_half(x)·sin. */
  rope(x: string): string {
    const g = this.g, half = this.hd / 2;
    const [x1, x2] = g.opN('Split', [x, g.int64([half, half])], 2, [attr.int('axis', -1)]);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], [attr.int('axis', -1)]);
    return g.op('Add', [g.op('Mul', [x, this.cos]), g.op('Mul', [rotated, this.sin])]);
  }

  /** k or v [B, KV, L, hd] after the cache: Concat(past, new) along the sequence, as output `present.i.*`. */
  private withPast(x4: string, i: number, kind: 'key' | 'value'): string {
    if (!this.o.io.past) return x4;
    const g = this.g;
    let past = `past_key_values.${i}.${kind}`;
    if (this.o.io.useCacheBranch) past = g.op('Slice', [past, g.int64([0]), this.pastEnd, g.int64([2])]);
    return g.named(`present.${i}.${kind}`, 'Concat', [past, x4], [attr.int('axis', 2)]);
  }

  /**
   * Self-attention with GQA by grouping q heads instead of repeating k/v: q head h = kv·G + g
   * uses kv head h / G, exactly HF repeat_kv's assignment. Softmax runs in float32.
   */
  attention(x: string, p: string, i: number): string {
    const g = this.g, cfg = this.cfg, hd = this.hd;
    const kvh = cfg.num_key_value_heads, groups = cfg.num_attention_heads / kvh;
    const heads = (name: string, n: number) => g.op('Reshape', [this.linear(x, name, this.bias.qkv), g.int64([0, 0, n, hd])]);
    const q = this.rope(heads(`${p}.q_proj`, cfg.num_attention_heads)); // [B, L, H, hd]
    const k = this.rope(heads(`${p}.k_proj`, kvh)); // [B, L, KV, hd]
    const v = heads(`${p}.v_proj`, kvh);
    const q5 = g.op('Transpose', [g.op('Reshape', [q, g.int64([0, 0, kvh, groups, hd])])],
      [attr.ints('perm', [0, 2, 3, 1, 4])]); // [B, KV, G, L, hd]
    const perm = (t: string, pm: number[]) => g.op('Transpose', [t], [attr.ints('perm', pm)]);
    const kT5 = g.unsqueeze(this.o.io.past
      ? perm(this.withPast(perm(k, [0, 2, 1, 3]), i, 'key'), [0, 1, 3, 2]) // [B, KV, L, hd] → cache → [B, KV, hd, T]
      : perm(k, [0, 2, 3, 1]), [2]); // [B, KV, 1, hd, T]
    const v5 = g.unsqueeze(this.withPast(perm(v, [0, 2, 1, 3]), i, 'value'), [2]); // [B, KV, 1, T, hd]
    let scores = g.op('MatMul', [q5, kT5]); // [B, KV, G, L, T]
    if (this.act !== DT.FLOAT) scores = this.cast(scores, DT.FLOAT);
    scores = g.op('Add', [g.op('Mul', [scores, g.float([1 / Math.sqrt(hd)], [])]), this.maskFor(layerWindow(cfg, i))]);
    let probs = g.op('Softmax', [scores], [attr.int('axis', -1)]);
    if (this.act !== DT.FLOAT) probs = this.cast(probs, this.act);
    const ctx = perm(g.op('MatMul', [probs, v5]), [0, 3, 1, 2, 4]); // [B, L, KV, G, hd]
    const merged = g.op('Reshape', [ctx, g.int64([0, 0, cfg.num_attention_heads * hd])]); // [B, L, H·hd]
    return this.linear(merged, `${p}.o_proj`, this.bias.o);
  }

  /** down(silu(gate(x)) · up(x)). */
  mlp(x: string, p: string): string {
    const g = this.g;
    const b = this.bias.mlp, gate = this.linear(x, `${p}.gate_proj`, b);
    const act = g.op('Mul', [gate, g.op('Sigmoid', [gate])]);
    return this.linear(g.op('Mul', [act, this.linear(x, `${p}.up_proj`, b)]), `${p}.down_proj`, b);
  }

  layer(h: string, i: number): string {
    const p = `model.layers.${i}`;
    const attn = this.attention(this.rmsNorm(h, `${p}.input_layernorm.weight`), `${p}.self_attn`, i);
    const h2 = this.g.named(`/model/layers.${i}/Add_output_0`, 'Add', [h, attn]);
    // The residual stream after layer i under the name torch.onnx.export / Optimum give it, so that
    // precompute's --hidden-layers finds it the same way in our exports and in theirs (hidden-graph.ts).
    return this.g.named(layerOutputName(i), 'Add', [h2, this.mlp(this.rmsNorm(h2, `${p}.post_attention_layernorm.weight`), `${p}.mlp`)]);
  }

  /** The whole forward pass; the final MatMul writes the graph output `logits` [B, L, V] (activation type). */
  build(): OnnxTypes.INodeProto[] {
    const g = this.g, embed = this.weight('model.embed_tokens.weight');
    this.buildMask();
    this.buildRope(this.positions());
    let h = g.named(EMBEDDING_OUTPUT_NAME, 'Gather', [embed, 'input_ids'], [attr.int('axis', 0)]); // [B, L, D]
    for (let i = 0; i < this.cfg.num_hidden_layers; i++) h = this.layer(h, i);
    h = this.rmsNorm(h, 'model.norm.weight');
    if (this.cfg.tie_word_embeddings) {
      // One stored copy of the table; ORT constant-folds this Transpose once at session load.
      g.named('logits', 'MatMul', [h, g.op('Transpose', [embed], [attr.ints('perm', [1, 0])])]);
    } else {
      const t = this.weights.get('lm_head.weight')!;
      g.named('logits', 'MatMul', [h, this.tensor('lm_head.weight.T', [t.shape[1], t.shape[0]], transpose2d(t), this.o.dtype === 'fp16')]);
    }
    return g.nodes;
  }
}
