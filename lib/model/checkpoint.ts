import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { withHfDefaults } from './architectures.js';
import { LlamaConfig, resolveLlamaConfig } from './config.js';
import { readSafetensors, SafetensorsDtype, writeSafetensors } from './safetensors.js';
import { NamedTensors } from './tensors.js';
import { copyFileDurable, readJson, writeFileAtomic } from '../util/fs.js';

/**
 * Reads a Hugging Face Llama, Qwen2 or Mistral checkpoint directory: config.json + model.safetensors.
 * @throws Error naming the file when either is missing or inconsistent.
 */
export function loadCheckpoint(dir: string): { cfg: LlamaConfig; weights: NamedTensors } {
  if (!existsSync(dir)) throw new Error(`${dir}: checkpoint directory not found`);
  // Keys the file leaves out take HF's defaults for its model_type (e.g. tie_word_embeddings false).
  const raw = readJson<Record<string, unknown>>(join(dir, 'config.json'), 'config.json');
  const cfg = resolveLlamaConfig(withHfDefaults(raw) as Partial<LlamaConfig>, join(dir, 'config.json'));
  const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
  return { cfg, weights: tensors };
}

/**
 * Writes config.json, model.safetensors (HF names) and, if given, a copy of tokenizer.json.
 * Each file is written durably (lib/util/fs.ts); the directory is created.
 * @throws Error `<file>: no space left on device` and the like (the file keeps its previous content)
 */
export function saveCheckpoint(dir: string, cfg: LlamaConfig, weights: NamedTensors, o: { dtype?: SafetensorsDtype; tokenizer?: string } = {}): void {
  mkdirSync(dir, { recursive: true });
  const dtype = o.dtype ?? 'F32';
  writeSafetensors(join(dir, 'model.safetensors'), weights, dtype, { format: 'pt' });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ ...cfg, torch_dtype: dtype === 'F16' ? 'float16' : 'float32' }, null, 2) + '\n');
  if (o.tokenizer) copyFileDurable(o.tokenizer, join(dir, 'tokenizer.json'));
}
