import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { NamedTensors } from '../model/tensors.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { readJson, sha256, writeFileAtomic } from '../util/fs.js';
import { AdamW } from './adamw.js';
import { TrainConfig } from './config.js';

/** A validation result at a step. */
export interface ValPoint { step: number; loss: number; ppl: number }

/**
 * Everything beside the weights and the optimizer moments that a resumed run needs to continue
 * the same run (out/trainer_state.json). The data order, learning rate, temperature and dropout
 * masks are pure functions of (config, step), so step + config restore them exactly.
 */
export interface TrainerState {
  format: 'kd-trainer-state';
  version: 1;
  /** Optimizer steps done (= AdamW's step count). */
  step: number;
  epoch: number;
  tokens_seen: number;
  last_loss: number | null;
  last_val: ValPoint | null;
  /** Lowest validation loss so far (its weights are in out/best). */
  best: ValPoint | null;
  /** Evaluations since `best` (early stopping). */
  bad_evals: number;
  stopped_early: boolean;
  /** How the random streams derive from the config (documentation for readers of the file). */
  rng: string;
  /** The config keys that fix the trajectory: a resume with other values is refused. */
  trajectory: Record<string, unknown>;
  /** sha256 of the files written with this state, checked at resume (a save cut short is detected). */
  files: Record<string, string>;
}

/** Config keys that do not change the loss at any step, so they may differ at resume. */
const FREE_KEYS: (keyof TrainConfig)[] = ['out', 'resume', 'quiet', 'backend', 'save_every', 'eval_every', 'early_stopping_patience'];

export const STATE_FILE = 'trainer_state.json';
const FILES = ['model.safetensors', 'optimizer.safetensors'];

/** A fresh state for a run of `cfg`. */
export function initialState(cfg: TrainConfig): TrainerState {
  const trajectory = Object.fromEntries(Object.entries(cfg).filter(([k]) => !FREE_KEYS.includes(k as keyof TrainConfig)));
  return {
    format: 'kd-trainer-state', version: 1, step: 0, epoch: 0, tokens_seen: 0, last_loss: null, last_val: null,
    best: null, bad_evals: 0, stopped_early: false,
    rng: 'init: mulberry32(seed); data order: epochOrder(seed, epoch); dropout masks: mulberry32(hashSeed(hashSeed(seed, step, micro), site))',
    trajectory, files: {},
  };
}

/**
 * Writes the resumable state to `out`: the HF checkpoint (config.json, model.safetensors,
 * tokenizer.json), optimizer.safetensors (AdamW moments) and, last, trainer_state.json with the
 * files' hashes.
 */
export function saveTrainingState(out: string, model: LlamaModel, optimizer: AdamW, state: TrainerState, tokenizer: string): void {
  saveCheckpoint(out, model.cfg, model.toNamedTensors(), { tokenizer });
  writeSafetensors(join(out, 'optimizer.safetensors'), optimizer.state());
  state.files = Object.fromEntries(FILES.map((f) => [f, sha256(readFileSync(join(out, f)))]));
  writeFileAtomic(join(out, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
}

/**
 * Reads the resumable state in `out` written for the same trajectory.
 * @returns undefined when `out` holds no state
 * @throws Error naming the file when the state is foreign, was written for other settings
 *   (listing them) or its files do not match their hashes.
 */
export function loadTrainingState(out: string, cfg: TrainConfig): { state: TrainerState; weights: NamedTensors; moments: NamedTensors } | undefined {
  const path = join(out, STATE_FILE);
  if (!existsSync(path)) return undefined;
  let saved = readJson<TrainerState>(path, 'trainer state');
  // States written before this format ({ step, epoch, tokens_seen } at an epoch end) resume without the checks.
  const legacy = saved.format === undefined && Number.isInteger(saved.step);
  if (legacy) saved = { ...initialState(cfg), step: saved.step, epoch: saved.epoch, tokens_seen: saved.tokens_seen };
  else if (saved.format !== 'kd-trainer-state' || saved.version !== 1) throw new Error(`${path}: not a kd trainer state (format ${saved.format}, version ${saved.version}); train into a fresh --out`);
  const want = initialState(cfg).trajectory;
  const differ = Object.keys({ ...want, ...saved.trajectory }).filter((k) => JSON.stringify(want[k]) !== JSON.stringify(saved.trajectory[k]));
  if (differ.length > 0) {
    const list = differ.map((k) => `${k}: ${JSON.stringify(saved.trajectory[k])} → ${JSON.stringify(want[k])}`).join(', ');
    throw new Error(`${path}: the run in ${out} was started with other settings (${list}); resume with the same ones or train into a fresh --out`);
  }
  for (const f of legacy ? [] : FILES) {
    if (!existsSync(join(out, f)) || sha256(readFileSync(join(out, f))) !== saved.files[f]) {
      throw new Error(`${path}: ${f} does not match the saved state (a save was cut short?); cannot resume exactly`);
    }
  }
  const { weights } = loadCheckpoint(out);
  const moments = readSafetensors(join(out, 'optimizer.safetensors')).tensors;
  return { state: saved, weights, moments };
}

/** Copies the HF checkpoint files of `out` to `out/<name>` (e.g. epoch-N). */
export function copyCheckpoint(out: string, name: string): void {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) cpSync(join(out, f), join(dir, f));
}

/** Writes the current weights as an HF checkpoint to `out/best` with best.json (step, val loss, ppl). */
export function saveBest(out: string, model: LlamaModel, tokenizer: string, best: ValPoint): void {
  const dir = join(out, 'best');
  saveCheckpoint(dir, model.cfg, model.toNamedTensors(), { tokenizer });
  writeFileAtomic(join(dir, 'best.json'), JSON.stringify(best, null, 2) + '\n');
}

/** Drops metrics.jsonl records of steps after `step` (logged after the checkpoint a resume starts from). */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const keep = readFileSync(path, 'utf8').split('\n').filter((line) => line.trim() && (JSON.parse(line) as { step: number }).step <= step);
  writeFileAtomic(path, keep.map((l) => l + '\n').join(''));
}
