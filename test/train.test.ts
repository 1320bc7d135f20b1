import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../lib/backend/select.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { nllSum } from '../lib/metrics/nll.js';
import { PerplexityAccumulator } from '../lib/metrics/perplexity.js';
import { AdamW } from '../lib/train/adamw.js';
import { Batch, epochOrder } from '../lib/train/batch.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { trainLoop } from '../lib/train/loop.js';
import { cosineWithWarmup, temperatureAt } from '../lib/train/schedule.js';
import { planTemperature } from '../lib/train/temperature.js';
import { distillationLoss } from '../lib/losses/index.js';
import { STORED_TEMPERATURES, syntheticData } from './synthetic.js';
import { sharedCases } from './shared-cases.js';

const ppl = sharedCases('perplexity.json').cases;
const caseOf = (name: string) => ppl.find((c: { name: string }) => c.name === name);
const cfg = resolveLlamaConfig({ vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 16 });

beforeAll(async () => { await initBackend('wasm'); });

function randomBatch(B: number, L: number, seed: number, maskEvery = 0): Batch {
  const r = epochOrder(B * L * 2, seed, 0);
  const inputIds = Int32Array.from({ length: B * L }, (_, i) => r[i] % 40);
  const targets = Int32Array.from({ length: B * L }, (_, i) => (maskEvery && i % maskEvery === 0 ? -100 : r[B * L + i] % 40));
  return { B, L, inputIds, targets };
}

async function oneStep(batches: Batch[]): Promise<{ w: Float32Array; gradNorm: number; loss: number }> {
  const model = new LlamaModel(cfg, undefined, 11);
  const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
  const tc = resolveTrainConfig({ alpha: 0 });
  let gradNorm = NaN, loss = NaN;
  await trainLoop({
    model, optimizer, startStep: 0, totalSteps: 1, stepsPerEpoch: 1, accum: batches.length,
    batchAt: (_, m) => batches[m], lossFn: makeLossFn(tc, 40, []), lrAt: () => 1e-2, gradClip: 0,
    onStep: (r) => { gradNorm = r.grad_norm; loss = r.loss; },
  });
  const w = model.toNamedTensors().get('model.layers.0.mlp.up_proj.weight')!.data;
  model.dispose(); optimizer.dispose();
  return { w, gradNorm, loss };
}

const concat = (a: Batch, b: Batch): Batch => ({
  B: a.B + b.B, L: a.L, inputIds: Int32Array.from([...a.inputIds, ...b.inputIds]), targets: Int32Array.from([...a.targets, ...b.targets]),
});

