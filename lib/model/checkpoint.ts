import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { withHfDefaults } from './architectures.js';
import { LlamaConfig, resolveLlamaConfig } from './config.js';
import { SafetensorsDtype } from './safetensors.js';
import { DEFAULT_MAX_SHARD_SIZE, readCheckpointTensors, writeShardedSafetensors } from './sharded.js';
import { NamedTensors } from './tensors.js';
import { copyFileDurable, readJson, writeFileAtomic } from '../util/fs.js';

/**
 * Reads a Hugging Face Llama, Qwen2 or Mistral checkpoint directory: config.json + model.safetensors
 * (or shards and model.safetensors.index.json), read tensor by tensor (any size; F32, F16, BF16).
 * @throws Error naming the file when either is missing or inconsistent.
 */
export function loadCheckpoint(dir: string): { cfg: LlamaConfig; weights: NamedTensors } {
  if (!existsSync(dir)) throw new Error(`${dir}: checkpoint directory not found`);
  // Keys the file leaves out take HF's defaults for its model_type (e.g. tie_word_embeddings false).
  const raw = readJson<Record<string, unknown>>(join(dir, 'config.json'), 'config.json');
  const cfg = resolveLlamaConfig(withHfDefaults(raw) as Partial<LlamaConfig>, join(dir, 'config.json'));
  return { cfg, weights: readCheckpointTensors(dir) };
}

/** How {@link saveCheckpoint} stores the weights. */
export interface SaveCheckpointOptions {
  /** F32 (default), F16 or BF16 (both round to nearest even). */
  dtype?: SafetensorsDtype;
  /** Shard above this many bytes of tensor data (default 5·10⁹, transformers' "5GB"). */
  maxShardSize?: number;
  /** tokenizer.json to copy beside the weights. */
  tokenizer?: string;
}

const TORCH_DTYPE: Record<SafetensorsDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * Writes config.json, the weights (model.safetensors, or shards + model.safetensors.index.json
 * above `maxShardSize`; HF names) and, if given, a copy of tokenizer.json. Each file is written
 * durably and streamed (lib/util/fs.ts, lib/model/sharded.ts); the directory is created.
 * @returns the weight files written (relative to `dir`) and their total bytes
 * @throws Error `<file>: no space left on device` and the like (the file keeps its previous content)
 */
export function saveCheckpoint(dir: string, cfg: LlamaConfig, weights: NamedTensors, o: SaveCheckpointOptions = {}): { files: string[]; bytes: number } {
  mkdirSync(dir, { recursive: true });
  const dtype = o.dtype ?? 'F32';
  const written = writeShardedSafetensors(dir, weights, dtype, o.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE);
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ ...cfg, torch_dtype: TORCH_DTYPE[dtype] }, null, 2) + '\n');
  if (o.tokenizer) copyFileDurable(o.tokenizer, join(dir, 'tokenizer.json'));
  return written;
}
