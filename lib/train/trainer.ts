import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, cpSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../backend/select.js';
import { createProgress } from '../cli/progress.js';
import { LlamaConfig, countParameters, resolveLlamaConfig } from '../model/config.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { nllSum } from '../metrics/nll.js';
import { PerplexityAccumulator } from '../metrics/perplexity.js';
import { readJson, writeFileAtomic } from '../util/fs.js';
import { AdamW } from './adamw.js';
import { epochOrder } from './batch.js';
import { TrainConfig } from './config.js';
import { TrainingData } from './data.js';
import { LossFn, StepRecord, trainLoop } from './loop.js';
import { cosineWithWarmup } from './schedule.js';

/** What a training run needs beside its config. */
export interface TrainingInputs {
  train: TrainingData;
  validation: TrainingData;
  /** tokenizer.json copied into every checkpoint. */
  tokenizer: string;
  /** Real vocabulary size (tokenizer): no probability mass beyond it. */
  realVocab: number;
  lossFn: LossFn;
  /** Extra facts recorded in train.json (data source, teacher, …). */
  provenance: Record<string, unknown>;
}

/** What `train` returns and prints. */
export interface TrainSummary {
  out: string;
  backend: string;
  parameters: number;
  steps: number;
  tokens_seen: number;
  final_train_loss: number;
  val_loss: number;
  val_ppl: number;
  seconds: number;
  tokens_per_s: number;
}

interface TrainerState { step: number; epoch: number; tokens_seen: number; config_sha?: string }

/**
 * Trains a Llama student (or a teacher, with α = 0 on windows) and writes HF checkpoints: `out/`
 * (latest, with trainer_state.json + optimizer.safetensors for resume) and `out/epoch-N/` per epoch;
 * metrics.jsonl gets one line per step and per evaluation.
 * @throws Error when the model's vocabulary is smaller than the tokenizer's or the windows exceed
 *   max_position_embeddings.
 */
export async function train(cfg: TrainConfig, inputs: TrainingInputs): Promise<TrainSummary> {
  const started = performance.now();
  const backend = await initBackend(cfg.backend);
  mkdirSync(cfg.out, { recursive: true });
  const log = (s: string) => { if (!cfg.quiet) process.stderr.write(s + '\n'); };
  const { modelCfg, weights } = modelSource(cfg, inputs);
  const model = new LlamaModel(modelCfg, weights, cfg.seed, cfg.init_from ?? 'init');
  const optimizer = new AdamW(model.variables(), { beta1: cfg.beta1, beta2: cfg.beta2, eps: 1e-8, weightDecay: cfg.weight_decay });
  const B = cfg.batch_size, A = cfg.grad_accum;
  const stepsPerEpoch = Math.floor(inputs.train.rows / (B * A));
  if (stepsPerEpoch < 1) throw new Error(`${cfg.data ?? cfg.prep}: ${inputs.train.rows} training windows are fewer than one step (batch_size ${B} × grad_accum ${A})`);
  const totalSteps = cfg.max_steps > 0 ? Math.min(cfg.max_steps, cfg.epochs * stepsPerEpoch) : cfg.epochs * stepsPerEpoch;
  const state: TrainerState = { step: 0, epoch: 0, tokens_seen: 0 };
  if (cfg.resume) resumeInto(cfg.out, model, optimizer, state, log);
  log(`train: backend ${backend}, ${countParameters(modelCfg).toLocaleString('en-US')} parameters, ${totalSteps} steps of ${B * A} windows × ${inputs.train.seqLen} tokens, α=${cfg.alpha}, τ=${cfg.temperature} (${cfg.temperature_schedule}), loss ${cfg.loss}/${cfg.topk_mode}`);
  const orders = new Map<number, Uint32Array>();
  const orderOf = (epoch: number) => orders.get(epoch) ?? orders.set(epoch, epochOrder(inputs.train.rows, cfg.seed, epoch)).get(epoch)!;
  const metricsPath = join(cfg.out, 'metrics.jsonl');
  const progress = createProgress('train', totalSteps, 'steps', cfg.quiet);
  let last: StepRecord | undefined, val = { loss: NaN, ppl: NaN };
  const evaluateNow = (step: number, epoch: number) => {
    val = evaluate(model, inputs.validation, B, cfg.eval_windows, inputs.realVocab);
    appendFileSync(metricsPath, JSON.stringify({ step, epoch, val_loss: val.loss, val_ppl: val.ppl }) + '\n');
  };
  await trainLoop({
    model, optimizer, startStep: state.step, totalSteps, stepsPerEpoch, accum: A,
    batchAt: (step, micro) => {
      const epoch = Math.floor(step / stepsPerEpoch);
      const start = ((step % stepsPerEpoch) * A + micro) * B;
      return inputs.train.batch(orderOf(epoch).subarray(start, start + B));
    },
    lossFn: inputs.lossFn,
    lrAt: (step) => cosineWithWarmup(step, { lr: cfg.lr, minLr: cfg.min_lr, warmup: cfg.warmup_steps, total: totalSteps }),
    gradClip: cfg.grad_clip,
    onStep: (r) => {
      last = r;
      state.step = r.step; state.epoch = r.epoch; state.tokens_seen += r.tokens;
      appendFileSync(metricsPath, JSON.stringify(r) + '\n');
      progress.update(r.step, `loss ${r.loss.toFixed(3)} ${r.tokens_per_s.toFixed(0)} tok/s${Number.isFinite(val.loss) ? ` val ${val.loss.toFixed(3)}` : ''}`);
      const epochEnd = r.step % stepsPerEpoch === 0 || r.step === totalSteps;
      if ((cfg.eval_every > 0 && r.step % cfg.eval_every === 0) || epochEnd) evaluateNow(r.step, r.epoch);
      if (epochEnd) {
        saveState(cfg.out, model, optimizer, state, inputs.tokenizer);
        cpEpoch(cfg.out, r.epoch + 1);
      }
    },
  });
  progress.stop();
  if (!Number.isFinite(val.loss)) evaluateNow(state.step, state.epoch); // resumed at the end
  const seconds = (performance.now() - started) / 1000;
  const summary: TrainSummary = {
    out: cfg.out, backend, parameters: countParameters(modelCfg), steps: state.step, tokens_seen: state.tokens_seen,
    final_train_loss: last?.loss ?? NaN, val_loss: val.loss, val_ppl: val.ppl, seconds,
    tokens_per_s: state.tokens_seen / seconds,
  };
  writeFileAtomic(join(cfg.out, 'train.json'), JSON.stringify({ config: cfg, model: modelCfg, provenance: inputs.provenance, summary }, null, 2) + '\n');
  model.dispose(); optimizer.dispose();
  return summary;
}