describe('training loop', () => {
  it('gradient accumulation normalised by token count equals one big batch', async () => {
    const a = randomBatch(2, 8, 1, 3), b = randomBatch(1, 8, 2); // different numbers of live targets
    const big = await oneStep([concat(a, b)]);
    const accumulated = await oneStep([a, b]);
    // Adam's first update is nearly scale-free, so compare the gradient norm and the loss as well.
    expect(accumulated.gradNorm).toBeCloseTo(big.gradNorm, 5);
    expect(accumulated.loss).toBeCloseTo(big.loss, 5);
    let maxDiff = 0;
    for (let i = 0; i < big.w.length; i++) maxDiff = Math.max(maxDiff, Math.abs(big.w[i] - accumulated.w[i]));
    expect(maxDiff).toBeLessThan(1e-6);
  });

  it('loss goes down on a repeated batch and no tensors leak between steps', async () => {
    const model = new LlamaModel(cfg, undefined, 3);
    const optimizer = new AdamW(model.variables(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const batch = randomBatch(2, 8, 5);
    const losses: number[] = [], live: number[] = [];
    await trainLoop({
      model, optimizer, startStep: 0, totalSteps: 30, stepsPerEpoch: 30, accum: 1, batchAt: () => batch,
      lossFn: makeLossFn(resolveTrainConfig({ alpha: 0 }), 40, []), lrAt: () => 1e-2, gradClip: 1,
      onStep: (r) => { losses.push(r.loss); live.push(tf.memory().numTensors); },
    });
    expect(losses[0]).toBeCloseTo(Math.log(40), 0);
    expect(losses[29]).toBeLessThan(losses[0] - 1);
    expect(live[29]).toBe(live[5]);
    model.dispose(); optimizer.dispose();
  });

  it('refuses a temperature the dataset did not store in tail mode, naming the stored ones', () => {
    const tc = resolveTrainConfig({ alpha: 0.5, temperature: 5, topk_mode: 'tail' });
    expect(() => makeLossFn(tc, 40, [1, 2, 3])).toThrow('temperature 5 was not stored by precompute (stored: 1, 2, 3)');
    expect(() => makeLossFn({ ...tc, topk_mode: 'renormalize' }, 40, [1, 2, 3])).not.toThrow();
  });

  it('continuous schedules in tail mode snap to the nearest stored τ; unstored end points are refused', () => {
    const tc = resolveTrainConfig({ alpha: 0.5, temperature: 4, temperature_min: 1, temperature_schedule: 'linear' });
    const stored = [1, 1.5, 2, 2.5, 3, 3.5, 4];
    const plan = planTemperature(tc, stored);
    // linear: 4, 3.7, 3.4, 3.1, 2.8, 2.5, 2.2, 1.9, 1.6, 1.3, 1 → nearest stored
    expect(Array.from({ length: 11 }, (_, s) => plan.at({ step: s, epoch: 0, totalSteps: 11 }))).toEqual([4, 3.5, 3.5, 3, 3, 2.5, 2, 2, 1.5, 1.5, 1]);
    expect(plan.note).toMatch(/snapped in tail mode to the nearest stored temperature \(4 → 3.5 → 3 → 2.5 → 2 → 1.5 → 1\)/);
    expect(() => planTemperature({ ...tc, temperature: 3.2 }, stored)).toThrow('temperature 3.2 was not stored by precompute (stored: 1, 1.5, 2, 2.5, 3, 3.5, 4)');
    expect(() => planTemperature({ ...tc, temperature_min: 0.5 }, stored)).toThrow('temperature 0.5 was not stored');
    const exact = planTemperature({ ...tc, temperature: 3.2, topk_mode: 'renormalize' }, stored);
    expect(exact.at({ step: 1, epoch: 0, totalSteps: 11 })).toBeCloseTo(3.2 - 0.22, 12);
    const step = { ...tc, temperature_schedule: 'step' as const, temperature: 3.2 };
    expect(() => planTemperature({ ...step, epochs: 2 }, [3.2, 2.7])).not.toThrow(); // epochs 0, 1: 3.2, 2.7
    expect(() => planTemperature({ ...step, epochs: 3 }, [3.2, 2.7])).toThrow('temperature 2.2 was not stored by precompute (stored: 3.2, 2.7)');
  });

  it('passes jsd_beta and skew_lambda from the config to the divergence', () => {
    const batch = syntheticData(2, 4, 40, 5, 3).batch([0, 1]);
    const at = { step: 0, epoch: 0, totalSteps: 1 };
    const logits = tf.randomNormal([8, 40], 0, 1, 'float32', 5) as tf.Tensor2D;
    const totalOf = (over: Record<string, unknown>) => {
      const parts = makeLossFn(resolveTrainConfig({ alpha: 1, temperature: 2, ...over }), 40, STORED_TEMPERATURES)(logits, batch, 8, at);
      const v = parts.total.dataSync()[0];
      tf.dispose([parts.total, parts.kdSum, parts.ceSum]);
      return v;
    };
    const direct = (opts: Record<string, number>, loss: 'jsd' | 'skew_kl') => tf.tidy(() => {
      const t = batch.teacher!, T = t.temperatures.length, col = t.temperatures.indexOf(2);
      const signal = { ids: tf.tensor2d(t.ids, [8, 5], 'int32'), logits: tf.tensor2d(t.logits, [8, 5]), logZ: tf.tensor1d(Array.from({ length: 8 }, (_, i) => t.logZ[i * T + col])) };
      return distillationLoss(logits, signal, tf.tensor1d(batch.targets, 'int32'), { alpha: 1, temperature: 2, loss, mode: 'tail', realVocab: 40, ...opts }).total.dataSync()[0];
    });
    expect(totalOf({ loss: 'jsd', jsd_beta: 0.3 })).toBeCloseTo(direct({ beta: 0.3 }, 'jsd'), 6);
    expect(totalOf({ loss: 'jsd', jsd_beta: 0.3 })).not.toBeCloseTo(totalOf({ loss: 'jsd', jsd_beta: 0.7 }), 3);
    expect(totalOf({ loss: 'skew_kl', skew_lambda: 0.4 })).toBeCloseTo(direct({ lambda: 0.4 }, 'skew_kl'), 6);
    expect(totalOf({ loss: 'skew_kl', skew_lambda: 0.4 })).not.toBeCloseTo(totalOf({ loss: 'skew_kl' }), 3);
    logits.dispose();
  });

  it('config: unknown keys and out-of-range values are one-line errors', () => {
    expect(() => resolveTrainConfig({ jsd_beta: 1 }, 'cfg.json')).toThrow(/^cfg.json: jsd_beta = 1 must be a number in \(0, 1\) .*'reverse_kl'/);
    expect(() => resolveTrainConfig({ temperature: 2, temperature_min: 3, temperature_schedule: 'cosine' }, 'cfg.json')).toThrow("cfg.json: temperature_min = 3 is above temperature = 2");
    expect(() => resolveTrainConfig({ dropout: 1 }, 'cfg.json')).toThrow('cfg.json: dropout = 1 must be a number in [0, 1)');
    expect(() => resolveTrainConfig({ lr_max: 1 }, 'cfg.json')).toThrow(/^cfg.json: unknown key 'lr_max' \(valid: data, prep/);
    expect(() => resolveTrainConfig({ alpha: 1.5 }, 'cfg.json')).toThrow('cfg.json: alpha = 1.5 must be a number in [0, 1]');
  });
});

describe('schedules', () => {
  const at = (step: number, epoch = 0, totalSteps = 11) => ({ step, epoch, totalSteps });
  it("the article's per-epoch temperature max(3 − 0.5·epoch, 1) and constant", () => {
    const step = { schedule: 'step' as const, start: 3, min: 1 };
    expect([0, 1, 2, 3, 4, 5].map((e) => temperatureAt(step, at(0, e)))).toEqual([3, 2.5, 2, 1.5, 1, 1]);
    expect(temperatureAt({ ...step, min: 2 }, at(0, 4))).toBe(2);
    expect(temperatureAt({ schedule: 'constant', start: 2, min: 1 }, at(7, 7))).toBe(2);
  });
  it('linear and cosine decay per step from τ at the first step to τ_min at the last', () => {
    const lin = { schedule: 'linear' as const, start: 4, min: 1 }, cos = { ...lin, schedule: 'cosine' as const };
    expect([0, 1, 5, 10].map((s) => temperatureAt(lin, at(s)))).toEqual([4, 3.7, 2.5, 1]);
    expect(temperatureAt(cos, at(0))).toBe(4);
    expect(temperatureAt(cos, at(5))).toBeCloseTo(2.5, 12); // cos(π/2) = 0: halfway
    expect(temperatureAt(cos, at(2))).toBeCloseTo(1 + 1.5 * (1 + Math.cos(Math.PI * 0.2)), 12);
    expect(temperatureAt(cos, at(10))).toBeCloseTo(1, 12);
    expect(temperatureAt(lin, at(0, 0, 1))).toBe(4); // a one-step run trains at τ
  });
  it('warmup is linear and the cosine ends at min_lr', () => {
    const o = { lr: 1, minLr: 0.1, warmup: 4, total: 14 };
    expect([0, 1, 2, 3].map((s) => cosineWithWarmup(s, o))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(cosineWithWarmup(9, o)).toBeCloseTo(0.55, 10);
    expect(cosineWithWarmup(14, o)).toBeCloseTo(0.1, 10);
  });
});

describe('perplexity (shared/cases/perplexity.json)', () => {
  it('token_weighted_perplexity', () => {
    const c = caseOf('token_weighted_perplexity');
    const acc = new PerplexityAccumulator();
    for (const b of c.batches) acc.add(b.mean_nll * b.tokens, b.tokens);
    expect(acc.perplexity).toBeCloseTo(c.expected, 10);
    expect(acc.perplexity).not.toBeCloseTo(c.wrong_values.mean_of_ppl, 1);
  });

  it('padding_and_batch_size_do_not_change_ppl: pads are never scored', () => {
    const c = caseOf('padding_and_batch_size_do_not_change_ppl');
    const model = new LlamaModel(cfg, undefined, 9);
    const docs = (c.documents_lengths as number[]).map((n, d) => Array.from({ length: n }, (_, i) => 1 + ((i * 7 + d * 3) % 39)));
    const L = Math.max(...docs.map((d) => d.length));
    const encode = (doc: number[]) => ({ // inputs doc[0:n-1] padded with pad_id, targets doc[1:n] then -100
      ids: Array.from({ length: L }, (_, i) => (i < doc.length ? doc[i] : c.pad_id)),
      targets: Array.from({ length: L }, (_, i) => (i + 1 < doc.length ? doc[i + 1] : -100)),
    });
    const score = (group: number[][]) => {
      const enc = group.map(encode);
      return tf.tidy(() => nllSum(model.logits(tf.tensor2d(enc.flatMap((e) => e.ids), [group.length, L], 'int32')), Int32Array.from(enc.flatMap((e) => e.targets)), 40));
    };
    const separate = docs.map((d) => score([d]));
    expect(separate.map((s) => s.tokens)).toEqual([c.expected_scored_predictions.doc_of_3, c.expected_scored_predictions.doc_of_5]);
    const together = score(docs);
    const acc = new PerplexityAccumulator();
    separate.forEach((s) => acc.add(s.nll, s.tokens));
    expect(together.tokens).toBe(6);
    expect(Math.exp(together.nll / together.tokens)).toBeCloseTo(acc.perplexity, 4);
    model.dispose();
  });
});
