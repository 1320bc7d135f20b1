/**
 * The inputs of a precompute run, read and checked before the teacher is loaded: token windows,
 * tokenizer, teacher ONNX (vocabulary, hashes). Every problem is one line naming the file
 * (DESIGN §6).
 *
 * Vocabulary sizes: a teacher whose logits are narrower than the tokenizer is refused (its
 * top-k could never name some tokens). A wider teacher (embedding rows padded, e.g. to a
 * multiple of 64) is accepted: the manifest records both sizes, `log_z` normalises over every
 * teacher row (a trained teacher gives padded rows ≈ 0 mass, which then counts as tail), and a
 * padded id that reaches a top-k stops the run naming the window (see `teacher-rows.ts`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readWindows, type WindowSet } from '../data/windows.js';
import { checkContextLength, externalDataFiles, readOnnx, vocabSizeOf } from '../onnx/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.js';

/** Everything precompute reads, checked. */
export interface PrecomputeInputs {
  windows: WindowSet;
  /** Windows this run covers (the first `rows` of the train split). */
  rows: number;
  tokenizer: Tokenizer;
  teacherBytes: Uint8Array;
  /** Logit width of the teacher. */
  teacherVocab: number;
  /** sha256 over the .onnx bytes and then each external data file, in sorted name order. */
  teacherSha256: string;
}

/** What {@link loadPrecomputeInputs} needs from the config. */
export interface InputPaths {
  teacher: string;
  prep: string;
  k: number;
  /** 0 = all windows. */
  max_windows: number;
}

/** sha256 of the model bytes followed by its external data files (streamed). */
export async function teacherSha256(path: string, bytes: Uint8Array): Promise<string> {
  const hash = createHash('sha256').update(bytes);
  for (const loc of externalDataFiles(bytes, path)) {
    const file = join(dirname(path), loc);
    if (!existsSync(file)) throw new Error(`${path}: external data file '${loc}' not found next to the model`);
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/**
 * Reads and checks the windows, tokenizer and teacher.
 * @throws Error, one line each: missing/empty/truncated window file (from readWindows), or one
 *   whose sha256 is not the one in windows.json; missing
 *   tokenizer; "<teacher>: ONNX file not found" / "not an ONNX model (…)"; "<teacher>: teacher
 *   vocabulary (500) is smaller than the tokenizer's (512, <prep>/tokenizer.json)"; "<source>: k =
 *   600 is larger than the vocabulary (512 tokens in <prep>/tokenizer.json)".
 */
export async function loadPrecomputeInputs(cfg: InputPaths, source: string): Promise<PrecomputeInputs> {
  const windows = readWindows(cfg.prep, 'train');
  const split = windows.meta.splits.train;
  const actual = createHash('sha256').update(windows.ids).digest('hex');
  if (actual !== split.sha256) {
    throw new Error(`${join(cfg.prep, split.file)}: sha256 ${actual.slice(0, 12)}… differs from windows.json (${split.sha256.slice(0, 12)}…): changed after prep?`);
  }
  const tokenizer = loadTokenizer(join(cfg.prep, 'tokenizer.json'));
  if (cfg.k > tokenizer.vocabSize) {
    throw new Error(`${source}: k = ${cfg.k} is larger than the vocabulary (${tokenizer.vocabSize} tokens in ${tokenizer.path})`);
  }
  const teacherBytes = readOnnx(cfg.teacher);
  checkContextLength(cfg.teacher, windows.seqLen, join(cfg.prep, 'windows.json'));
  const teacherVocab = vocabSizeOf(teacherBytes, cfg.teacher);
  if (teacherVocab < tokenizer.vocabSize) {
    throw new Error(`${cfg.teacher}: teacher vocabulary (${teacherVocab}) is smaller than the tokenizer's (${tokenizer.vocabSize}, ${tokenizer.path})`);
  }
  const rows = cfg.max_windows > 0 ? Math.min(cfg.max_windows, windows.rows) : windows.rows;
  return { windows, rows, tokenizer, teacherBytes, teacherVocab, teacherSha256: await teacherSha256(cfg.teacher, teacherBytes) };
}
