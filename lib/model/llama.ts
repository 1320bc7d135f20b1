import * as tf from '@tensorflow/tfjs-core';
import { layerWindow } from './architectures.js';
import { attentionMask } from './attention-mask.js';
import { LlamaConfig, headDim } from './config.js';
import { fromHfLayout, fusedShapes, toHfLayout } from './hf-layout.js';
import { dropout, DropoutOptions } from './dropout.js';
import { initLlamaWeights } from './init.js';
import { MemoryOptions, UNCHUNKED } from '../memory/options.js';
import { blockedAttention } from './attention.js';
import { affine, embeddingLookup, linear, meanSquare } from './ops.js';
import { recomputed } from './recompute.js';
import { applyRope, ropeInvFreq, ropeTables } from './rope.js';
import { NamedTensors } from './tensors.js';

let nextModelId = 0;

/** Options of one forward pass. */
export interface ForwardOptions {
  /**
   * Training-time dropout on the attention probabilities and on both residual branches (attention
   * and MLP outputs) of every layer; omitted at evaluation. Masks are a pure function of the seed.
   */
  dropout?: DropoutOptions;
  /** Recomputation and attention blocking (lib/memory/options.ts); default UNCHUNKED. */
  memory?: MemoryOptions;
  /** Residual-stream states to hand out besides the result (feature distillation); filled by {@link LlamaModel.hidden}. */
  states?: ResidualStates;
}

/**
 * Intermediate residual states wanted from a forward pass, by HF output_hidden_states index:
 * 0 = the embeddings, i = after decoder layer i (before the final norm). `out` receives [B·L, d] each.
 */
export interface ResidualStates {
  layers: readonly number[];
  out: Map<number, tf.Tensor2D>;
}

type Tables = Record<'cos' | 'sin' | 'cosQ' | 'sinQ', tf.Tensor2D>;

/**
 * A Llama-architecture causal LM (RMSNorm, RoPE, SwiGLU MLP, grouped-query attention, optional
 * tied embeddings) in TF.js, numerically equal to HF `LlamaForCausalLM` in float32 — and to
 * `Qwen2ForCausalLM` / `MistralForCausalLM`, which differ in projection biases and sliding-window
 * masks (architectures.ts); rope_scaling variants are in rope.ts.
 * Weights live in tf.Variables with fused [in, out] layouts (see hf-layout.ts).
 */
export class LlamaModel {
  readonly cfg: LlamaConfig;
  readonly params: Map<string, tf.Variable>;
  /**
   * Applied to each linear weight [in, out] (wqkv, wo, wgu, wdown) as the forward pass reads it,
   * when set: quantization-aware training's fake quantization (lib/quant/qat.ts). The variables
   * themselves stay float; embeddings, norms, biases and the LM head are never transformed.
   */
  linearWeights?: (w: tf.Tensor2D, name: string) => tf.Tensor2D;
  private rope = new Map<string, Tables>();
  private masks = new Map<string, tf.Tensor2D>();

  /**
   * @param weights HF-named host tensors (`model.embed_tokens.weight`, …); random (seeded) when omitted.
   * @throws Error when a tensor is missing or its shape disagrees with `cfg`.
   */
  constructor(cfg: LlamaConfig, weights?: NamedTensors, seed = 0, source = 'weights') {
    this.cfg = cfg;
    const fused = fromHfLayout(cfg, weights ?? initLlamaWeights(cfg, seed), source);
    const scope = `kd${nextModelId++}`; // variable names are global to the tf engine
    this.params = new Map(fusedShapes(cfg).map(([name, shape]) => {
      const t = fused.get(name)!;
      return [name, tf.tidy(() => tf.variable(tf.tensor(t.data, shape), true, `${scope}/${name}`))];
    }));
  }

  /** Trainable variables in a stable order. */
  variables(): tf.Variable[] {
    return [...this.params.values()];
  }

