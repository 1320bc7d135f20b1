/**
 * The files an export writes besides the .onnx, and the refusal to replace what is already there
 * (DESIGN §6: nothing kd did not write is overwritten without `--overwrite`).
 *
 * Beside every exported model go `config.json` (the resolved LlamaConfig, so precompute and eval
 * know its context length and eval its parameter count) and the checkpoint's `tokenizer.json` (so
 * precompute can refuse a prep made with another tokenizer).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { LlamaConfig } from '../model/config.js';
import { writeFileAtomic } from '../util/fs.js';

/** One output file: its path and, for a file whose content is known up front, the bytes. */
export interface PlannedOutput {
  path: string;
  /** When given, an existing file with exactly these bytes is not a conflict (nothing would be lost). */
  bytes?: Uint8Array;
}

/**
 * Refuses outputs that already exist, before anything is written.
 * @throws Error `"<path>: exists; --overwrite replaces it"` for an existing file (unless
 *   `overwrite`, or it holds exactly the planned bytes); `"<path>: is a directory, not a file to
 *   write"` for a directory (also with `overwrite`: kd never deletes a directory it was given as a file).
 */
export function refuseExisting(outputs: PlannedOutput[], overwrite: boolean): void {
  for (const o of outputs) {
    if (!existsSync(o.path)) continue;
    if (statSync(o.path).isDirectory()) throw new Error(`${o.path}: is a directory, not a file to write`);
    if (overwrite) continue;
    if (o.bytes && Buffer.from(o.bytes).equals(readFileSync(o.path))) continue;
    throw new Error(`${o.path}: exists; --overwrite replaces it`);
  }
}

/** What {@link sideFiles} plans: config.json and (when the checkpoint has one) tokenizer.json. */
export interface SideFiles {
  files: Required<PlannedOutput>[];
  /** The checkpoint's tokenizer.json bytes, undefined when it has none. */
  tokenizer?: Uint8Array;
}

/**
 * config.json (the resolved config, `torch_dtype` of the export) and a copy of the checkpoint's
 * tokenizer.json, planned beside `modelPath`.
 */
export function sideFiles(modelPath: string, checkpoint: string, cfg: LlamaConfig, torchDtype: string): SideFiles {
  const dir = dirname(modelPath);
  const config = Buffer.from(JSON.stringify({ ...cfg, torch_dtype: torchDtype }, null, 2) + '\n');
  const files = [{ path: join(dir, 'config.json'), bytes: new Uint8Array(config) }];
  const tokPath = join(checkpoint, 'tokenizer.json');
  if (!existsSync(tokPath)) return { files };
  const tokenizer = new Uint8Array(readFileSync(tokPath));
  files.push({ path: join(dir, 'tokenizer.json'), bytes: tokenizer });
  return { files, tokenizer };
}

/** Writes planned files that carry their bytes (each atomically). */
export function writePlanned(files: Required<PlannedOutput>[]): void {
  for (const f of files) writeFileAtomic(f.path, f.bytes);
}
