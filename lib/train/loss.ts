import * as tf from '@tensorflow/tfjs-core';
import { distillationLossNormalized, isLossName, LOSS_NAMES } from '../losses/index.js';
import { TeacherBatch } from './batch.js';
import { TrainConfig } from './config.js';
import { LossFn } from './loop.js';
import { temperatureAt } from './schedule.js';

/**
 * The trainer's loss: DESIGN §4 total over a micro-batch, normalised by the step's token count,
 * with the temperature of the current epoch. In 'tail' mode the temperature must be one the
 * dataset stored (its log_z is needed); 'renormalize' works at any temperature.
 * @throws Error when the loss name is unknown or a needed temperature was not stored.
 */
export function makeLossFn(cfg: TrainConfig, realVocab: number, storedTemperatures: number[]): LossFn {
  if (!isLossName(cfg.loss)) throw new Error(`train config: loss '${cfg.loss}' is unknown (valid: ${LOSS_NAMES.join(', ')})`);
  const loss = cfg.loss;
  if (cfg.alpha > 0 && cfg.topk_mode === 'tail') {
    for (let epoch = 0; epoch < cfg.epochs; epoch++) storedIndex(storedTemperatures, temperatureAt(cfg.temperature_schedule, cfg.temperature, epoch));
  }
  return (logits, batch, normalizer, epoch) => {
    const tau = temperatureAt(cfg.temperature_schedule, cfg.temperature, epoch);
    const N = batch.B * batch.L;
    const targets = tf.tensor1d(batch.targets, 'int32');
    const signal = cfg.alpha > 0 ? teacherSignal(batch.teacher, N, tau, cfg.topk_mode === 'tail') : undefined;
    const r = distillationLossNormalized(logits, signal, targets, { alpha: cfg.alpha, temperature: tau, loss, mode: cfg.topk_mode, realVocab }, normalizer);
    return { total: r.total, kdSum: r.kdSum, ceSum: r.ceSum };
  };
}

function storedIndex(stored: number[], tau: number): number {
  const i = stored.findIndex((t) => Math.abs(t - tau) < 1e-6);
  if (i < 0) throw new Error(`temperature ${tau} was not stored by precompute (stored: ${stored.join(', ')}); use one of those or topk_mode 'renormalize'`);
  return i;
}

function teacherSignal(t: TeacherBatch | undefined, N: number, tau: number, needLogZ: boolean) {
  if (!t) throw new Error('alpha > 0 needs teacher soft labels: train from a logit dataset (--data)');
  const ids = tf.tensor2d(t.ids, [N, t.k], 'int32');
  const logits = tf.tensor2d(t.logits, [N, t.k]);
  if (!needLogZ) return { ids, logits };
  const T = t.temperatures.length, col = storedIndex(t.temperatures, tau);
  const logZ = new Float32Array(N);
  for (let i = 0; i < N; i++) logZ[i] = t.logZ[i * T + col];
  return { ids, logits, logZ: tf.tensor1d(logZ) };
}
