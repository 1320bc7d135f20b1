import { mulberry32 } from '../util/random.js';

/** Top-k soft labels of one batch, host side (see DESIGN §3.2 for the definitions). */
export interface TeacherBatch {
  k: number;
  /** Stored temperatures τ, aligned with the last axis of logZ. */
  temperatures: number[];
  /** [B·L·k] top-k ids per position, sorted by descending logit. */
  ids: Int32Array;
  /** [B·L·k] z_i − max z. */
  logits: Float32Array;
  /** [B·L·|τ|] logsumexp(z/τ) − max(z)/τ. */
  logZ: Float32Array;
  /** Teacher hidden states (datasets precomputed with --hidden-layers): [B·L, layers.length, width] row-major. */
  hidden?: TeacherStates;
  /** [B·L·2] byte span of each input token in the train split's text (datasets precomputed with --spans; lib/tokenizer/align.ts). */
  spans?: Uint32Array;
  /** Ensemble distillation (--ensemble): every teacher's rows for the same positions and the mixture weights; the loss merges them at τ (lib/losses/ensemble.ts). */
  ensemble?: { weights: number[]; members: TeacherBatch[] };
}

/** Teacher hidden states of a batch, host side (manifest `hidden`). */
export interface TeacherStates {
  /** HF output_hidden_states indices stored, in column order. */
  layers: number[];
  /** Values per layer and position (the projected width when the dataset stores a projection). */
  width: number;
  /** [B·L·layers.length·width] */
  values: Float32Array;
}

/** One micro-batch of B windows of L positions, host side. */
export interface Batch {
  B: number;
  L: number;
  /** [B·L] int32 token ids. */
  inputIds: Int32Array;
  /** [B·L] next-token ids; −100 = no target at this position. */
  targets: Int32Array;
  teacher?: TeacherBatch;
  /**
   * Cross-tokenizer batches (lib/train/cross-tokenizer.ts): [B·L] for each student position, the
   * teacher position it aligns with, as a row-major index into `teacher`'s positions (which
   * number B·L_teacher), −1 = none. Absent: student and teacher positions are the same.
   */
  align?: Int32Array;
}

/** Number of positions with a target (≠ −100). */
export function countTargets(b: Batch): number {
  let n = 0;
  for (const t of b.targets) if (t !== -100) n++;
  return n;
}

/**
 * Deterministic order of `rows` examples for `epoch`: a Fisher–Yates shuffle seeded by (seed, epoch),
 * so the data position of any step is a pure function of the step (exact resume, equal data across
 * baseline and distilled runs).
 */
export function epochOrder(rows: number, seed: number, epoch: number): Uint32Array {
  const order = new Uint32Array(rows).map((_, i) => i);
  const rand = mulberry32((seed * 2654435761 + epoch * 40503 + 1) >>> 0);
  for (let i = rows - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
