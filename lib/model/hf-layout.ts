import { projectionBiases } from './architectures.js';
import { LlamaConfig, headDim, llamaTensorShapes } from './config.js';
import { HostTensor, NamedTensors } from './tensors.js';

/*
 * The TF.js model keeps fused, pre-transposed weights ([in, out], q|k|v and gate|up side by side)
 * so that each layer runs two plain matMuls where HF runs five transposed ones; these functions
 * convert to and from Hugging Face names and [out, in] shapes. Biases (where the architecture has
 * them, see architectures.ts) are fused the same way: bqkv = q|k|v, bgu = gate|up.
 */

/** [rows, cols] → [cols, rows] on the host. */
export function transposeHost(t: HostTensor): HostTensor {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data: out };
}

/** Stacks [out_i, in] HF weights along `out` and transposes: → [in, Σ out_i]. */
function fuseColumns(parts: HostTensor[]): HostTensor {
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const inDim = parts[0].shape[1];
  const stacked = new Float32Array(rows * inDim);
  let offset = 0;
  for (const p of parts) { stacked.set(p.data, offset); offset += p.data.length; }
  return transposeHost({ shape: [rows, inDim], data: stacked });
}

/** Inverse of fuseColumns: [in, Σ out_i] → HF [out_i, in] pieces. */
function splitColumns(fused: HostTensor, outs: number[]): HostTensor[] {
  const t = transposeHost(fused);
  const inDim = t.shape[1];
  let row = 0;
  return outs.map((o) => {
    const piece = { shape: [o, inDim], data: t.data.slice(row * inDim, (row + o) * inDim) };
    row += o;
    return piece;
  });
}

/** Stacks 1-D tensors end to end. */
function concat1d(parts: HostTensor[]): HostTensor {
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let offset = 0;
  for (const p of parts) { data.set(p.data, offset); offset += p.data.length; }
  return { shape: [data.length], data };
}

/** Inverse of concat1d. */
function split1d(t: HostTensor, sizes: number[]): HostTensor[] {
  let offset = 0;
  return sizes.map((n) => ({ shape: [n], data: t.data.slice(offset, (offset += n)) }));
}

/** Internal (fused) tensor names and shapes, in a stable order. */
export function fusedShapes(cfg: LlamaConfig): [string, number[]][] {
  const d = cfg.hidden_size, hd = headDim(cfg), q = cfg.num_attention_heads * hd, kv = cfg.num_key_value_heads * hd, f = cfg.intermediate_size;
  const bias = projectionBiases(cfg);
  const out: [string, number[]][] = [['embed', [cfg.vocab_size, d]]];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    out.push([`${i}.ln1`, [d]], [`${i}.wqkv`, [d, q + 2 * kv]]);
    if (bias.qkv) out.push([`${i}.bqkv`, [q + 2 * kv]]);
    out.push([`${i}.wo`, [q, d]]);
    if (bias.o) out.push([`${i}.bo`, [d]]);
    out.push([`${i}.ln2`, [d]], [`${i}.wgu`, [d, 2 * f]], [`${i}.wdown`, [f, d]]);
    if (bias.mlp) out.push([`${i}.bgu`, [2 * f]], [`${i}.bdown`, [d]]);
  }
  out.push(['norm', [d]]);
  if (!cfg.tie_word_embeddings) out.push(['lm_head', [d, cfg.vocab_size]]);
  return out;
}

/**
 * HF-named weights → fused internal weights.
 * @throws Error naming `source` and the tensor when one is missing or has the wrong shape.
 */