/** Architecture and initial weights: an HF checkpoint (init_from) or a fresh config. */
function modelSource(cfg: TrainConfig, inputs: TrainingInputs): { modelCfg: LlamaConfig; weights?: ReturnType<typeof loadCheckpoint>['weights'] } {
  const L = inputs.train.seqLen;
  let modelCfg: LlamaConfig, weights;
  if (cfg.init_from) ({ cfg: modelCfg, weights } = loadCheckpoint(cfg.init_from));
  else modelCfg = resolveLlamaConfig({ vocab_size: inputs.realVocab, max_position_embeddings: Math.max(L, 256), ...cfg.model } as Partial<LlamaConfig>, 'train config: model');
  const where = cfg.init_from ?? 'train config: model';
  if (modelCfg.vocab_size < inputs.realVocab) throw new Error(`${where}: vocab_size ${modelCfg.vocab_size} is smaller than the tokenizer's ${inputs.realVocab}`);
  if (L > modelCfg.max_position_embeddings) throw new Error(`${where}: seq_len ${L} exceeds max_position_embeddings ${modelCfg.max_position_embeddings}`);
  return { modelCfg, weights };
}

/** Mean validation NLL and perplexity over the first `windows` validation windows (all when 0). */
export function evaluate(model: LlamaModel, data: TrainingData, batchSize: number, windows: number, realVocab: number): { loss: number; ppl: number } {
  const n = windows > 0 ? Math.min(windows, data.rows) : data.rows;
  const acc = new PerplexityAccumulator();
  for (let start = 0; start < n; start += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
    const batch = data.batch(rows);
    const { nll, tokens } = tf.tidy(() => nllSum(model.logits(tf.tensor2d(batch.inputIds, [batch.B, batch.L], 'int32')), batch.targets, realVocab));
    acc.add(nll, tokens);
  }
  return { loss: acc.meanNll, ppl: acc.perplexity };
}

function saveState(out: string, model: LlamaModel, optimizer: AdamW, state: TrainerState, tokenizer: string): void {
  saveCheckpoint(out, model.cfg, model.toNamedTensors(), { tokenizer });
  writeSafetensors(join(out, 'optimizer.safetensors'), optimizer.state());
  writeFileAtomic(join(out, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n');
}

function cpEpoch(out: string, epoch: number): void {
  const dir = join(out, `epoch-${epoch}`);
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) cpSync(join(out, f), join(dir, f));
}

function resumeInto(out: string, model: LlamaModel, optimizer: AdamW, state: TrainerState, log: (s: string) => void): void {
  const statePath = join(out, 'trainer_state.json');
  if (!existsSync(statePath)) { log(`train: nothing to resume in ${out}, starting fresh`); return; }
  const saved = readJson<TrainerState>(statePath, 'trainer state');
  const { weights } = loadCheckpoint(out);
  const fresh = new LlamaModel(model.cfg, weights, 0, out);
  model.variables().forEach((v, i) => v.assign(fresh.variables()[i]));
  fresh.dispose();
  optimizer.load(readSafetensors(join(out, 'optimizer.safetensors')).tensors, saved.step, join(out, 'optimizer.safetensors'));
  Object.assign(state, saved);
  log(`train: resumed from step ${saved.step}`);
}
