/**
 * Exports a Llama-architecture model (HF `LlamaForCausalLM` semantics) to an ONNX graph with the
 * Hugging Face Optimum IO names, so the same session code runs our students and users' teachers.
 */
import { headDim, LlamaConfig, llamaTensorShapes } from '../model/config.js';
import { HostTensor, NamedTensors } from '../model/tensors.js';
import { GraphBuilder } from './graph-builder.js';
import { attr, DT, encodeModel, floatTensor, valueInfo } from './proto.js';

export { writeOnnx } from './proto.js';

/** Export options. Only fp32 exists so far; fp16 and int4 come later. */
export interface ExportLlamaOptions {
  dtype?: 'fp32';
  /** Name used in error messages (e.g. the checkpoint path). */
  source?: string;
}

const OPSET = 17;
/** Additive bias for masked attention scores: large but finite, so a fully masked row is never NaN. */
const MASK_BIAS = -1e9;

/** Returns `src` [rows, cols] transposed to [cols, rows]. */
function transpose2d(src: HostTensor): Float32Array {
  const [rows, cols] = src.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = src.data[r * cols + c];
  }
  return out;
}

class LlamaGraph {
  readonly g = new GraphBuilder(OPSET);
  readonly hd: number;
  cos = '';
  sin = '';
  maskBias = '';

  constructor(readonly cfg: LlamaConfig, readonly weights: NamedTensors) {
    this.hd = headDim(cfg);
  }

  /** A weight as stored (norm weights, the embedding table). */
  weight(name: string): string {
    const t = this.weights.get(name)!;
    this.g.initializers.push(floatTensor(name, t.shape, t.data));
    return name;
  }

  /** y = x·Wᵀ with W [out, in]: stored pre-transposed as `<name>.T` [in, out] so MatMul needs no Transpose. */
  linear(x: string, name: string): string {
    const t = this.weights.get(name)!;
    this.g.initializers.push(floatTensor(`${name}.T`, [t.shape[1], t.shape[0]], transpose2d(t)));
    return this.g.op('MatMul', [x, `${name}.T`]);
  }

  /** HF LlamaRMSNorm; Pow→ReduceMean→Add→Sqrt→Div→Mul is the pattern ORT fuses. */
  rmsNorm(x: string, weightName: string): string {
    const g = this.g;
    const variance = g.reduce('ReduceMean', g.op('Pow', [x, g.float([2], [])]), [-1], true);
    const std = g.op('Sqrt', [g.op('Add', [variance, g.float([this.cfg.rms_norm_eps], [])])]);
    return g.op('Mul', [g.op('Div', [x, std]), this.weight(weightName)]);
  }

  /** cos/sin tables [B, L, 1, head_dim] from position_ids (fp32, as HF computes them). */
  buildRope(): void {
    const g = this.g, half = this.hd / 2;
    const invFreq = Array.from({ length: half }, (_, i) => 1 / this.cfg.rope_theta ** ((2 * i) / this.hd));
    const pos = g.unsqueeze(g.op('Cast', ['position_ids'], [attr.int('to', DT.FLOAT)]), [2]); // [B, L, 1]
    const freqs = g.op('Mul', [pos, g.float(invFreq)]); // [B, L, hd/2]
    const emb = g.op('Concat', [freqs, freqs], [attr.int('axis', -1)]); // [B, L, hd]
    this.cos = g.unsqueeze(g.op('Cos', [emb]), [2]);
    this.sin = g.unsqueeze(g.op('Sin', [emb]), [2]);
  }

  /** Causal + padding bias [B, 1, 1, L, L] (0 where attended, MASK_BIAS elsewhere). */
  buildMask(): void {
    const g = this.g;
    const len = g.op('Gather', [g.op('Shape', ['input_ids']), g.int64([1], [])], [attr.int('axis', 0)]);
    const r = g.op('Range', [g.int64([0], []), len, g.int64([1], [])]); // [L]
    const causal = g.op('GreaterOrEqual', [g.unsqueeze(r, [1]), g.unsqueeze(r, [0])]); // [L, L], query ≥ key
    const pad = g.op('Cast', ['attention_mask'], [attr.int('to', DT.BOOL)]);
    const ok = g.op('And', [causal, g.unsqueeze(pad, [1, 2, 3])]); // [B, 1, 1, L, L]
    this.maskBias = g.op('Where', [ok, g.float([0], []), g.float([MASK_BIAS], [])]);
  }

