import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkCapacity } from '../backend/capacity.js';
import { initBackendInfo } from '../backend/select.js';
import { planTraining } from '../memory/train-plan.js';
import { createProgress } from '../cli/progress.js';
import { LlamaConfig, countParameters, resolveLlamaConfig } from '../model/config.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { nllSum } from '../metrics/nll.js';
import { PerplexityAccumulator } from '../metrics/perplexity.js';
import { appendText, writeFileAtomic } from '../util/fs.js';
import { acquireLock, commandLine } from '../util/lock.js';
import type { HiddenInfo } from '../shards/manifest.js';
import { AdamW } from './adamw.js';
import { FeatureTerm, parseFeatureLayers } from './feature.js';
import { TrainConfig } from './config.js';
import { RowData, TrainingData } from './data.js';
import { LossFn, StepRecord, trainLoop } from './loop.js';
import { cosineWithWarmup } from './schedule.js';
import { parseByteSize } from '../model/sharded.js';
import { checkQatBlockSize, qatActive, qatTransform } from '../quant/qat.js';
import { clearTrainingRun, copyCheckpoint, initialState, loadTrainingState, saveBest, saveTrainingState, TrainerState, truncateMetrics } from './state.js';

/** What a training run needs beside its config. */
export interface TrainingInputs {
  train: TrainingData;
  validation: RowData;
  /** tokenizer.json copied into every checkpoint. */
  tokenizer: string;
  /** Real vocabulary size (tokenizer): no probability mass beyond it. */
  realVocab: number;
  /** Teacher top-k per position (the memory plan counts its tensors); absent when training on hard targets. */
  topk?: number;
  lossFn: LossFn;
  /** The dataset's stored teacher hidden states (manifest `hidden`), for feature_layers. */
  hidden?: HiddenInfo;
  /** Extra facts recorded in train.json (data source, teacher, …). */
  provenance: Record<string, unknown>;
}

/** Ways to steer a run from outside. */
export interface TrainControl {
  /** When aborted, the run ends after the current step with a resumable state in `out` (SIGINT, preemption). */
  signal?: AbortSignal;
  /** Called after every step, once its evaluation (if any) is done. */
  onStep?(record: StepRecord): void;
}

/** What `train` returns and prints. */
export interface TrainSummary {
  out: string;
  backend: string;
  /** The device the backend's kernels ran on, e.g. "node-gpu: TensorFlow on a CUDA GPU". */
  backend_device: string;
  parameters: number;
  steps: number;
  tokens_seen: number;
  final_train_loss: number;
  /** Validation loss and perplexity of the last evaluation. */
  val_loss: number;
  val_ppl: number;
  /** The evaluation with the lowest validation loss (weights in out/best). */
  best_step: number;
  best_val_loss: number;
  best_val_ppl: number;
  /** Early stopping ended the run. */
  stopped_early: boolean;
  /** The run was stopped from outside before its last step; `--resume` continues it. */
  interrupted: boolean;
  seconds: number;
  /** Target tokens trained per second of this session (wall time, evaluation and saving included). */
  tokens_per_s: number;
  /** Peak resident set of this process (the trainer never loads the teacher), bytes. */
  peak_rss_bytes: number;
}

/**
 * Trains a Llama student (or a teacher, with α = 0 on windows) and writes HF checkpoints:
 * `out/` (latest, with trainer_state.json + optimizer.safetensors for an exact resume; written every
 * `save_every` steps, at epoch ends, at the end and when stopped), `out/epoch-N/` per epoch and
 * `out/best/` (lowest validation loss). metrics.jsonl gets one line per step and per evaluation.
 * With `resume`, the run continues from the state in `out` and gives the same loss at every later
 * step as an uninterrupted run.
 * `out` is locked (out/.kd.lock) while the run lasts: a second run on it is refused.
 * @throws Error when `out` is in use by another run, the model's vocabulary is smaller than the
 *   tokenizer's, the windows exceed max_position_embeddings, or the state to resume is foreign or
 *   from other settings; `<file>: no space left on device` when a save fails (the previous state stays).
 */
export async function train(cfg: TrainConfig, inputs: TrainingInputs, control: TrainControl = {}): Promise<TrainSummary> {
  mkdirSync(cfg.out, { recursive: true });
  const lock = acquireLock(cfg.out, commandLine('kd train'), { log: (line) => process.stderr.write(`kd: ${line}\n`) });
  try {
    return await trainLocked(cfg, inputs, control);
  } finally {
    lock.release();
    await inputs.train.close(); // stops a prefetch thread (it starts again if the data is trained on again)
  }
}

