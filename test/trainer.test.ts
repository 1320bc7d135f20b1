// The trainer end to end on in-memory data: exact resume (abort and hard kill), early stopping
// with out/best, dropout, and a constant live-tensor count over 100 steps.
import * as tf from '@tensorflow/tfjs-core';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { resolveTrainConfig, TrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { StepRecord } from '../lib/train/loop.js';
import { train, TrainControl, TrainingInputs } from '../lib/train/trainer.js';
import { fakeTokenizer, readMetrics, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

const V = 40, L = 8;
const model = { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 };
const root = mkdtempSync(join(tmpdir(), 'kd-trainer-'));
const tokenizer = fakeTokenizer(join(root, 'tok'));
const trainData = syntheticData(24, L, V, 6, 1), validation = syntheticData(8, L, V, 6, 2, false);

beforeAll(async () => { await initBackend('wasm'); });

function inputs(cfg: TrainConfig): TrainingInputs {
  return { train: trainData, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} };
}
async function run(over: Record<string, unknown>, control?: TrainControl) {
  const cfg = resolveTrainConfig({ model, batch_size: 2, lr: 1e-2, warmup_steps: 2, eval_windows: 8, quiet: true, backend: 'wasm', ...over });
  return train(cfg, inputs(cfg), control);
}
const metrics = (out: string) => readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8'));
const steps = (m: Record<string, number>[], after: number) => m.filter((r) => 'loss' in r && r.step > after);
const vals = (m: Record<string, number>[]) => m.filter((r) => 'val_loss' in r);

describe('exact resume', () => {
  // 3 epochs of 6 steps (2 micro-batches each), dropout, a cosine τ schedule snapped to the stored
  // temperatures (tail mode), JSD(β = 0.3), evaluation every 4 steps, state saved every 5.
  const cfg = {
    grad_accum: 2, epochs: 3, dropout: 0.1, alpha: 0.5, loss: 'jsd', jsd_beta: 0.3, temperature: 4,
    temperature_schedule: 'cosine', temperature_min: 1, eval_every: 4, save_every: 5,
  };
  let full: Record<string, number>[];
  beforeAll(async () => {
    const s = await run({ ...cfg, out: join(root, 'full') });
    expect(s.steps).toBe(18);
    full = metrics(join(root, 'full'));
  });

  it('stopping after step 7 (abort) and resuming gives the same loss at every later step, bit for bit', async () => {
    const out = join(root, 'aborted'), ctl = new AbortController();
    const first = await run({ ...cfg, out }, { signal: ctl.signal, onStep: (r) => { if (r.step === 7) ctl.abort(); } });
    expect(first).toMatchObject({ steps: 7, interrupted: true });
    const second = await run({ ...cfg, out, resume: true });
    expect(second).toMatchObject({ steps: 18, interrupted: false });
    const resumed = metrics(out);
    expect(steps(resumed, 7).length).toBe(11);
    expect(steps(resumed, 0).map((r) => ({ ...r, tokens_per_s: 0 }))).toEqual(steps(full, 0).map((r) => ({ ...r, tokens_per_s: 0 })));
    expect(vals(resumed)).toEqual(vals(full));
    expect(new Set(steps(full, 0).map((r) => r.temperature))).toEqual(new Set([4, 3.5, 3, 2.5, 2, 1.5, 1]));
    expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(root, 'full', 'model.safetensors')))).toBe(true);
  });

  it('a hard kill after step 6 resumes from the step-5 state and drops the records logged after it', async () => {
    const out = join(root, 'killed'), copy = join(root, 'killed-copy');
    await run({ ...cfg, out, max_steps: 0 }, { onStep: (r) => { if (r.step === 6) cpSync(out, copy, { recursive: true }); } });
    expect(JSON.parse(readFileSync(join(copy, 'trainer_state.json'), 'utf8')).step).toBe(5);
    expect(steps(metrics(copy), 5).length).toBe(1); // step 6 was logged, not saved
    await run({ ...cfg, out: copy, resume: true });
    const m = metrics(copy);
    expect(steps(m, 0).map((r) => r.loss)).toEqual(steps(full, 0).map((r) => r.loss));
    expect(vals(m)).toEqual(vals(full));
  });

  it('resumes a state written before the current format ({ step, epoch, tokens_seen })', async () => {
    const out = join(root, 'legacy');
    await run({ out, alpha: 0, max_steps: 4 });
    writeFileSync(join(out, 'trainer_state.json'), JSON.stringify({ step: 4, epoch: 0, tokens_seen: 64 }));
    expect(await run({ out, alpha: 0, max_steps: 6, resume: true })).toMatchObject({ steps: 6, tokens_seen: 64 + 2 * 16 });
  });

  it('refuses to resume with settings that change the trajectory, naming them', async () => {
    await expect(run({ ...cfg, out: join(root, 'full'), resume: true, lr: 2e-2 })).rejects.toThrow(/started with other settings \(lr: 0.01 → 0.02\)/);
  });
});

