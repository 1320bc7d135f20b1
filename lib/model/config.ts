import { unknownKey } from '../cli/config.js';
import { architectureClass, checkArchitecture, MODEL_TYPES, ModelType, projectionBiases } from './architectures.js';
import { checkRopeScaling, RopeScaling } from './rope-scaling.js';

/**
 * Llama-architecture model configuration with Hugging Face `LlamaConfig` field names (and the
 * Qwen2Config / MistralConfig fields of those two small variants, see architectures.ts), so a
 * `config.json` written here loads in `transformers` and vice versa.
 */
export interface LlamaConfig {
  model_type: ModelType;
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
  /** Per-head width when not hidden_size / num_attention_heads (null: that quotient). */
  head_dim?: number | null;
  /** llama: biases on q/k/v/o_proj. */
  attention_bias?: boolean;
  /** llama: biases on gate/up/down_proj. */
  mlp_bias?: boolean;
  /** RoPE variant (rope.ts): null or rope_type 'default', 'linear', 'llama3'. */
  rope_scaling?: RopeScaling | null;
  /** mistral, qwen2: attention window in positions (the query included); null: full attention. */
  sliding_window?: number | null;
  /** qwen2: whether sliding_window applies (to layers ≥ max_window_layers, or per layer_types). */
  use_sliding_window?: boolean;
  max_window_layers?: number;
  layer_types?: ('full_attention' | 'sliding_attention')[];
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
  model_type: (v) => (MODEL_TYPES.includes(v as ModelType) ? undefined : `is not supported (kd implements ${MODEL_TYPES.map((t) => `'${t}'`).join(', ')})`),
  architectures: (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be a list of strings'),
  vocab_size: positiveInt, hidden_size: positiveInt, intermediate_size: positiveInt, num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt, num_key_value_heads: positiveInt, max_position_embeddings: positiveInt,
  rms_norm_eps: (v) => (typeof v === 'number' && v > 0 && v < 1 ? undefined : 'must be a number in (0, 1)'),
  rope_theta: (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'must be a number > 0'),
  tie_word_embeddings: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
  hidden_act: (v) => (v === 'silu' ? undefined : "is not supported (only 'silu')"),
  bos_token_id: tokenId, eos_token_id: tokenId,
  torch_dtype: (v) => (typeof v === 'string' ? undefined : 'must be a string such as "float32"'),
  head_dim: (v) => (v === null ? undefined : positiveInt(v)),
  attention_bias: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
  mlp_bias: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
  rope_scaling: (v) => { const p = checkRopeScaling(v); return p && `is refused: ${p.key} ${p.problem}`; },
  sliding_window: (v) => (v === null ? undefined : positiveInt(v)),
  use_sliding_window: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
  max_window_layers: (v) => (Number.isInteger(v) && (v as number) >= 0 ? undefined : 'must be an integer ≥ 0'),
  layer_types: (v) => (Array.isArray(v) && v.every((x) => x === 'full_attention' || x === 'sliding_attention')
    ? undefined : "must be a list of 'full_attention' / 'sliding_attention'"),
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
  'task_specific_params', 'problem_type', 'finetuning_task',
]);

