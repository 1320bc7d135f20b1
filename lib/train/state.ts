import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { NamedTensors } from '../model/tensors.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { dropStaleWeights, planShards, SINGLE_FILE, weightFiles } from '../model/sharded.js';
import type { SaveCheckpointOptions } from '../model/checkpoint.js';
import { copyFileDurable, linkOrCopyDurable, readJson, sha256FileSync, writeFileAtomic } from '../util/fs.js';
import { AdamW } from './adamw.js';
import { TRAIN_DEFAULTS, TrainConfig } from './config.js';

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
  /** sha256 of the files written with this state (paths relative to out), checked at resume. */
  files: Record<string, string>;
  /**
   * Where this state's weights and AdamW moments are (relative to out, under state/). Absent in
   * states written before: then model.safetensors and optimizer.safetensors in out.
   */
  weights?: { model: string; optimizer: string; feature?: string };
}

/** Config keys that do not change the loss at any step, so they may differ at resume. */
const FREE_KEYS: (keyof TrainConfig)[] = ['out', 'resume', 'quiet', 'backend', 'save_every', 'eval_every', 'early_stopping_patience', 'safetensors_dtype', 'max_shard_size'];

export const STATE_FILE = 'trainer_state.json';
/** The directory of the resumable weights and moments, out/state/. */
export const STATE_DIR = 'state';
const LEGACY = { model: 'model.safetensors', optimizer: 'optimizer.safetensors' };
/** Feature distillation's learned maps W (lib/train/feature.ts), beside the HF checkpoint in out. */
export const FEATURE_FILE = 'feature_projection.safetensors';

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
 * Writes the resumable state to `out` so that a save cut short at any point (crash, kill, full
 * disk) leaves the previous state resumable:
 * 1. weights and AdamW moments go to new files `out/state/{model,optimizer}-<step>-<id>.safetensors`
 *    (durable, hashed while written);
 * 2. `out/trainer_state.json`, naming those files and their sha256, replaces the previous one
 *    atomically: this rename is the switch from the old state to the new;
 * 3. the HF checkpoint in `out` (model.safetensors: a hard link to the state's weights, or a copy;
 *    written anew in `hf.dtype` and sharded above `hf.maxShardSize` when either asks for it;
 *    config.json; tokenizer.json) and optimizer.safetensors (likewise) are brought up to date, and
 *    the previous state's files removed.
 * @throws Error `<file>: no space left on device` and the like; the previous state then stays
 */