describe('early stopping and out/best', () => {
  it('stops after `patience` evaluations without a lower validation loss and keeps the best weights', async () => {
    // lr = 0: the validation loss never improves after the first evaluation.
    const out = join(root, 'early');
    const s = await run({ out, lr: 0, min_lr: 0, alpha: 0, eval_every: 1, early_stopping_patience: 2, epochs: 5 });
    expect(s).toMatchObject({ steps: 3, stopped_early: true, best_step: 1, interrupted: false });
    expect(s.best_val_loss).toBe(s.val_loss);
    expect(JSON.parse(readFileSync(join(out, 'best', 'best.json'), 'utf8'))).toMatchObject({ step: 1, loss: s.best_val_loss });
    expect(existsSync(join(out, 'best', 'model.safetensors'))).toBe(true);
    const again = await run({ out, lr: 0, min_lr: 0, alpha: 0, eval_every: 1, early_stopping_patience: 2, epochs: 5, resume: true });
    expect(again).toMatchObject({ steps: 3, stopped_early: true });
  });

  it('keeps training while the validation loss improves', async () => {
    const s = await run({ out: join(root, 'improving'), alpha: 0, eval_every: 2, early_stopping_patience: 2, max_steps: 12 });
    expect(s).toMatchObject({ steps: 12, stopped_early: false });
    expect(s.best_val_loss).toBeLessThan(Math.log(V));
  });
});

describe('no leaks', () => {
  it('the number of live tensors is the same at step 10 and step 100 (KD loss, dropout, eval, saves)', async () => {
    const live = new Map<number, number>();
    const onStep = (r: StepRecord) => { live.set(r.step, tf.memory().numTensors); };
    await run({ out: join(root, 'leaks'), max_steps: 100, epochs: 20, alpha: 0.5, temperature_schedule: 'linear', temperature: 3, dropout: 0.1, eval_every: 10, save_every: 25 }, { onStep });
    expect(live.get(100)).toBe(live.get(10));
  });
});

describe('dropout', () => {
  it('inverted dropout: zeros with probability p, survivors scaled by 1/(1 − p), a pure function of the seed', async () => {
    const { dropout } = await import('../lib/model/dropout.js');
    const x = tf.ones([200, 100]);
    const a = dropout(x, { rate: 0.25, seed: 7 }, 3), b = dropout(x, { rate: 0.25, seed: 7 }, 3), c = dropout(x, { rate: 0.25, seed: 7 }, 4);
    const av = a.dataSync();
    const zeros = av.filter((v) => v === 0).length / av.length;
    expect(zeros).toBeGreaterThan(0.23); expect(zeros).toBeLessThan(0.27);
    expect(new Set(av)).toEqual(new Set([0, Math.fround(1 / 0.75)]));
    expect(Array.from(b.dataSync())).toEqual(Array.from(av));
    expect(Array.from(c.dataSync())).not.toEqual(Array.from(av));
    expect(dropout(x, { rate: 0, seed: 7 }, 3)).toBe(x); // off: no op at all
    expect(dropout(x, undefined, 3)).toBe(x);
    tf.dispose([x, a, b, c]);
  });

  it('changes the training loss but not the evaluation', async () => {
    const base = { alpha: 0, max_steps: 1, eval_every: 1 };
    const off = await run({ ...base, out: join(root, 'drop-off') });
    const on = await run({ ...base, out: join(root, 'drop-on'), dropout: 0.3 });
    const [mOff, mOn] = [metrics(join(root, 'drop-off')), metrics(join(root, 'drop-on'))];
    expect(mOn[0].loss).not.toBe(mOff[0].loss); // same weights at step 1, other forward pass
    expect(mOn[0].loss).toBeGreaterThan(mOff[0].loss - 0.5);
    expect(on.val_loss).not.toBe(off.val_loss); // weights differ after one update…
    expect(Math.abs(on.val_loss - off.val_loss)).toBeLessThan(0.1); // …but evaluation runs without dropout
  });
});
