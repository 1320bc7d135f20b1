import { unknownKey } from '../cli/config.js';

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
  bos_token_id?: number | number[] | null;
  eos_token_id?: number | number[] | null;
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

type Check = (v: unknown) => string | undefined;
const positiveInt: Check = (v) => (Number.isInteger(v) && (v as number) >= 1 ? undefined : 'must be an integer ≥ 1');
const tokenId: Check = (v) => (v === null || (Number.isInteger(v) && (v as number) >= 0) || (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0))
  ? undefined : 'must be a token id (an integer ≥ 0), a list of them or null');

/** The LlamaConfig fields kd reads, each with its type check (a string where a number belongs is refused). */
const FIELDS: Record<keyof LlamaConfig, Check> = {
  model_type: (v) => (v === 'llama' ? undefined : "is not supported (only 'llama': kd implements the Llama architecture alone)"),
  architectures: (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be a list of strings'),
  vocab_size: positiveInt, hidden_size: positiveInt, intermediate_size: positiveInt, num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt, num_key_value_heads: positiveInt, max_position_embeddings: positiveInt,
  rms_norm_eps: (v) => (typeof v === 'number' && v > 0 && v < 1 ? undefined : 'must be a number in (0, 1)'),
  rope_theta: (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'must be a number > 0'),
  tie_word_embeddings: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
  hidden_act: (v) => (v === 'silu' ? undefined : "is not supported (only 'silu')"),
  bos_token_id: tokenId, eos_token_id: tokenId,
  torch_dtype: (v) => (typeof v === 'string' ? undefined : 'must be a string such as "float32"'),
};
const FIELD_NAMES = Object.keys(FIELDS);

/**
 * HF config.json keys that do not change the forward pass (bookkeeping, generation, training-time
 * knobs kd sets elsewhere): accepted and dropped when they come from a checkpoint.
 * pretraining_tp > 1 only splits HF's matmuls into slices, the same product up to rounding.
 */
const HARMLESS = new Set([
  '_name_or_path', '_commit_hash', '_attn_implementation', 'transformers_version', 'dtype', 'use_cache', 'initializer_range',
  'pretraining_tp', 'pad_token_id', 'sep_token_id', 'decoder_start_token_id', 'tokenizer_class', 'id2label', 'label2id',
  'output_attentions', 'output_hidden_states', 'return_dict', 'torchscript', 'use_bfloat16', 'is_decoder', 'is_encoder_decoder',
  'task_specific_params', 'problem_type', 'finetuning_task', 'max_window_layers', 'use_sliding_window',
]);

/** HF keys that change the math, accepted only at the value kd implements; the check says why not. */
const MATH: Record<string, (v: unknown, raw: Record<string, unknown>) => string | undefined> = {
  rope_scaling: (v) => (v === null ? undefined : 'is not implemented by kd (only null: plain RoPE)'),
  attention_bias: (v) => (v === false ? undefined : 'is not implemented by kd (only false: q/k/v/o projections without bias)'),
  mlp_bias: (v) => (v === false ? undefined : 'is not implemented by kd (only false: MLP projections without bias)'),
  sliding_window: (v, raw) => (v === null || raw.use_sliding_window === false ? undefined : 'is not implemented by kd (only null, or use_sliding_window false: full causal attention)'),
  head_dim: (v, raw) => {
    const implied = (raw.hidden_size as number) / (raw.num_attention_heads as number);
    return v === null || v === implied ? undefined : `is not implemented by kd (only hidden_size / num_attention_heads = ${implied})`;
  },
  attention_dropout: (v) => (v === 0 || v === 0.0 ? undefined : "is not implemented by kd (only 0; set kd train's dropout instead)"),
  partial_rotary_factor: (v) => (v === 1 ? undefined : 'is not implemented by kd (only 1: RoPE over the whole head)'),
};

/**
 * The check of a train config's `model` (the user's `--model` JSON): an object of LlamaConfig fields
 * only. @returns the inner key at fault and the message, e.g. "unknown key 'hiden_size' (did you mean 'hidden_size'?)".
 */
export function checkModelOverrides(value: unknown): { key: string; problem: string } | string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'must be an object of LlamaConfig fields';
  for (const [key, v] of Object.entries(value)) {
    if (!(key in FIELDS)) return { key, problem: unknownKey(key, FIELD_NAMES) };
    const problem = FIELDS[key as keyof LlamaConfig](v);
    if (problem) return { key, problem: `${key} = ${JSON.stringify(v)} ${problem}` };
  }
  return undefined;
}

/** HF config keys that must be present. */
const REQUIRED: (keyof LlamaConfig)[] = [
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
];

/**
 * Resolves a partial config (e.g. a parsed HF `config.json`) against the defaults and checks it.
 * Keys: LlamaConfig fields are type-checked; harmless HF bookkeeping keys are dropped; HF keys that
 * change the math (rope_scaling, attention_bias, mlp_bias, sliding_window, head_dim, …) are refused
 * unless at the value kd implements; any other key is refused with the nearest valid name.
 * @throws Error `<source>: <key> = <value> <problem>` (one line), or on a missing required field or
 *   inconsistent shapes.
 */
export function resolveLlamaConfig(partial: Partial<LlamaConfig>, source = 'config'): LlamaConfig {
  const raw = partial as Record<string, unknown>;
  for (const key of REQUIRED) {
    if (raw[key] === undefined) throw new Error(`${source}: missing required field '${key}'`);
  }
  const picked: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    const problem = key in FIELDS ? FIELDS[key as keyof LlamaConfig](v) : key in MATH ? MATH[key](v, raw) : undefined;
    if (problem) throw new Error(`${source}: ${key} = ${JSON.stringify(v)} ${problem}`);
    if (key in FIELDS) picked[key] = v;
    else if (!(key in MATH) && !HARMLESS.has(key)) throw new Error(`${source}: ${unknownKey(key, [...FIELD_NAMES, ...Object.keys(MATH)])}`);
  }
  const cfg: LlamaConfig = { ...LLAMA_DEFAULTS, ...picked } as LlamaConfig;
  if (raw.num_key_value_heads === undefined) cfg.num_key_value_heads = cfg.num_attention_heads;
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
