/**
 * Llama-architecture model configuration with Hugging Face `LlamaConfig` field names,
 * so a `config.json` written here loads in `transformers` and vice versa.
 */
export interface LlamaConfig {
  model_type: 'llama';
  architectures: string[];
  /** Embedding rows; may exceed the tokenizer's real vocabulary (padded rows). */
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  hidden_act: 'silu';
  bos_token_id?: number;
  eos_token_id?: number;
  torch_dtype?: string;
}

export const LLAMA_DEFAULTS: LlamaConfig = {
  model_type: 'llama',
  architectures: ['LlamaForCausalLM'],
  vocab_size: 4096,
  hidden_size: 128,
  intermediate_size: 384,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
  hidden_act: 'silu',
  torch_dtype: 'float32',
};

/** HF config keys we read; any other key in a user's config.json is kept but ignored. */
const REQUIRED: (keyof LlamaConfig)[] = [
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
];

/**
 * Resolves a partial config (e.g. a parsed HF `config.json`) against the defaults and checks it.
 * @throws Error naming `source` when a required field is missing or the shapes are inconsistent.
 */
export function resolveLlamaConfig(partial: Partial<LlamaConfig>, source = 'config'): LlamaConfig {
  for (const key of REQUIRED) {
    if (partial[key] === undefined) throw new Error(`${source}: missing required field '${key}'`);
  }
  const cfg: LlamaConfig = { ...LLAMA_DEFAULTS, ...partial } as LlamaConfig;
  if (partial.num_key_value_heads === undefined) cfg.num_key_value_heads = cfg.num_attention_heads;
  if (partial.hidden_act !== undefined && partial.hidden_act !== 'silu') {
    throw new Error(`${source}: hidden_act '${partial.hidden_act}' is not supported (only 'silu')`);
  }
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new Error(`${source}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`);
  }
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    throw new Error(`${source}: num_attention_heads ${cfg.num_attention_heads} is not divisible by num_key_value_heads ${cfg.num_key_value_heads}`);
  }
  if ((cfg.hidden_size / cfg.num_attention_heads) % 2 !== 0) {
    throw new Error(`${source}: head_dim ${cfg.hidden_size / cfg.num_attention_heads} must be even for RoPE`);
  }
  return cfg;
}

/** Per-head width: hidden_size / num_attention_heads. */
export const headDim = (cfg: LlamaConfig): number => cfg.hidden_size / cfg.num_attention_heads;

/**
 * The HF tensor names and shapes of a Llama checkpoint, in a stable order.
 * Linear weights are [out_features, in_features] as in `torch.nn.Linear`.
 */
export function llamaTensorShapes(cfg: LlamaConfig): [string, number[]][] {
  const d = cfg.hidden_size, hd = headDim(cfg), kv = cfg.num_key_value_heads * hd;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [cfg.vocab_size, d]]];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    out.push(
      [`${p}.input_layernorm.weight`, [d]],
      [`${p}.self_attn.q_proj.weight`, [d, d]],
      [`${p}.self_attn.k_proj.weight`, [kv, d]],
      [`${p}.self_attn.v_proj.weight`, [kv, d]],
      [`${p}.self_attn.o_proj.weight`, [d, d]],
      [`${p}.post_attention_layernorm.weight`, [d]],
      [`${p}.mlp.gate_proj.weight`, [cfg.intermediate_size, d]],
      [`${p}.mlp.up_proj.weight`, [cfg.intermediate_size, d]],
      [`${p}.mlp.down_proj.weight`, [d, cfg.intermediate_size]],
    );
  }
  out.push(['model.norm.weight', [d]]);
  if (!cfg.tie_word_embeddings) out.push(['lm_head.weight', [cfg.vocab_size, d]]);
  return out;
}

/** Number of parameters (tied embeddings counted once). */
export function countParameters(cfg: LlamaConfig): number {
  return llamaTensorShapes(cfg).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
}
