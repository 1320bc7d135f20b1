/**
 * The measured side of the memory plan: one real optimizer step of kd's trainer loop on synthetic
 * data, with its peak of live buffers (measure.ts). The plan-vs-measured test and the full-width
 * rehearsal (scripts/rehearse-memory.ts) both call it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { LlamaConfig } from '../model/config.js';
import { LlamaModel } from '../model/llama.js';
import { AdamW } from '../train/adamw.js';
import { Batch } from '../train/batch.js';
import { resolveTrainConfig } from '../train/config.js';
import { makeLossFn } from '../train/loss.js';
import { StepRecord, trainLoop } from '../train/loop.js';
import { mulberry32 } from '../util/random.js';
import { measurePeak } from './measure.js';
import { MemoryOptions, UNCHUNKED } from './options.js';

/** One measured step's settings. */
export interface StepSettings {
  seqLen: number;
  batchSize: number;
  /** Micro-batches of the step (default 1). */
  gradAccum?: number;
  /** Teacher top-k per position (default 8); ignored when alpha = 0. */
  k?: number;
  mode?: 'tail' | 'renormalize';
  /** KD weight (default 0.8: both KD and CE). */
  alpha?: number;
  dropout?: number;
  memory?: MemoryOptions;
  /** Steps to run (default 1); the peak is over all of them. */
  steps?: number;
  seed?: number;
  /** Called after every optimizer step (e.g. to print progress of a long run). */
  onStep?(record: StepRecord): void;
}

/** What a measured step did. */
export interface StepPeak {
  /** Peak of distinct live buffers over the steps, weights and optimizer moments included, bytes. */
  peakBytes: number;
  /** Weights + moments alone (what was live before the first step), bytes. */
  startBytes: number;
  /** tf.profile's handle-counted peak (views and saved clones counted again), bytes. */
  handlePeakBytes: number;
  records: StepRecord[];
  seconds: number;
}

/** A synthetic micro-batch: random ids and targets, random sorted-free top-k soft labels. */
export function syntheticBatch(cfg: LlamaConfig, s: StepSettings, seed: number): Batch {
  const { seqLen: L, batchSize: B } = s, k = s.k ?? 8, N = B * L, V = cfg.vocab_size;
  const rand = mulberry32(seed);
  const id = () => Math.floor(rand() * V);
  const ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < k; j++) { ids[n * k + j] = (id() + j) % V; logits[n * k + j] = -j * 0.5; }
    logZ[n] = 1.5; // log Σ over the full vocab ≥ the top-k's: a positive tail mass at τ
  }
  return {
    B, L, inputIds: Int32Array.from({ length: N }, id), targets: Int32Array.from({ length: N }, id),
    teacher: { k, temperatures: [2], ids, logits, logZ },
  };
}

/**
 * Trains `steps` optimizer steps of a fresh model of `cfg` (seeded init, AdamW, clip 1) on
 * synthetic batches and measures the peak of live buffers from before the first step.
 * @throws Error from the model or loss (e.g. L above max_position_embeddings).
 */
export async function measureStepPeak(cfg: LlamaConfig, s: StepSettings): Promise<StepPeak> {
  const accum = s.gradAccum ?? 1, steps = s.steps ?? 1;
  const train = resolveTrainConfig({ alpha: s.alpha ?? 0.8, temperature: 2, topk_mode: s.mode ?? 'tail', dropout: s.dropout ?? 0 });
  const lossFn = makeLossFn(train, cfg.vocab_size, [2]);
  const model = new LlamaModel(cfg, undefined, s.seed ?? 0);
  const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const batches = Array.from({ length: accum * steps }, (_, i) => syntheticBatch(cfg, s, (s.seed ?? 0) * 7919 + i + 1));
  const records: StepRecord[] = [];
  const started = performance.now();
  try {
    const live = [...model.variables(), ...optimizerVariables(optimizer)];
    const m = await measurePeak(() => trainLoop({
      model, optimizer, startStep: 0, totalSteps: steps, stepsPerEpoch: steps, accum,
      batchAt: (step, micro) => batches[step * accum + micro],
      lossFn, lrAt: () => 1e-3, gradClip: 1, dropout: s.dropout ?? 0, dropoutSeed: 1,
      memory: s.memory ?? UNCHUNKED,
      onStep: (r) => { records.push(r); s.onStep?.(r); },
    }), live);
    return { peakBytes: m.peakBytes, startBytes: m.startBytes, handlePeakBytes: m.handlePeakBytes, records, seconds: (performance.now() - started) / 1000 };
  } finally {
    model.dispose();
    optimizer.dispose();
  }
}

/** The optimizer's moment variables (m and v), which live for the whole run. */
function optimizerVariables(o: AdamW): tf.Variable[] {
  const inner = o as unknown as { m: tf.Variable[]; v: tf.Variable[] }; // private fields; read only to count them as live
  return [...inner.m, ...inner.v];
}