export function saveTrainingState(out: string, model: LlamaModel, optimizer: AdamW, state: TrainerState, tokenizer: string, hf: HfFormat = {}, feature?: NamedTensors): void {
  mkdirSync(join(out, STATE_DIR), { recursive: true });
  const id = `${String(state.step).padStart(8, '0')}-${randomBytes(3).toString('hex')}`;
  const weights: NonNullable<TrainerState['weights']> = { model: `${STATE_DIR}/model-${id}.safetensors`, optimizer: `${STATE_DIR}/optimizer-${id}.safetensors` };
  const named = model.toNamedTensors();
  const m = writeSafetensors(join(out, weights.model), named, 'F32', { format: 'pt' });
  const o = writeSafetensors(join(out, weights.optimizer), optimizer.state());
  const files = { [weights.model]: m.sha256, [weights.optimizer]: o.sha256 };
  if (feature && feature.size > 0) { // feature distillation's learned W's: beside the checkpoint, not in its HF weights
    weights.feature = `${STATE_DIR}/feature-${id}.safetensors`;
    files[weights.feature] = writeSafetensors(join(out, weights.feature), feature, 'F32').sha256;
  }
  Object.assign(state, { weights, files });
  writeFileAtomic(join(out, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  if (isPlainF32(named, hf)) {
    writeFileAtomic(join(out, 'config.json'), JSON.stringify({ ...model.cfg, torch_dtype: 'float32' }, null, 2) + '\n');
    copyFileDurable(tokenizer, join(out, 'tokenizer.json'));
    linkOrCopyDurable(join(out, weights.model), join(out, LEGACY.model));
    dropStaleWeights(out, [SINGLE_FILE]); // shards of an earlier save in another format
  } else saveCheckpoint(out, model.cfg, named, { ...hf, tokenizer });
  linkOrCopyDurable(join(out, weights.optimizer), join(out, LEGACY.optimizer));
  if (weights.feature) linkOrCopyDurable(join(out, weights.feature), join(out, FEATURE_FILE));
  dropOtherStates(out, state);
}

/** How the HF checkpoints of a run are stored (config safetensors_dtype, max_shard_size); default F32 in one file up to 5 GB. */
export type HfFormat = Pick<SaveCheckpointOptions, 'dtype' | 'maxShardSize'>;

/** True when the HF checkpoint is the state's own F32 single file (so a hard link serves). */
function isPlainF32(weights: NamedTensors, hf: HfFormat): boolean {
  return (hf.dtype ?? 'F32') === 'F32' && planShards(weights, 'F32', hf.maxShardSize)[0].file === SINGLE_FILE;
}

/** Removes resumable files that `state` does not name (earlier saves, saves cut short). */
function dropOtherStates(out: string, state: TrainerState): void {
  for (const f of readdirSync(join(out, STATE_DIR))) if (!(`${STATE_DIR}/${f}` in state.files)) rmSync(join(out, STATE_DIR, f), { force: true });
}

/**
 * Reads the resumable state in `out` written for the same trajectory.
 * @returns undefined when `out` holds no state; `optimizerPath` names the moments' file
 * @throws Error naming the file when the state is foreign, was written for other settings
 *   (listing them) or its files do not match their hashes.
 */
export function loadTrainingState(out: string, cfg: TrainConfig): { state: TrainerState; weights: NamedTensors; moments: NamedTensors; optimizerPath: string; feature?: NamedTensors } | undefined {
  const path = join(out, STATE_FILE);
  if (!existsSync(path)) return undefined;
  let saved = readJson<TrainerState>(path, 'trainer state');
  // States written before this format ({ step, epoch, tokens_seen } at an epoch end) resume without the checks.
  const legacy = saved.format === undefined && Number.isInteger(saved.step);
  if (legacy) saved = { ...initialState(cfg), step: saved.step, epoch: saved.epoch, tokens_seen: saved.tokens_seen };
  else if (saved.format !== 'kd-trainer-state' || saved.version !== 1) throw new Error(`${path}: not a kd trainer state (format ${saved.format}, version ${saved.version}); train into a fresh --out`);
  const want = initialState(cfg).trajectory;
  // A key the saved run lacks is a setting added to kd since: at its default it is the old behaviour.
  const added = (k: string) => !(k in saved.trajectory) && JSON.stringify(want[k]) === JSON.stringify(TRAIN_DEFAULTS[k as keyof TrainConfig]);
  const differ = Object.keys({ ...want, ...saved.trajectory }).filter((k) => !added(k) && JSON.stringify(want[k]) !== JSON.stringify(saved.trajectory[k]));
  if (differ.length > 0) {
    const list = differ.map((k) => `${k}: ${JSON.stringify(saved.trajectory[k])} → ${JSON.stringify(want[k])}`).join(', ');
    throw new Error(`${path}: the run in ${out} was started with other settings (${list}); resume with the same ones or train into a fresh --out`);
  }
  const files = saved.weights ?? LEGACY;
  for (const f of legacy ? [] : Object.values(files)) {
    if (!existsSync(join(out, f)) || sha256FileSync(join(out, f)) !== saved.files[f]) {
      throw new Error(`${path}: ${f} does not match the saved state (changed since it was saved?); cannot resume exactly`);
    }
  }
  const weights = saved.weights ? readSafetensors(join(out, files.model)).tensors : loadCheckpoint(out).weights;
  const optimizerPath = join(out, files.optimizer);
  const feature = saved.weights?.feature ? readSafetensors(join(out, saved.weights.feature)).tensors : undefined;
  return { state: saved, weights, moments: readSafetensors(optimizerPath).tensors, optimizerPath, feature };
}

/** Copies the HF checkpoint files of `out` to `out/<name>` (e.g. epoch-N). */
export function copyCheckpoint(out: string, name: string): void {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json']) copyFileDurable(join(out, f), join(dir, f));
  for (const f of weightFiles(out)) linkOrCopyDurable(join(out, f), join(dir, f)); // never rewritten in place: sharing is safe
}

/** Writes the current weights as an HF checkpoint to `out/best` with best.json (step, val loss, ppl). */
export function saveBest(out: string, model: LlamaModel, tokenizer: string, best: ValPoint, hf: HfFormat = {}): void {
  const dir = join(out, 'best');
  saveCheckpoint(dir, model.cfg, model.toNamedTensors(), { ...hf, tokenizer });
  writeFileAtomic(join(dir, 'best.json'), JSON.stringify(best, null, 2) + '\n');
}

/**
 * Drops metrics.jsonl records of steps after `step` (logged after the checkpoint a resume starts
 * from) and a last line torn by a crash or a full disk.
 */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, 'utf8').split('\n').filter((line) => line.trim());
  const parsed = (line: string) => { try { return JSON.parse(line) as { step: number }; } catch { return undefined; } };
  const keep = lines.filter((line, i) => {
    const r = parsed(line);
    if (r === undefined && i < lines.length - 1) throw new Error(`${path}: line ${i + 1} is not JSON; fix or delete it to resume`);
    return r !== undefined && r.step <= step;
  });
  writeFileAtomic(path, keep.map((l) => l + '\n').join(''));
}

/**
 * Removes what an earlier `kd train` wrote in `out` (--overwrite), so no file of the old run —
 * best/ of a lower loss, epoch-N/ beyond this run's epochs, a stale train.json — survives
 * beside the new one. Only kd's own names are removed; anything else in `out` stays.
 */
export function clearTrainingRun(out: string): void {
  if (!existsSync(join(out, STATE_FILE))) return;
  const weights = weightFiles(out);
  const ours = (f: string) => ['best', STATE_DIR, STATE_FILE, 'optimizer.safetensors', FEATURE_FILE, 'metrics.jsonl', 'train.json', 'config.json', 'tokenizer.json'].includes(f)
    || /^epoch-\d+$/.test(f) || weights.has(f);
  for (const f of readdirSync(out).filter(ours)) rmSync(join(out, f), { recursive: true, force: true });
}
