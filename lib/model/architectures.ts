/**
 * The HF architectures kd implements — `llama` (Llama-2, TinyLlama, Llama-3.x), `qwen2` and
 * `mistral` — as small differences from one Llama forward pass: HF's defaults for keys a
 * config.json leaves out, which projections carry a bias, and which layers use a sliding window.
 * Sources: transformers' configuration_{llama,qwen2,mistral}.py and modeling_*.py.
 */
import type { LlamaConfig } from './config.js';

export type ModelType = 'llama' | 'qwen2' | 'mistral';
export const MODEL_TYPES: readonly ModelType[] = ['llama', 'qwen2', 'mistral'];

interface Architecture {
  /** The `architectures` entry of a config.json. */
  className: string;
  /** HF's values for keys a config.json may leave out (the Config class's __init__ defaults). */
  defaults: Partial<LlamaConfig>;
  /** Keys beyond the common Llama ones that this model_type's config has. */
  keys: (keyof LlamaConfig)[];
}

const ARCHITECTURES: Record<ModelType, Architecture> = {
  llama: {
    className: 'LlamaForCausalLM',
    defaults: { max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false, attention_bias: false, mlp_bias: false, rope_scaling: null },
    keys: ['head_dim', 'attention_bias', 'mlp_bias', 'rope_scaling'],
  },
  qwen2: {
    className: 'Qwen2ForCausalLM',
    defaults: {
      max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false, num_key_value_heads: 32,
      use_sliding_window: false, sliding_window: 4096, max_window_layers: 28, rope_scaling: null,
    },
    keys: ['head_dim', 'rope_scaling', 'use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types'],
  },
  mistral: {
    className: 'MistralForCausalLM',
    defaults: { max_position_embeddings: 4096 * 32, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: false, num_key_value_heads: 8, sliding_window: 4096, rope_scaling: null },
    keys: ['head_dim', 'rope_scaling', 'sliding_window'],
  },
};

/** Keys that belong to one model_type or another (each is refused on a model_type without it). */
const ARCH_KEYS = new Set(Object.values(ARCHITECTURES).flatMap((a) => a.keys));

const typeOf = (raw: { model_type?: unknown }): ModelType => (raw.model_type ?? 'llama') as ModelType;

/** The `architectures` class name of a model_type. */
export const architectureClass = (t: ModelType): string => ARCHITECTURES[t].className;

/**
 * A Hugging Face config.json (parsed) with HF's defaults for the keys it leaves out, as
 * transformers' Config class would hold it (e.g. Llama: tie_word_embeddings false, rms_norm_eps
 * 1e-6, max_position_embeddings 2048; Mistral: sliding_window 4096). Checking is left to
 * resolveLlamaConfig. An unknown model_type is returned unchanged, for it to refuse.
 */
export function withHfDefaults(raw: Record<string, unknown>): Record<string, unknown> {
  const arch = ARCHITECTURES[typeOf(raw)];
  if (!arch) return raw;
  const out: Record<string, unknown> = { model_type: typeOf(raw), architectures: [arch.className], ...arch.defaults, ...raw };
  // num_key_value_heads absent: Llama uses num_attention_heads (resolveLlamaConfig's rule), Qwen2 32, Mistral 8.
  if (raw.num_key_value_heads === undefined && arch.defaults.num_key_value_heads === undefined) delete out.num_key_value_heads;
  return out;
}

/**
 * Drops keys another model_type has but this one does not when they are null or false, and
 * refuses them otherwise: transformers would silently ignore them (e.g. `attention_bias: true`
 * on qwen2, whose q/k/v always have biases, or `sliding_window` on llama). Also refuses
 * inconsistent values. Mutates `cfg`.
 * @throws Error `<source>: <key> = <value> is not a field of model_type '<type>' …`.
 */
export function checkArchitecture(cfg: LlamaConfig, source: string): void {
  const arch = ARCHITECTURES[cfg.model_type];
  for (const key of ARCH_KEYS) {
    if (cfg[key] === undefined || arch.keys.includes(key)) continue;
    if (cfg[key] === null || cfg[key] === false) { delete cfg[key]; continue; }
    throw new Error(`${source}: ${key} = ${JSON.stringify(cfg[key])} is not a field of model_type '${cfg.model_type}' (transformers would ignore it; remove it)`);
  }
  if (cfg.layer_types && cfg.layer_types.length !== cfg.num_hidden_layers) {
    throw new Error(`${source}: layer_types has ${cfg.layer_types.length} entries but num_hidden_layers is ${cfg.num_hidden_layers}`);
  }
}

/** Which projections carry a bias: q/k/v, o_proj, and the three MLP projections. */
export interface ProjectionBiases { qkv: boolean; o: boolean; mlp: boolean }

/**
 * Llama: q/k/v/o biases with `attention_bias`, MLP biases with `mlp_bias`; Qwen2: q/k/v biases
 * always, none on o_proj or the MLP; Mistral: none.
 */
export function projectionBiases(cfg: LlamaConfig): ProjectionBiases {
  if (cfg.model_type === 'qwen2') return { qkv: true, o: false, mlp: false };
  if (cfg.model_type === 'mistral') return { qkv: false, o: false, mlp: false };
  return { qkv: cfg.attention_bias === true, o: cfg.attention_bias === true, mlp: cfg.mlp_bias === true };
}

/**
 * The sliding window of layer `layer` (a query at position t attends keys t − w < s ≤ t, HF
 * masking_utils' `sliding_window_overlay`), or null for full causal attention.
 * Mistral: `sliding_window` on every layer. Qwen2: only with use_sliding_window, on the layers
 * `layer_types` marks 'sliding_attention' or, without layer_types, layer ≥ max_window_layers. Llama: never.
 */
export function layerWindow(cfg: LlamaConfig, layer: number): number | null {
  const w = cfg.sliding_window ?? null;
  if (cfg.model_type === 'mistral') return w;
  // Qwen2Config sets sliding_window to None unless use_sliding_window, whatever layer_types say.
  if (cfg.model_type !== 'qwen2' || w === null || cfg.use_sliding_window !== true) return null;
  const sliding = cfg.layer_types ? cfg.layer_types[layer] === 'sliding_attention' : layer >= (cfg.max_window_layers ?? 0);
  return sliding ? w : null;
}