  /** HF apply_rotary_pos_emb on x [B, L, heads, hd]: x·cos + rotate_half(x)·sin. */
  rope(x: string): string {
    const g = this.g, half = this.hd / 2;
    const [x1, x2] = g.opN('Split', [x, g.int64([half, half])], 2, [attr.int('axis', -1)]);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], [attr.int('axis', -1)]);
    return g.op('Add', [g.op('Mul', [x, this.cos]), g.op('Mul', [rotated, this.sin])]);
  }

  /**
   * Self-attention with GQA by grouping q heads instead of repeating k/v: q head h = kv·G + g
   * uses kv head h / G, exactly HF repeat_kv's assignment.
   */
  attention(x: string, p: string): string {
    const g = this.g, cfg = this.cfg, hd = this.hd;
    const kvh = cfg.num_key_value_heads, groups = cfg.num_attention_heads / kvh;
    const heads = (name: string, n: number) => g.op('Reshape', [this.linear(x, name), g.int64([0, 0, n, hd])]);
    const q = this.rope(heads(`${p}.q_proj.weight`, cfg.num_attention_heads)); // [B, L, H, hd]
    const k = this.rope(heads(`${p}.k_proj.weight`, kvh)); // [B, L, KV, hd]
    const v = heads(`${p}.v_proj.weight`, kvh);
    const q5 = g.op('Transpose', [g.op('Reshape', [q, g.int64([0, 0, kvh, groups, hd])])],
      [attr.ints('perm', [0, 2, 3, 1, 4])]); // [B, KV, G, L, hd]
    const kT5 = g.unsqueeze(g.op('Transpose', [k], [attr.ints('perm', [0, 2, 3, 1])]), [2]); // [B, KV, 1, hd, L]
    const v5 = g.unsqueeze(g.op('Transpose', [v], [attr.ints('perm', [0, 2, 1, 3])]), [2]); // [B, KV, 1, L, hd]
    const scores = g.op('Mul', [g.op('MatMul', [q5, kT5]), g.float([1 / Math.sqrt(hd)], [])]);
    const probs = g.op('Softmax', [g.op('Add', [scores, this.maskBias])], [attr.int('axis', -1)]);
    const ctx = g.op('Transpose', [g.op('MatMul', [probs, v5])], [attr.ints('perm', [0, 3, 1, 2, 4])]);
    const merged = g.op('Reshape', [ctx, g.int64([0, 0, cfg.hidden_size])]); // [B, L, D]
    return this.linear(merged, `${p}.o_proj.weight`);
  }

  /** down(silu(gate(x)) · up(x)). */
  mlp(x: string, p: string): string {
    const g = this.g;
    const gate = this.linear(x, `${p}.gate_proj.weight`);
    const act = g.op('Mul', [gate, g.op('Sigmoid', [gate])]);
    return this.linear(g.op('Mul', [act, this.linear(x, `${p}.up_proj.weight`)]), `${p}.down_proj.weight`);
  }

  layer(h: string, i: number): string {
    const p = `model.layers.${i}`;
    const attn = this.attention(this.rmsNorm(h, `${p}.input_layernorm.weight`), `${p}.self_attn`);
    const h2 = this.g.op('Add', [h, attn]);
    return this.g.op('Add', [h2, this.mlp(this.rmsNorm(h2, `${p}.post_attention_layernorm.weight`), `${p}.mlp`)]);
  }

  /** The whole forward pass; the final MatMul writes the graph output `logits` [B, L, V]. */
  build(): void {
    const g = this.g, embed = this.weight('model.embed_tokens.weight');
    this.buildRope();
    this.buildMask();
    let h = g.op('Gather', [embed, 'input_ids'], [attr.int('axis', 0)]); // [B, L, D]
    for (let i = 0; i < this.cfg.num_hidden_layers; i++) h = this.layer(h, i);
    h = this.rmsNorm(h, 'model.norm.weight');
    if (this.cfg.tie_word_embeddings) {
      // One stored copy of the table; ORT constant-folds this Transpose once at session load.
      g.named('logits', 'MatMul', [h, g.op('Transpose', [embed], [attr.ints('perm', [1, 0])])]);
    } else {
      const t = this.weights.get('lm_head.weight')!;
      g.initializers.push(floatTensor('lm_head.weight.T', [t.shape[1], t.shape[0]], transpose2d(t)));
      g.named('logits', 'MatMul', [h, 'lm_head.weight.T']);
    }
  }
}

function checkWeights(cfg: LlamaConfig, weights: NamedTensors, source: string): void {
  for (const [name, shape] of llamaTensorShapes(cfg)) {
    const t = weights.get(name);
    if (!t) throw new Error(`${source}: missing tensor '${name}'`);
    const want = shape.reduce((a, b) => a * b, 1);
    if (t.shape.join(',') !== shape.join(',') || t.data.length !== want) {
      throw new Error(`${source}: tensor '${name}' has shape [${t.shape}] (${t.data.length} values), config expects [${shape}]`);
    }
  }
}

/**
 * Builds an ONNX model (opset 17, default domain) of the Llama forward pass.
 *
 * Inputs: `input_ids`, `attention_mask`, `position_ids`, all int64 [batch_size, sequence_length].
 * Output: `logits` float32 [batch_size, sequence_length, vocab_size] (vocab dim concrete).
 * Weights are initializers; Linear weights are stored pre-transposed as `<hf name>.T` [in, out].
 * @throws Error naming `opts.source` for a missing or mis-shaped tensor or an unsupported dtype.
 */
export function exportLlamaOnnx(cfg: LlamaConfig, weights: NamedTensors, opts: ExportLlamaOptions = {}): Uint8Array {
  const source = opts.source ?? 'weights';
  const dtype: string = opts.dtype ?? 'fp32';
  if (dtype !== 'fp32') throw new Error(`${source}: ONNX export dtype '${dtype}' is not supported yet (only 'fp32')`);
  checkWeights(cfg, weights, source);
  const lg = new LlamaGraph(cfg, weights);
  lg.build();
  const io = ['batch_size', 'sequence_length'];
  return encodeModel({
    irVersion: 8,
    producerName: 'kd',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: 'llama',
      node: lg.g.nodes,
      initializer: lg.g.initializers,
      input: ['input_ids', 'attention_mask', 'position_ids'].map((n) => valueInfo(n, DT.INT64, io)),
      output: [valueInfo('logits', DT.FLOAT, [...io, cfg.vocab_size])],
    },
  });
}