  /**
   * Next-token logits for every position: {@link hidden} · {@link head}.
   * @param inputIds int32 [B, L], L ≤ max_position_embeddings
   * @param opts training-time options (dropout, memory); none at evaluation
   * @returns [B·L, vocab_size] float32 (row b·L + t predicts the token after position t)
   * @throws Error when L exceeds max_position_embeddings.
   */
  logits(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor2D {
    return linear(this.hidden(inputIds, opts), this.head()) as tf.Tensor2D; // [N, V]
  }

  /**
   * Final-norm hidden states, the LM head's input. With `opts.memory.recompute` each decoder
   * layer keeps only its input for the backward pass (recompute.ts). `opts.states` receives the
   * residual stream at the layers it names (see {@link ResidualStates}).
   * @param inputIds int32 [B, L] @returns [B·L, hidden_size] float32
   * @throws Error when L exceeds max_position_embeddings.
   */
  hidden(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor2D {
    const [B, L] = inputIds.shape;
    if (L > this.cfg.max_position_embeddings) {
      throw new Error(`sequence length ${L} exceeds max_position_embeddings ${this.cfg.max_position_embeddings}`);
    }
    let h: tf.Tensor2D = embeddingLookup(this.p('embed') as tf.Tensor2D, tf.reshape(inputIds, [-1]) as tf.Tensor1D); // [N, d]
    const memory = opts.memory ?? UNCHUNKED;
    const keep = (index: number) => { if (opts.states?.layers.includes(index)) opts.states.out.set(index, h); };
    keep(0);
    for (let i = 0; i < this.cfg.num_hidden_layers; i++) {
      const layer = (x: tf.Tensor2D) => this.layer(x, i, B, L, opts.dropout, memory.attentionQueryBlock);
      h = memory.recompute ? recomputed(layer, h, this.layerVariables(i)) : layer(h);
      keep(i + 1); // a recomputed layer's output is an ordinary tensor: a loss on it backpropagates as well
    }
    return this.rmsNorm(h, 'norm');
  }

  /** The LM head [hidden_size, vocab_size]: lm_head, or the embedding's transpose when tied. */
  head(): tf.Tensor2D {
    return (this.cfg.tie_word_embeddings ? tf.transpose(this.p('embed')) : this.p('lm_head')) as tf.Tensor2D;
  }

  /** Decoder layer i (pre-norm residual attention, then MLP): x [N, d] → [N, d]. */
  private layer(x: tf.Tensor2D, i: number, B: number, L: number, drop: DropoutOptions | undefined, block: number): tf.Tensor2D {
    const h: tf.Tensor2D = tf.add(x, dropout(this.attention(this.rmsNorm(x, `${i}.ln1`), i, B, L, drop, block), drop, 3 * i + 1));
    return tf.add(h, dropout(this.mlp(this.rmsNorm(h, `${i}.ln2`), i), drop, 3 * i + 2));
  }

  /** The variables of decoder layer i (what a recomputed layer needs gradients for). */
  private layerVariables(i: number): tf.Variable[] {
    return [...this.params].filter(([name]) => name.startsWith(`${i}.`)).map(([, v]) => v);
  }

  /** @returns logits [B, L, vocab_size] (see `logits`). */
  forward(inputIds: tf.Tensor2D): tf.Tensor3D {
    const [B, L] = inputIds.shape;
    return tf.reshape(this.logits(inputIds), [B, L, this.cfg.vocab_size]);
  }

  /** RMSNorm: x / √(mean(x²) + ε) · w (Zhang & Sennrich 2019, eq. 4). x [N, d] → [N, d]. */
  private rmsNorm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const ms = meanSquare(x); // mean(x², −1)
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, this.cfg.rms_norm_eps))), this.p(name));
  }

  /**
   * Causal grouped-query self-attention. x [B·L, d] → [B·L, d].
   * The G = H/KV query heads that share a key/value head are stacked along the rows, so each
   * (batch, kv head) pair is one [G·L, hd]·[hd, L] product: fewer, larger matMuls, no repeated K/V.
   * With block < L the queries go in blocks of `block` positions (attention.ts): scores exist as
   * [B·KV, G·block, L] at most.
   */
  private attention(x: tf.Tensor2D, layer: number, B: number, L: number, drop: DropoutOptions | undefined, block: number): tf.Tensor2D {
    const H = this.cfg.num_attention_heads, KV = this.cfg.num_key_value_heads, hd = headDim(this.cfg);
    const G = H / KV;
    const { cos, sin, cosQ, sinQ } = this.tables(L, G);
    const qkv = affine(x, this.w(`${layer}.wqkv`), this.b(`${layer}.bqkv`)); // [N, (H + 2·KV)·hd]
    const heads = tf.transpose(tf.reshape(qkv, [B, L, H + 2 * KV, hd]), [0, 2, 1, 3]); // [B, H + 2·KV, L, hd]
    const [q, k, v] = tf.split(heads, [H, KV, KV], 1); // query head kv·G + g: kv-major
    const group = (t: tf.Tensor, g: number) => tf.reshape(t, [B * KV, g * L, hd]) as tf.Tensor3D; // [B, KV·g, L, hd] → [B·KV, g·L, hd]
    const qh = applyRope(group(tf.mul(q, 1 / Math.sqrt(hd)), G), cosQ, sinQ); // scale folded into q
    const kh = applyRope(group(k, 1), cos, sin);
    const vh = group(v, 1), window = layerWindow(this.cfg, layer);
    const out = block < L ? blockedAttention(qh, kh, vh, { L, G, window }, block, drop, 3 * layer) : this.fullAttention(qh, kh, vh, G, window, drop, 3 * layer);
    const merged = tf.reshape(tf.transpose(tf.reshape(out, [B, KV, G, L, hd]), [0, 3, 1, 2, 4]), [B * L, H * hd]);
    return affine(merged, this.w(`${layer}.wo`), this.b(`${layer}.bo`)) as tf.Tensor2D;
  }

  /** softmax(q·kᵀ + mask)·v with all heads' scores [B·KV, G·L, L] at once. q [B·KV, G·L, hd], k, v [B·KV, L, hd]. */
  private fullAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, G: number, window: number | null, drop: DropoutOptions | undefined, site: number): tf.Tensor3D {
    const L = k.shape[1];
    const scores = tf.matMul(q, k, false, true); // [B·KV, G·L, L]
    const probs = dropout(tf.softmax(tf.add(scores, this.mask(L, G, window))) as tf.Tensor3D, drop, site);
    return tf.matMul(probs, v); // [B·KV, G·L, hd]
  }

  /** SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)) (Shazeer 2020, eq. 6). x [N, d] → [N, d]. */
  private mlp(x: tf.Tensor2D, layer: number): tf.Tensor2D {
    const f = this.cfg.intermediate_size;
    const [gate, up] = tf.split(affine(x, this.w(`${layer}.wgu`), this.b(`${layer}.bgu`)), [f, f], 1);
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
    return affine(act, this.w(`${layer}.wdown`), this.b(`${layer}.bdown`)) as tf.Tensor2D;
  }

  /** RoPE tables (plain, and repeated G times for stacked query heads), built once per (L, G). */
  private tables(L: number, G: number): Tables {
    const key = `${L},${G}`;
    let t = this.rope.get(key);
    if (!t) {
      const hd = headDim(this.cfg);
      const { cos, sin } = ropeTables(L, ropeInvFreq(hd, this.cfg.rope_theta, this.cfg.rope_scaling));
      const repeat = (a: Float32Array) => { const o = new Float32Array(G * a.length); for (let g = 0; g < G; g++) o.set(a, g * a.length); return o; };
      t = tf.tidy(() => ({
        cos: tf.keep(tf.tensor2d(cos, [L, hd])), sin: tf.keep(tf.tensor2d(sin, [L, hd])),
        cosQ: tf.keep(tf.tensor2d(repeat(cos), [G * L, hd])), sinQ: tf.keep(tf.tensor2d(repeat(sin), [G * L, hd])),
      }));
      this.rope.set(key, t);
    }
    return t;
  }

  /** The additive causal (or sliding-window) mask [G·L, L], built once per (L, G, window). */
  private mask(L: number, G: number, window: number | null): tf.Tensor2D {
    const key = `${L},${G},${window}`;
    let m = this.masks.get(key);
    if (!m) this.masks.set(key, (m = tf.keep(tf.tensor2d(attentionMask(L, G, window), [G * L, L])))); // kept: logits may run inside tf.tidy
    return m;
  }

  private p(name: string): tf.Variable {
    return this.params.get(name)!;
  }

  /** A linear weight as the forward pass uses it (through {@link linearWeights} when set). */
  private w(name: string): tf.Tensor2D {
    const v = this.p(name) as tf.Tensor2D;
    return this.linearWeights ? this.linearWeights(v, name) : v;
  }

  /** A fused bias, or undefined where the architecture has none. */
  private b(name: string): tf.Tensor1D | undefined {
    return this.params.get(name) as tf.Tensor1D | undefined;
  }

  /** Current weights as HF-named host tensors ([out, in] linear weights). */
  toNamedTensors(): NamedTensors {
    const fused: NamedTensors = new Map();
    for (const [name, v] of this.params) fused.set(name, { shape: v.shape, data: v.dataSync() as Float32Array });
    return toHfLayout(this.cfg, fused);
  }

  /** Frees variables and cached tables. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    for (const t of this.rope.values()) tf.dispose(Object.values(t));
    tf.dispose([...this.masks.values()]);
    this.rope.clear();
    this.masks.clear();
  }
}