/** {@link train} once `cfg.out` is locked. */
async function trainLocked(cfg: TrainConfig, inputs: TrainingInputs, control: TrainControl): Promise<TrainSummary> {
  const started = performance.now();
  const { name: backend, detail: backendDevice } = await initBackendInfo(cfg.backend);
  if (!cfg.resume && !cfg.overwrite && existsSync(join(cfg.out, 'trainer_state.json'))) {
    throw new Error(`${cfg.out}: holds a training run already; --resume continues it, --overwrite starts afresh, or choose another --out`);
  }
  if (cfg.overwrite && !cfg.resume) clearTrainingRun(cfg.out);
  const log = (s: string) => { if (!cfg.quiet) process.stderr.write(s + '\n'); };
  const { modelCfg, weights } = modelSource(cfg, inputs);
  checkCapacity(backend, countParameters(modelCfg), cfg.init_from ?? 'train config: model');
  checkQatBlockSize(cfg.qat, cfg.qat_block_size, modelCfg, cfg.init_from ?? 'train config: model');
  const { memory, summary: planned } = planTraining(cfg, backend, modelCfg, inputs.train.seqLen, inputs.topk ?? 0, cfg.init_from ?? 'train config: model');
  const B = cfg.batch_size, A = cfg.grad_accum;
  const stepsPerEpoch = Math.floor(inputs.train.rows / (B * A));
  if (stepsPerEpoch < 1) throw new Error(`${cfg.data ?? cfg.prep}: ${inputs.train.rows} training windows are fewer than one step (batch_size ${B} × grad_accum ${A})`);
  const totalSteps = cfg.max_steps > 0 ? Math.min(cfg.max_steps, cfg.epochs * stepsPerEpoch) : cfg.epochs * stepsPerEpoch;
  const metricsPath = join(cfg.out, 'metrics.jsonl');
  const withOrder = Object.assign({}, cfg, { data_order: inputs.train.order }); // the data order's shape fixes the trajectory too
  const resumed = cfg.resume ? loadTrainingState(cfg.out, withOrder) : undefined;
  if (cfg.resume && !resumed) log(`train: nothing to resume in ${cfg.out}, starting fresh`);
  const state: TrainerState = resumed?.state ?? initialState(withOrder);
  const model = new LlamaModel(modelCfg, resumed?.weights ?? weights, cfg.seed, resumed ? cfg.out : cfg.init_from ?? 'init');
  const feature = featureTerm(cfg, modelCfg, inputs);
  const fakeQuant = qatTransform(cfg.qat, cfg.qat_block_size); // the memory plan does not count its per-weight transient
  const setQat = (stepsDone: number) => { model.linearWeights = qatActive(cfg.qat, cfg.qat_start, stepsDone) ? fakeQuant : undefined; };
  if (feature && resumed) feature.load(resumed.feature ?? new Map(), join(cfg.out, 'trainer_state.json'));
  const optimizer = new AdamW([...model.variables(), ...(feature?.variables() ?? [])], { beta1: cfg.beta1, beta2: cfg.beta2, eps: 1e-8, weightDecay: cfg.weight_decay });
  if (resumed) {
    optimizer.load(resumed.moments, state.step, resumed.optimizerPath);
    truncateMetrics(metricsPath, state.step);
    log(`train: resumed from step ${state.step}${state.stopped_early ? ' (stopped early: nothing left to do)' : ''}`);
  } else writeFileAtomic(metricsPath, '');
  log(planned);
  log(`train: backend ${backendDevice}, ${countParameters(modelCfg).toLocaleString('en-US')} parameters, ${totalSteps} steps of ${B * A} windows × ${inputs.train.seqLen} tokens, α=${cfg.alpha}${cfg.feature_layers ? `, feature ${cfg.feature_loss} ${cfg.feature_layers} β_feat=${cfg.feature_beta}` : ''}, ${inputs.lossFn.note ?? `τ=${cfg.temperature}`}, loss ${cfg.loss}/${cfg.topk_mode}${cfg.dropout > 0 ? `, dropout ${cfg.dropout}` : ''}${cfg.qat !== 'none' ? `, QAT ${cfg.qat}${cfg.qat === 'int4' ? ` blocks of ${cfg.qat_block_size}` : ''} once ${cfg.qat_start} steps are done` : ''}`);

  const progress = createProgress('train', totalSteps, 'steps', cfg.quiet);
  const hf = { dtype: cfg.safetensors_dtype, maxShardSize: parseByteSize(cfg.max_shard_size, '--max-shard-size') };
  const save = () => saveTrainingState(cfg.out, model, optimizer, state, inputs.tokenizer, hf, feature?.toNamedTensors());
  let sessionTokens = 0;
  const evaluateNow = (step: number, epoch: number) => {
    setQat(step); // an evaluation after step s sees the model step s + 1 trains
    const v = evaluate(model, inputs.validation, B, cfg.eval_windows, inputs.realVocab);
    state.last_val = { step, loss: v.loss, ppl: v.ppl };
    if (!state.best || v.loss < state.best.loss) {
      state.best = state.last_val; state.bad_evals = 0;
      saveBest(cfg.out, model, inputs.tokenizer, state.best, hf);
    } else state.bad_evals += 1;
    appendText(metricsPath, JSON.stringify({ step, epoch, val_loss: v.loss, val_ppl: v.ppl }) + '\n');
  };

  if (!state.stopped_early) {
    await trainLoop({
      model, optimizer, startStep: state.step, totalSteps, stepsPerEpoch, accum: A,
      batchAt: (step, micro) => inputs.train.batchAt(cfg.seed, Math.floor(step / stepsPerEpoch), ((step % stepsPerEpoch) * A + micro) * B, B),
      lossFn: inputs.lossFn, feature, beforeStep: setQat,
      lrAt: (step) => cosineWithWarmup(step, { lr: cfg.lr, minLr: cfg.min_lr, warmup: cfg.warmup_steps, total: totalSteps }),
      gradClip: cfg.grad_clip, dropout: cfg.dropout, dropoutSeed: cfg.seed, memory,
      onStep: (r) => {
        Object.assign(state, { step: r.step, epoch: r.epoch, tokens_seen: state.tokens_seen + r.tokens, last_loss: r.loss });
        sessionTokens += r.tokens;
        appendText(metricsPath, JSON.stringify(r) + '\n');
        const epochEnd = r.step % stepsPerEpoch === 0 || r.step === totalSteps;
        if ((cfg.eval_every > 0 && r.step % cfg.eval_every === 0) || epochEnd) {
          evaluateNow(r.step, r.epoch);
          if (cfg.early_stopping_patience > 0 && state.bad_evals >= cfg.early_stopping_patience) state.stopped_early = true;
        }
        const val = state.last_val ? ` val ${state.last_val.loss.toFixed(3)}` : '';
        progress.update(r.step, `loss ${r.loss.toFixed(3)} τ ${r.temperature} ${r.tokens_per_s.toFixed(0)} tok/s${val}`);
        control.onStep?.(r);
        const stop = state.stopped_early || control.signal?.aborted === true;
        if (stop || epochEnd || (cfg.save_every > 0 && r.step % cfg.save_every === 0)) save();
        if (epochEnd) copyCheckpoint(cfg.out, `epoch-${Math.ceil(r.step / stepsPerEpoch)}`);
        return stop ? 'stop' : undefined;
      },
    });
  }
  progress.stop();
  if (state.stopped_early) log(`train: stopped early at step ${state.step}: ${cfg.early_stopping_patience} evaluations without a lower validation loss than ${state.best?.loss.toFixed(4)} (step ${state.best?.step}, in ${join(cfg.out, 'best')})`);
  const interrupted = state.step < totalSteps && !state.stopped_early;
  if (interrupted) log(`train: interrupted after step ${state.step} of ${totalSteps}; the state in ${cfg.out} continues with --resume`);
  const seconds = (performance.now() - started) / 1000;
  const val = state.last_val, best = state.best; // null only when interrupted before the first evaluation
  const summary: TrainSummary = {
    out: cfg.out, backend, backend_device: backendDevice, parameters: countParameters(modelCfg), steps: state.step, tokens_seen: state.tokens_seen,
    final_train_loss: state.last_loss ?? NaN, val_loss: val?.loss ?? NaN, val_ppl: val?.ppl ?? NaN,
    best_step: best?.step ?? 0, best_val_loss: best?.loss ?? NaN, best_val_ppl: best?.ppl ?? NaN, stopped_early: state.stopped_early, interrupted,
    seconds, tokens_per_s: sessionTokens / seconds, peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
  writeFileAtomic(join(cfg.out, 'train.json'), JSON.stringify({ config: cfg, model: modelCfg, provenance: inputs.provenance, data_order: inputs.train.order, summary }, null, 2) + '\n');
  model.dispose(); optimizer.dispose(); feature?.dispose();
  return summary;
}

/** The feature-distillation term of `cfg.feature_layers`, or undefined when it is off (see lib/train/feature.ts for the errors). */
function featureTerm(cfg: TrainConfig, modelCfg: LlamaConfig, inputs: TrainingInputs): FeatureTerm | undefined {
  const pairs = parseFeatureLayers(cfg.feature_layers);
  if (pairs.length === 0) return undefined;
  return new FeatureTerm(pairs, cfg.feature_beta, cfg.feature_loss, modelCfg, inputs.hidden, cfg.data ?? cfg.prep, cfg.seed);
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
export function evaluate(model: LlamaModel, data: RowData, batchSize: number, windows: number, realVocab: number): { loss: number; ppl: number } {
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
