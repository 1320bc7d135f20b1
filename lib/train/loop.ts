import * as tf from '@tensorflow/tfjs-core';
import { MemoryOptions, UNCHUNKED } from '../memory/options.js';
import { LlamaModel } from '../model/llama.js';
import { hashSeed } from '../util/random.js';
import { AdamW, clipByGlobalNorm } from './adamw.js';
import { Batch, countTargets } from './batch.js';
import { FeatureTerm } from './feature.js';
import { StepPosition } from './schedule.js';

/** Loss of one micro-batch: `total` is the differentiated scalar; the sums are for logging. */
export interface LossParts {
  total: tf.Scalar;
  kdSum: tf.Scalar;
  ceSum: tf.Scalar;
  /** Distillation temperature used at this step. */
  temperature: number;
}

/** Loss of a micro-batch from the student's logits. */
export interface LossFn {
  /**
   * @param logits [B·L, V] @param normalizer number of target tokens in the whole optimizer step
   * @param at the optimizer step (schedules are functions of it)
   */
  (logits: tf.Tensor2D, batch: Batch, normalizer: number, at: StepPosition): LossParts;
  /**
   * The same loss from the final hidden states [B·L, d] and the LM head [d, V], the head and
   * loss computed over chunks of `chunk` positions (logits [chunk, V] at most; Infinity = one chunk).
   * The trainer uses it when present.
   */
  fromHidden?(hidden: tf.Tensor2D, head: tf.Tensor2D, batch: Batch, normalizer: number, at: StepPosition, chunk: number): LossParts;
  /** One line on how the temperature is chosen, for the run's log. */
  readonly note?: string;
}

/** What one optimizer step did. */
export interface StepRecord {
  step: number;
  epoch: number;
  lr: number;
  temperature: number;
  loss: number;
  kd: number;
  ce: number;
  /** Feature-distillation distance per target token (mean over layer pairs, before β_feat); only with feature_layers. */
  feat?: number;
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
}

export interface LoopOptions {
  model: LlamaModel;
  optimizer: AdamW;
  /** Optimizer steps to run, from `startStep` (exclusive of steps already done) to `totalSteps`. */
  startStep: number;
  totalSteps: number;
  stepsPerEpoch: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  accum: number;
  /** Micro-batch `micro` of optimizer step `step`: a pure function of its arguments (exact resume); may be read as training goes. */
  batchAt(step: number, micro: number): Batch | Promise<Batch>;
  lossFn: LossFn;
  /** Feature distillation (lib/train/feature.ts): added to the loss; its W's must be in `optimizer` after the model's variables. */
  feature?: FeatureTerm;
  lrAt(step: number): number;
  gradClip: number;
  /** Training-time dropout probability (0 = off); masks are seeded by (dropoutSeed, step, micro-batch). */
  dropout?: number;
  dropoutSeed?: number;
  /** Recomputation, attention blocks and loss chunks of every micro-step (default UNCHUNKED). */
  memory?: MemoryOptions;
  /** Called before optimizer step `step` (0-based: the steps done so far) reads its first batch, e.g. to switch QAT on. */
  beforeStep?(step: number): void;
  /** Called after every optimizer step (logging, evaluation, checkpoints, progress); 'stop' ends the loop. */
  onStep(record: StepRecord): void | 'stop' | Promise<void | 'stop'>;
}

/**
 * Runs optimizer steps. Gradients of the micro-batches of one step are summed with every
 * micro-batch normalised by the token count of the whole step, so accumulation over M
 * micro-batches equals one batch M times larger.
 */
export async function trainLoop(o: LoopOptions): Promise<void> {
  const vars = [...o.model.variables(), ...(o.feature?.variables() ?? [])];
  for (let step = o.startStep; step < o.totalSteps; step++) {
    const started = performance.now();
    o.beforeStep?.(step);
    const at: StepPosition = { step, epoch: Math.floor(step / o.stepsPerEpoch), totalSteps: o.totalSteps };
    const micro: Batch[] = [];
    for (let m = 0; m < o.accum; m++) micro.push(await o.batchAt(step, m)); // in order: the data source reads ahead sequentially
    const tokens = micro.reduce((n, b) => n + countTargets(b), 0);
    let sums: tf.Tensor[] | undefined;
    let loss = 0, kd = 0, ce = 0, feat = 0, temperature = NaN;
    for (let m = 0; m < micro.length; m++) {
      const { grads, parts } = microStep(o, micro[m], Math.max(tokens, 1), at, m, vars);
      loss += parts[0]; kd += parts[1]; ce += parts[2]; temperature = parts[3]; feat += parts[4];
      if (!sums) sums = grads;
      else { const next = sums.map((s, i) => tf.add(s, grads[i])); tf.dispose([...sums, ...grads]); sums = next; }
    }
    const clipped = clipByGlobalNorm(sums!, o.gradClip);
    const lr = o.lrAt(step);
    o.optimizer.apply(clipped.grads, lr);
    tf.dispose([...sums!, ...clipped.grads]);
    const seconds = (performance.now() - started) / 1000;
    const verdict = await o.onStep({
      step: step + 1, epoch: at.epoch, lr, temperature, loss, kd: kd / Math.max(tokens, 1), ce: ce / Math.max(tokens, 1),
      ...(o.feature ? { feat: feat / Math.max(tokens, 1) } : {}), grad_norm: clipped.norm, tokens, tokens_per_s: (micro.length * micro[0].B * micro[0].L) / seconds,
    });
    if (verdict === 'stop') return;
    await new Promise((resolve) => setImmediate(resolve)); // let signals and timers in between steps
  }
}

function microStep(o: LoopOptions, batch: Batch, normalizer: number, at: StepPosition, micro: number, vars: tf.Variable[]) {
  let kdSum: tf.Scalar | undefined, ceSum: tf.Scalar | undefined, featSum: tf.Scalar | undefined, temperature = NaN;
  const rate = o.dropout ?? 0;
  const dropout = rate > 0 ? { rate, seed: hashSeed(o.dropoutSeed ?? 0, at.step, micro) } : undefined;
  const { value, grads } = tf.variableGrads(() => {
    const ids = tf.tensor2d(batch.inputIds, [batch.B, batch.L], 'int32');
    const memory = o.memory ?? UNCHUNKED;
    const states = o.feature ? { layers: o.feature.studentLayers, out: new Map<number, tf.Tensor2D>() } : undefined;
    const fwd = { dropout, memory, states };
    const parts = o.lossFn.fromHidden
      ? o.lossFn.fromHidden(o.model.hidden(ids, fwd), o.model.head(), batch, normalizer, at, memory.lossChunk)
      : o.lossFn(o.model.logits(ids, fwd), batch, normalizer, at);
    kdSum = tf.keep(parts.kdSum); ceSum = tf.keep(parts.ceSum); temperature = parts.temperature;
    if (!o.feature || !states) return parts.total;
    const f = o.feature.loss(states.out, batch, normalizer);
    featSum = tf.keep(f.sum);
    return tf.add(parts.total, f.total) as tf.Scalar;
  }, vars);
  const parts = [value.dataSync()[0], kdSum!.dataSync()[0], ceSum!.dataSync()[0], temperature, featSum?.dataSync()[0] ?? 0];
  tf.dispose([value, kdSum!, ceSum!, ...(featSum ? [featSum] : [])]);
  return { grads: vars.map((v) => grads[v.name]), parts };
}