/** HF keys that change the math, accepted only at the value kd implements; the check says why not. */
const MATH: Record<string, (v: unknown, raw: Record<string, unknown>) => string | undefined> = {
  attention_dropout: (v) => (v === 0 || v === 0.0 ? undefined : "is not implemented by kd (only 0; set kd train's dropout instead)"),
  partial_rotary_factor: (v) => (v === 1 ? undefined : 'is not implemented by kd (only 1: RoPE over the whole head)'),
  // Qwen2.5 config.json files carry use_mrope: false; true is Qwen2-VL's multimodal RoPE.
  use_mrope: (v) => (v === false ? undefined : "is not implemented by kd (only false: M-RoPE is Qwen2-VL's)"),
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
 * Resolves a partial config against kd's defaults (LLAMA_DEFAULTS; a Hugging Face config.json
 * goes through architectures.ts `withHfDefaults` first, for HF's) and checks it.
 * Keys: LlamaConfig fields are type-checked (rope_scaling: only the rope types rope.ts implements;
 * keys of another model_type refused, see architectures.ts); harmless HF bookkeeping keys are
 * dropped; HF keys that change the math in ways kd does not implement (attention_dropout,
 * partial_rotary_factor) are refused unless at the neutral value; any other key is refused with
 * the nearest valid name.
 * @throws Error `<source>: <key> = <value> <problem>` (one line), or on a missing required field or
 *   inconsistent shapes.
 */
export function resolveLlamaConfig(partial: Partial<LlamaConfig>, source = 'config'): LlamaConfig {
  const raw = partial as Record<string, unknown>;
  // The model type first: a GPT-2 config lacks Llama's fields, and "missing hidden_size" would hide why.
  const typeProblem = raw.model_type === undefined ? undefined : FIELDS.model_type(raw.model_type);
  if (typeProblem) throw new Error(`${source}: model_type = ${JSON.stringify(raw.model_type)} ${typeProblem}`);
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
  if (raw.architectures === undefined) cfg.architectures = [architectureClass(cfg.model_type)];
  checkArchitecture(cfg, source);
  if (cfg.head_dim == null && cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new Error(`${source}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`);
  }
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    throw new Error(`${source}: num_attention_heads ${cfg.num_attention_heads} is not divisible by num_key_value_heads ${cfg.num_key_value_heads}`);
  }
  if (headDim(cfg) % 2 !== 0) throw new Error(`${source}: head_dim ${headDim(cfg)} must be even for RoPE`);
  return cfg;
}

/** Per-head width: head_dim, or hidden_size / num_attention_heads. */
export const headDim = (cfg: LlamaConfig): number => cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;

/**
 * The HF tensor names and shapes of a Llama (Qwen2, Mistral) checkpoint, in a stable order.
 * Linear weights are [out_features, in_features] as in `torch.nn.Linear`; biases [out_features]
 * where the architecture has them (architectures.ts `projectionBiases`).
 */
export function llamaTensorShapes(cfg: LlamaConfig): [string, number[]][] {
  const d = cfg.hidden_size, hd = headDim(cfg), q = cfg.num_attention_heads * hd, kv = cfg.num_key_value_heads * hd, f = cfg.intermediate_size;
  const bias = projectionBiases(cfg);
  const out: [string, number[]][] = [['model.embed_tokens.weight', [cfg.vocab_size, d]]];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`, a = `${p}.self_attn`;
    out.push([`${p}.input_layernorm.weight`, [d]], [`${a}.q_proj.weight`, [q, d]], [`${a}.k_proj.weight`, [kv, d]], [`${a}.v_proj.weight`, [kv, d]]);
    if (bias.qkv) out.push([`${a}.q_proj.bias`, [q]], [`${a}.k_proj.bias`, [kv]], [`${a}.v_proj.bias`, [kv]]);
    out.push([`${a}.o_proj.weight`, [d, q]]);
    if (bias.o) out.push([`${a}.o_proj.bias`, [d]]);
    out.push([`${p}.post_attention_layernorm.weight`, [d]], [`${p}.mlp.gate_proj.weight`, [f, d]], [`${p}.mlp.up_proj.weight`, [f, d]], [`${p}.mlp.down_proj.weight`, [d, f]]);
    if (bias.mlp) out.push([`${p}.mlp.gate_proj.bias`, [f]], [`${p}.mlp.up_proj.bias`, [f]], [`${p}.mlp.down_proj.bias`, [d]]);
  }
  out.push(['model.norm.weight', [d]]);
  if (!cfg.tie_word_embeddings) out.push(['lm_head.weight', [cfg.vocab_size, d]]);
  return out;
}

/** Number of parameters (tied embeddings counted once). */
export function countParameters(cfg: LlamaConfig): number {
  return llamaTensorShapes(cfg).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
}