export function fromHfLayout(cfg: LlamaConfig, hf: NamedTensors, source = 'checkpoint'): NamedTensors {
  for (const [name, shape] of llamaTensorShapes(cfg)) {
    const t = hf.get(name);
    if (!t) throw new Error(`${source}: missing tensor '${name}'`);
    if (t.shape.join(',') !== shape.join(',')) {
      throw new Error(`${source}: tensor '${name}' has shape [${t.shape}] but config.json implies [${shape}]`);
    }
  }
  const get = (n: string) => hf.get(n)!, bias = projectionBiases(cfg);
  const out: NamedTensors = new Map([['embed', get('model.embed_tokens.weight')]]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`, attn = `${p}.self_attn`;
    out.set(`${i}.ln1`, get(`${p}.input_layernorm.weight`));
    out.set(`${i}.wqkv`, fuseColumns(['q', 'k', 'v'].map((x) => get(`${attn}.${x}_proj.weight`))));
    if (bias.qkv) out.set(`${i}.bqkv`, concat1d(['q', 'k', 'v'].map((x) => get(`${attn}.${x}_proj.bias`))));
    out.set(`${i}.wo`, transposeHost(get(`${attn}.o_proj.weight`)));
    if (bias.o) out.set(`${i}.bo`, get(`${attn}.o_proj.bias`));
    out.set(`${i}.ln2`, get(`${p}.post_attention_layernorm.weight`));
    out.set(`${i}.wgu`, fuseColumns([get(`${p}.mlp.gate_proj.weight`), get(`${p}.mlp.up_proj.weight`)]));
    out.set(`${i}.wdown`, transposeHost(get(`${p}.mlp.down_proj.weight`)));
    if (bias.mlp) {
      out.set(`${i}.bgu`, concat1d([get(`${p}.mlp.gate_proj.bias`), get(`${p}.mlp.up_proj.bias`)]));
      out.set(`${i}.bdown`, get(`${p}.mlp.down_proj.bias`));
    }
  }
  out.set('norm', get('model.norm.weight'));
  if (!cfg.tie_word_embeddings) out.set('lm_head', transposeHost(get('lm_head.weight')));
  return out;
}

/** Fused internal weights → HF-named weights ([out, in] linear weights). */
export function toHfLayout(cfg: LlamaConfig, fused: NamedTensors): NamedTensors {
  const hd = headDim(cfg), qw = cfg.num_attention_heads * hd, kv = cfg.num_key_value_heads * hd, f = cfg.intermediate_size;
  const get = (n: string) => fused.get(n)!, bias = projectionBiases(cfg);
  const out: NamedTensors = new Map([['model.embed_tokens.weight', get('embed')]]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`, attn = `${p}.self_attn`;
    const [q, k, v] = splitColumns(get(`${i}.wqkv`), [qw, kv, kv]);
    const [gate, up] = splitColumns(get(`${i}.wgu`), [f, f]);
    out.set(`${p}.input_layernorm.weight`, get(`${i}.ln1`));
    out.set(`${attn}.q_proj.weight`, q);
    out.set(`${attn}.k_proj.weight`, k);
    out.set(`${attn}.v_proj.weight`, v);
    if (bias.qkv) {
      const [bq, bk, bv] = split1d(get(`${i}.bqkv`), [qw, kv, kv]);
      out.set(`${attn}.q_proj.bias`, bq).set(`${attn}.k_proj.bias`, bk).set(`${attn}.v_proj.bias`, bv);
    }
    out.set(`${attn}.o_proj.weight`, transposeHost(get(`${i}.wo`)));
    if (bias.o) out.set(`${attn}.o_proj.bias`, get(`${i}.bo`));
    out.set(`${p}.post_attention_layernorm.weight`, get(`${i}.ln2`));
    out.set(`${p}.mlp.gate_proj.weight`, gate);
    out.set(`${p}.mlp.up_proj.weight`, up);
    out.set(`${p}.mlp.down_proj.weight`, transposeHost(get(`${i}.wdown`)));
    if (bias.mlp) {
      const [bg, bu] = split1d(get(`${i}.bgu`), [f, f]);
      out.set(`${p}.mlp.gate_proj.bias`, bg).set(`${p}.mlp.up_proj.bias`, bu).set(`${p}.mlp.down_proj.bias`, get(`${i}.bdown`));
    }
  }
  out.set('model.norm.weight', get('norm'));
  if (!cfg.tie_word_embeddings) out.set('lm_head.weight', transposeHost(get('lm_head')));
  return out;
}
