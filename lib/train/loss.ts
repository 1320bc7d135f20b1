import * as tf from '@tensorflow/tfjs-core';
import { distillationLossNormalized, isLossName, LOSS_NAMES } from '../losses/index.js';
import { TeacherBatch } from './batch.js';
import { TrainConfig } from './config.js';
import { LossFn } from './loop.js';
import { planTemperature, requireStored } from './temperature.js';

/**
 * The trainer's loss: DESIGN §4 total over a micro-batch, normalised by the step's token count,
 * at the temperature the schedule gives for the step (see planTemperature: in 'tail' mode only
 * stored temperatures are used; 'renormalize' works at any). JSD takes β = `jsd_beta`, skew KL
 * λ = `skew_lambda`.
 * @throws Error when the loss name is unknown or a needed temperature was not stored.
 */
export function makeLossFn(cfg: TrainConfig, realVocab: number, storedTemperatures: number[]): LossFn {
  if (!isLossName(cfg.loss)) throw new Error(`train config: loss '${cfg.loss}' is unknown (valid: ${LOSS_NAMES.join(', ')})`);
  const loss = cfg.loss;
  const plan = planTemperature(cfg, storedTemperatures);
  const fn = (logits: tf.Tensor2D, batch: Parameters<LossFn>[1], normalizer: number, at: Parameters<LossFn>[3]) => {
    const tau = plan.at(at);
    const N = batch.B * batch.L;
    const targets = tf.tensor1d(batch.targets, 'int32');
    const signal = cfg.alpha > 0 ? teacherSignal(batch.teacher, N, tau, cfg.topk_mode === 'tail') : undefined;
    const r = distillationLossNormalized(logits, signal, targets, {
      alpha: cfg.alpha, temperature: tau, loss, mode: cfg.topk_mode, realVocab, beta: cfg.jsd_beta, lambda: cfg.skew_lambda,
    }, normalizer);
    return { total: r.total, kdSum: r.kdSum, ceSum: r.ceSum, temperature: tau };
  };
  return Object.assign(fn, { note: plan.note });
}

function teacherSignal(t: TeacherBatch | undefined, N: number, tau: number, needLogZ: boolean) {
  if (!t) throw new Error('alpha > 0 needs teacher soft labels: train from a logit dataset (--data)');
  const ids = tf.tensor2d(t.ids, [N, t.k], 'int32');
  const logits = tf.tensor2d(t.logits, [N, t.k]);
  if (!needLogZ) return { ids, logits };
  const T = t.temperatures.length, col = requireStored(tau, t.temperatures);
  const logZ = new Float32Array(N);
  for (let i = 0; i < N; i++) logZ[i] = t.logZ[i * T + col];
  return { ids, logits, logZ: tf.tensor1d(logZ) };
}
