/**
 * The tokenizer a model was trained with, as far as its files say: the `tokenizer.json` beside
 * the .onnx (as `kd teacher export`, Optimum and onnxruntime-genai write it) or the sha256 that
 * `kd teacher export` also stores in the ONNX `metadata_props` (key {@link TOKENIZER_SHA256_KEY}).
 * Precompute compares it with the prep tokenizer, because a tokenizer of the same size but other
 * tokens gives soft labels that name the wrong tokens without any error.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { metadataOf } from './inspect.js';

/** metadata_props key holding the sha256 (hex) of the model's tokenizer.json bytes. */
export const TOKENIZER_SHA256_KEY = 'kd.tokenizer_sha256';

/** A model's tokenizer record. */
export interface ModelTokenizer {
  /** sha256 (hex) of the tokenizer.json bytes. */
  sha256: string;
  /** Where it was found: the tokenizer.json path, or `<model> metadata_props kd.tokenizer_sha256`. */
  where: string;
  /** The tokenizer.json beside the model, when there is one. */
  file?: string;
}

/**
 * The tokenizer recorded for the model at `modelPath` (bytes `modelBytes`): the tokenizer.json
 * beside it, else the metadata sha256; undefined when it carries neither.
 * @throws Error naming both when the tokenizer.json beside the model is not the one its metadata names.
 */
export function modelTokenizerOf(modelPath: string, modelBytes: Uint8Array): ModelTokenizer | undefined {
  const meta = metadataOf(modelBytes, modelPath)[TOKENIZER_SHA256_KEY];
  const file = join(dirname(modelPath), 'tokenizer.json');
  const metaWhere = `${modelPath} metadata_props ${TOKENIZER_SHA256_KEY}`;
  if (!existsSync(file)) return meta ? { sha256: meta, where: metaWhere } : undefined;
  const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
  if (meta && meta !== sha256) {
    throw new Error(`${file}: not the tokenizer the model was exported with (${metaWhere} is ${meta.slice(0, 12)}…, the file's sha256 ${sha256.slice(0, 12)}…)`);
  }
  return { sha256, where: file, file };
}
