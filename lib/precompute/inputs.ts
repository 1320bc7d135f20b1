/**
 * The inputs of a precompute run, read and checked before the teacher is loaded: token windows,
 * tokenizer, teacher ONNX (vocabulary, hashes). Every problem is one line naming the file
 * (DESIGN §6).
 *
 * Vocabulary sizes: a teacher whose logits are narrower than the tokenizer is refused (its
 * top-k could never name some tokens). A wider teacher (embedding rows padded, e.g. to a
 * multiple of 64) is accepted: the manifest records both sizes, `log_z` normalises over every
 * teacher row (a trained teacher gives padded rows ≈ 0 mass, which then counts as tail), and a
 * padded id that reaches a top-k stops the run naming the window (see `teacher-rows.ts`). A
 * graph whose logits dim is symbolic only shows its real width when it runs: precompute checks
 * it on a first batch before anything is written (`vocabDeclared` false).
 *
 * Tokenizer: the teacher's (the tokenizer.json beside it, or the sha256 in its metadata_props)
 * must be the prep's, also at the same vocabulary size; a teacher that carries none is accepted
 * with a warning (`teacherTokenizer` undefined).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTokenNoise, type TokenNoise } from '../data/augment/token-noise.js';
import { readWindows, type WindowSet } from '../data/windows.js';
import { checkContextLength, declaredLogitsWidth, externalDataFiles, modelTokenizerOf, readOnnx, vocabSizeOf, type ModelTokenizer } from '../onnx/index.js';
import { sha256File } from '../shards/manifest.js';
import { loadTokenizer, sameTokenizerFiles, type Tokenizer } from '../tokenizer/tokenizer.js';

/** Everything precompute reads, checked. */
export interface PrecomputeInputs {
  windows: WindowSet;
  /** Windows this run covers (the first `rows` of the train split). */
  rows: number;
  tokenizer: Tokenizer;
  teacherBytes: Uint8Array;
  /** Logit width of the teacher (declared, or else the rows of its embedding: see `vocabDeclared`). */
  teacherVocab: number;
  /** True when the graph declares the logits width; false when it is symbolic and must be measured. */
  vocabDeclared: boolean;
  /** The teacher's tokenizer record; undefined when the teacher carries none. */
  teacherTokenizer?: ModelTokenizer;
  /** sha256 of the prep's validation windows (streamed, checked against windows.json). */
  validationSha256: string;
  /** sha256 over the .onnx bytes and then each external data file, in sorted name order. */
  teacherSha256: string;
  /** The prep's token noise (windows.json `augmentation.token_noise`), undefined when off. */
  noise?: TokenNoise;
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
 * Refuses a prep tokenizer that is not the teacher's.
 * @throws Error "<prep>/tokenizer.json: not the teacher's tokenizer (<teacher dir>/tokenizer.json): …"
 */
function checkTeacherTokenizer(tokenizer: Tokenizer, teacher: ModelTokenizer | undefined): void {
  if (!teacher || teacher.sha256 === tokenizer.sha256) return;
  if (teacher.file && sameTokenizerFiles(teacher.file, tokenizer.path)) return; // same content, other formatting
  const fix = teacher.file ? `kd prep --tokenizer ${teacher.file}` : 'kd prep --tokenizer <the tokenizer.json the teacher was trained with>';
  throw new Error(`${tokenizer.path}: not the teacher's tokenizer (${teacher.where}; sha256 ${tokenizer.sha256.slice(0, 12)}… vs ${teacher.sha256.slice(0, 12)}…): the teacher's soft labels would name other tokens; make the prep with the teacher's tokenizer (${fix})`);
}

/** sha256 of the validation windows, streamed, checked against windows.json. */
async function validationSha256(windows: WindowSet, prep: string): Promise<string> {
  const split = windows.meta.splits.validation;
  const path = join(prep, split.file);
  if (!existsSync(path)) throw new Error(`${path}: not found (validation windows of ${join(prep, 'windows.json')})`);
  const actual = await sha256File(path);
  if (actual !== split.sha256) throw new Error(`${path}: sha256 ${actual.slice(0, 12)}… differs from windows.json (${split.sha256.slice(0, 12)}…): changed after prep?`);
  return actual;
}

/**
 * Reads and checks the windows, tokenizer and teacher.
 * @throws Error, one line each: missing/empty/truncated window file (from readWindows), or one
 *   whose sha256 is not the one in windows.json (train and validation); missing
 *   tokenizer; "<teacher>: ONNX file not found" / "not an ONNX model (…)"; a context length beside
 *   the teacher (config.json, genai_config.json) below seq_len; "<prep>/tokenizer.json: not the
 *   teacher's tokenizer (…)"; "<teacher>: teacher vocabulary (500) is smaller than the tokenizer's
 *   (512, <prep>/tokenizer.json)"; "<kLabel> = 600 is larger than the vocabulary (512 tokens in
 *   <prep>/tokenizer.json)".
 * @param kLabel where k came from, heading its error: `--k`, or `<config file>: k`
 */
export async function loadPrecomputeInputs(cfg: InputPaths, kLabel: string): Promise<PrecomputeInputs> {
  const windows = readWindows(cfg.prep, 'train');
  const split = windows.meta.splits.train;
  const actual = createHash('sha256').update(windows.ids).digest('hex');
  if (actual !== split.sha256) {
    throw new Error(`${join(cfg.prep, split.file)}: sha256 ${actual.slice(0, 12)}… differs from windows.json (${split.sha256.slice(0, 12)}…): changed after prep?`);
  }
  const validation = await validationSha256(windows, cfg.prep);
  const tokenizer = loadTokenizer(join(cfg.prep, 'tokenizer.json'));
  if (cfg.k > tokenizer.vocabSize) {
    throw new Error(`${kLabel} = ${cfg.k} is larger than the vocabulary (${tokenizer.vocabSize} tokens in ${tokenizer.path})`);
  }
  const teacherBytes = readOnnx(cfg.teacher);
  checkContextLength(cfg.teacher, windows.seqLen, join(cfg.prep, 'windows.json'));
  const teacherTokenizer = modelTokenizerOf(cfg.teacher, teacherBytes);
  checkTeacherTokenizer(tokenizer, teacherTokenizer);
  const teacherVocab = vocabSizeOf(teacherBytes, cfg.teacher);
  if (teacherVocab < tokenizer.vocabSize) {
    throw new Error(`${cfg.teacher}: teacher vocabulary (${teacherVocab}) is smaller than the tokenizer's (${tokenizer.vocabSize}, ${tokenizer.path})`);
  }
  const spec = windows.meta.augmentation?.token_noise;
  const noise = spec ? loadTokenNoise(cfg.prep, spec, windows.meta.vocab_size) : undefined;
  const rows = cfg.max_windows > 0 ? Math.min(cfg.max_windows, windows.rows) : windows.rows;
  return {
    windows, rows, tokenizer, teacherBytes, teacherVocab, vocabDeclared: declaredLogitsWidth(teacherBytes, cfg.teacher) !== undefined,
    teacherTokenizer, validationSha256: validation, teacherSha256: await teacherSha256(cfg.teacher, teacherBytes), ...(noise ? { noise } : {}),
  };
}
