import * as tf from '@tensorflow/tfjs-core';
import { LlamaModel } from '../model/llama.js';
import { AdamW, clipByGlobalNorm } from './adamw.js';
import { Batch, countTargets } from './batch.js';

/** Loss of one micro-batch: `total` is the differentiated scalar; the sums are for logging. */
export interface LossParts {
  total: tf.Scalar;
  kdSum: tf.Scalar;
  ceSum: tf.Scalar;
}

/**
 * Loss of a micro-batch from the student's logits.
 * @param logits [B·L, V] @param normalizer number of target tokens in the whole optimizer step
 */
export type LossFn = (logits: tf.Tensor2D, batch: Batch, normalizer: number, epoch: number) => LossParts;

/** What one optimizer step did. */
export interface StepRecord {
  step: number;
  epoch: number;
  lr: number;
  loss: number;
  kd: number;
  ce: number;
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
  /** Micro-batch `micro` of optimizer step `step`: a pure function of its arguments (exact resume). */
  batchAt(step: number, micro: number): Batch;
  lossFn: LossFn;
  lrAt(step: number): number;
  gradClip: number;
  /** Called after every optimizer step (logging, evaluation, checkpoints, progress). */
  onStep(record: StepRecord): void | Promise<void>;
}

/**
 * Runs optimizer steps. Gradients of the micro-batches of one step are summed with every
 * micro-batch normalised by the token count of the whole step, so accumulation over M
 * micro-batches equals one batch M times larger.
 */
export async function trainLoop(o: LoopOptions): Promise<void> {
  const vars = o.model.variables();
  for (let step = o.startStep; step < o.totalSteps; step++) {
    const started = performance.now();
    const epoch = Math.floor(step / o.stepsPerEpoch);
    const micro = Array.from({ length: o.accum }, (_, m) => o.batchAt(step, m));
    const tokens = micro.reduce((n, b) => n + countTargets(b), 0);
    let sums: tf.Tensor[] | undefined;
    let loss = 0, kd = 0, ce = 0;
    for (const batch of micro) {
      const { grads, parts } = microStep(o, batch, Math.max(tokens, 1), epoch, vars);
      loss += parts[0]; kd += parts[1]; ce += parts[2];
      if (!sums) sums = grads;
      else { const next = sums.map((s, i) => tf.add(s, grads[i])); tf.dispose([...sums, ...grads]); sums = next; }
    }
    const clipped = clipByGlobalNorm(sums!, o.gradClip);
    const lr = o.lrAt(step);
    o.optimizer.apply(clipped.grads, lr);
    tf.dispose([...sums!, ...clipped.grads]);
    const seconds = (performance.now() - started) / 1000;
    await o.onStep({
      step: step + 1, epoch, lr, loss, kd: kd / Math.max(tokens, 1), ce: ce / Math.max(tokens, 1),
      grad_norm: clipped.norm, tokens, tokens_per_s: (micro.length * micro[0].B * micro[0].L) / seconds,
    });
  }
}

function microStep(o: LoopOptions, batch: Batch, normalizer: number, epoch: number, vars: tf.Variable[]) {
  let kdSum: tf.Scalar | undefined, ceSum: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const ids = tf.tensor2d(batch.inputIds, [batch.B, batch.L], 'int32');
    const parts = o.lossFn(o.model.logits(ids), batch, normalizer, epoch);
    kdSum = tf.keep(parts.kdSum); ceSum = tf.keep(parts.ceSum);
    return parts.total;
  }, vars);
  const parts = [value.dataSync()[0], kdSum!.dataSync()[0], ceSum!.dataSync()[0]];
  tf.dispose([value, kdSum!, ceSum!]);
  return { grads: vars.map((v) => grads[v.name]), parts };
}
