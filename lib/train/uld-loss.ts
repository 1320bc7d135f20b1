/**
 * The trainer's loss for a student with another tokenizer than the teacher's (`kd train --loss
 * uld`): over a cross-tokenizer batch (lib/train/cross-tokenizer.ts),
 *
 *   total = [α·τ²·Σ_{t aligned} ULD_t + (1 − α)·Σ_t CE_t] / N,
 *
 * N the step's student target count (as for the other losses), ULD_t (lib/losses/uld.ts) between
 * the student at position t and the teacher position aligned with it, CE at every student position.
 * Unaligned positions get CE only, so the ULD term weighs in with the aligned share of positions.
 * τ² as in DESIGN §4 (the soft-target gradients shrink as 1/τ² here too).
 */
import * as tf from '@tensorflow/tfjs-core';
import { crossEntropy } from '../losses/cross-entropy.js';
import { combineSums } from '../losses/distill.js';
import { gatherRows } from '../losses/gather.js';
import { uldSum, type UldTeacher } from '../losses/uld.js';
import type { Batch } from './batch.js';
import type { TrainConfig } from './config.js';
import type { LossFn } from './loop.js';
import { planTemperature, requireStored } from './temperature.js';

/** Config name of the cross-tokenizer loss (`kd train --loss uld`); not a bucket divergence of LOSSES. */
export const ULD_LOSS = 'uld';

/**
 * The loss of the module comment.
 * @param realVocab the student tokenizer's vocabulary (its logits may be wider)
 * @param storedTemperatures the dataset's τs ('tail' mode reads log_z at τ)
 * @throws Error when a needed temperature was not stored (see planTemperature)
 */
export function makeUldLossFn(cfg: TrainConfig, realVocab: number, storedTemperatures: number[]): LossFn {
  const plan = planTemperature(cfg, storedTemperatures);
  const fn: LossFn = (logits, batch, normalizer, at) => {
    const tau = plan.at(at);
    const aligned = cfg.alpha > 0 ? alignedTeacher(batch, tau, cfg.topk_mode) : undefined;
    const parts = tf.tidy(() => {
      const targets = tf.tensor1d(batch.targets, 'int32');
      const ceSum = cfg.alpha < 1 ? tf.sum(crossEntropy(logits, targets, realVocab)) as tf.Scalar : tf.scalar(0);
      let kdSum: tf.Scalar = tf.scalar(0);
      if (aligned && aligned.rows.length > 0) {
        const M = aligned.rows.length, k = aligned.k;
        const teacher: UldTeacher = { logits: tf.tensor2d(aligned.logits, [M, k]), ...(aligned.logZ ? { logZ: tf.tensor1d(aligned.logZ) } : {}) };
        const student = gatherRows(logits, tf.tensor1d(aligned.rows, 'int32')); // [M, V]
        kdSum = tf.mul(uldSum(student, teacher, tau, cfg.topk_mode, realVocab), tau * tau) as tf.Scalar;
      }
      return { total: combineSums(kdSum, ceSum, cfg.alpha, normalizer), kdSum, ceSum };
    });
    return { ...parts, temperature: tau };
  };
  return Object.assign(fn, { note: `${plan.note}, ULD over the aligned positions` });
}

/**
 * The teacher's rows for the aligned student positions of a batch, host side: student rows with
 * a target and align ≥ 0, the aligned teacher row's top-k logits [M·k] and, in 'tail' mode, its
 * log Z at τ [M].
 * @throws Error when the batch is not a cross-tokenizer batch
 */
function alignedTeacher(batch: Batch, tau: number, mode: TrainConfig['topk_mode']): { rows: Int32Array; k: number; logits: Float32Array; logZ?: Float32Array } {
  const t = batch.teacher, align = batch.align;
  if (!t || !align) throw new Error('loss uld: the batch has no teacher rows aligned to the student (a cross-tokenizer dataset is needed)');
  const k = t.k, T = t.temperatures.length, col = mode === 'tail' ? requireStored(tau, t.temperatures) : -1;
  const rows: number[] = [];
  for (let j = 0; j < align.length; j++) if (align[j] >= 0 && batch.targets[j] !== -100) rows.push(j);
  const logits = new Float32Array(rows.length * k), logZ = col >= 0 ? new Float32Array(rows.length) : undefined;
  rows.forEach((j, m) => {
    const p = align[j];
    logits.set(t.logits.subarray(p * k, (p + 1) * k), m * k);
    if (logZ) logZ[m] = t.logZ[p * T + col];
  });
  return { rows: Int32Array.from(rows), k, logits, logZ };
}
