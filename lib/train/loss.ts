import * as tf from '@tensorflow/tfjs-core';
import { chunkedDistillationLoss, distillationLossNormalized, isLossName, LOSS_NAMES } from '../losses/index.js';
import { ensembleRows } from '../losses/ensemble.js';
import { Batch, TeacherBatch } from './batch.js';
import { TrainConfig } from './config.js';
import { LossFn } from './loop.js';
import { StepPosition } from './schedule.js';
import { planTemperature, requireStored } from './temperature.js';
import { sampledWeights } from '../logits/sampling.js';
import type { SamplingInfo } from '../shards/manifest.js';

/**
 * The trainer's loss: DESIGN §4 total over a micro-batch, normalised by the step's token count,
 * at the temperature the schedule gives for the step (see planTemperature: in 'tail' mode only
 * stored temperatures are used; 'renormalize' works at any). JSD takes β = `jsd_beta`, skew KL
 * λ = `skew_lambda`. `fromHidden` gives the same loss from hidden states and the LM head in
 * chunks of positions (lib/losses/chunked.ts).
 * @throws Error when the loss name is unknown or a needed temperature was not stored.
 */
export function makeLossFn(cfg: TrainConfig, realVocab: number, storedTemperatures: number[], sampling?: SamplingInfo): LossFn {
  if (!isLossName(cfg.loss)) throw new Error(`train config: loss '${cfg.loss}' is unknown (valid: ${LOSS_NAMES.join(', ')})`);
  const loss = cfg.loss;
  if (sampling && cfg.alpha > 0) checkSampledConfig(cfg);
  const plan = planTemperature(sampling ? { ...cfg, topk_mode: 'tail' } : cfg, storedTemperatures);
  /** The loss's inputs for a batch at a step: the teacher signal, targets and options. */
  const inputs = (batch: Batch, at: StepPosition) => {
    const tau = plan.at(at);
    const N = batch.B * batch.L;
    const signal = cfg.alpha > 0
      ? (sampling ? sampledSignal(batch.teacher, N, tau, sampling) : teacherSignal(batch.teacher, N, tau, cfg.topk_mode === 'tail', realVocab)) : undefined;
    const opts = { alpha: cfg.alpha, temperature: tau, loss, mode: cfg.topk_mode, realVocab, beta: cfg.jsd_beta, lambda: cfg.skew_lambda };
    return { tau, signal, targets: tf.tensor1d(batch.targets, 'int32'), opts };
  };
  const fn = (logits: tf.Tensor2D, batch: Batch, normalizer: number, at: StepPosition) => {
    const { tau, signal, targets, opts } = inputs(batch, at);
    const r = distillationLossNormalized(logits, signal, targets, opts, normalizer);
    return { total: r.total, kdSum: r.kdSum, ceSum: r.ceSum, temperature: tau };
  };
  const fromHidden = (hidden: tf.Tensor2D, head: tf.Tensor2D, batch: Batch, normalizer: number, at: StepPosition, chunk: number) => {
    const { tau, signal, targets, opts } = inputs(batch, at);
    const r = chunkedDistillationLoss(hidden, head, signal, targets, opts, normalizer, chunk);
    return { total: r.total, kdSum: r.kdSum, ceSum: r.ceSum, temperature: tau };
  };
  return Object.assign(fn, { note: plan.note, fromHidden });
}

/**
 * A sampled dataset's signal: the draws, their stored s = z − max z, logZ at τ, and the estimator's
 * weights (1/n at τ = τg, importance-weighted otherwise; lib/logits/sampling.ts).
 */
function sampledSignal(t: TeacherBatch | undefined, N: number, tau: number, sampling: SamplingInfo) {
  if (!t) throw new Error('alpha > 0 needs teacher soft labels: train from a logit dataset (--data)');
  if (t.ensemble) throw new Error('ensemble distillation needs top-k datasets; this one is sampled');
  const logZTau = logZAt(t, N, tau), logZGen = logZAt(t, N, sampling.temperature);
  const weights = sampledWeights(t.logits, t.k, tau, sampling.temperature, logZTau, logZGen);
  return {
    ids: tf.tensor2d(t.ids, [N, t.k], 'int32'), logits: tf.tensor2d(t.logits, [N, t.k]),
    logZ: tf.tensor1d(logZTau), weights: tf.tensor2d(weights, [N, t.k]),
  };
}

/** A sampled dataset estimates forward KL at stored temperatures only. @throws Error naming the setting. */
function checkSampledConfig(cfg: TrainConfig): void {
  if (cfg.loss !== 'forward_kl') throw new Error(`train config: loss '${cfg.loss}' needs the teacher's top-k; a sampled dataset's draws estimate forward_kl only (Anshumann et al. 2025)`);
  if (cfg.ensemble && cfg.ensemble.length > 0) throw new Error('train config: ensemble distillation needs top-k datasets; this one is sampled');
  if (cfg.topk_mode === 'renormalize') throw new Error("train config: topk_mode 'renormalize' is for top-k datasets; a sampled dataset's estimator weights each draw by the stored log_z (use topk_mode 'tail')");
}

function teacherSignal(t: TeacherBatch | undefined, N: number, tau: number, needLogZ: boolean, realVocab: number) {
  if (!t) throw new Error('alpha > 0 needs teacher soft labels: train from a logit dataset (--data)');
  if (t.ensemble) {
    if (!needLogZ) throw new Error("ensemble distillation needs topk_mode 'tail' (the mixture completes each teacher from its log_z)");
    const members = t.ensemble.members.map((m) => ({ k: m.k, ids: m.ids, logits: m.logits, logZ: logZAt(m, N, tau) }));
    const merged = ensembleRows(members, t.ensemble.weights, N, tau, realVocab);
    return { ids: tf.tensor2d(merged.ids, [N, merged.K], 'int32'), logits: tf.tensor2d(merged.logits, [N, merged.K]), logZ: tf.tensor1d(merged.logZ) };
  }
  const ids = tf.tensor2d(t.ids, [N, t.k], 'int32');
  const logits = tf.tensor2d(t.logits, [N, t.k]);
  if (!needLogZ) return { ids, logits };
  return { ids, logits, logZ: tf.tensor1d(logZAt(t, N, tau)) };
}

/** [N] log_z at the stored temperature τ. */
function logZAt(t: TeacherBatch, N: number, tau: number): Float32Array {
  const T = t.temperatures.length, col = requireStored(tau, t.temperatures);
  const logZ = new Float32Array(N);
  for (let i = 0; i < N; i++) logZ[i] = t.logZ[i * T + col];
  return logZ;
}
