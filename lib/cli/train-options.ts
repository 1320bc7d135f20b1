import type { Argv } from 'yargs';
import { TrainConfig } from '../train/config.js';
import { TEMPERATURE_SCHEDULES } from '../train/schedule.js';
import { jsonFlag } from './config.js';

/** The yargs options of every TrainConfig field, each described once (defaults shown from `d`). */
export function trainOptions<T>(y: Argv<T>, d: TrainConfig): Argv<T> {
  return y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('data', { type: 'string', describe: 'logit dataset directory written by precompute' })
    .option('prep', { type: 'string', describe: `prep output directory: windows and tokenizer.json (default ${d.prep})` })
    .option('out', { type: 'string', describe: `output directory (default ${d.out})` })
    .option('model', { type: 'string', coerce: jsonFlag('model'), describe: 'model architecture as JSON of HF LlamaConfig fields, e.g. \'{"hidden_size":128}\'' })
    .option('init-from', { type: 'string', describe: 'start from this HF Llama checkpoint directory' })
    .option('seed', { type: 'number', describe: `seed of the init and the data order (default ${d.seed})` })
    .option('batch-size', { type: 'number', describe: `windows per micro-batch (default ${d.batch_size})` })
    .option('grad-accum', { type: 'number', describe: `micro-batches per optimizer step (default ${d.grad_accum})` })
    .option('epochs', { type: 'number', describe: `passes over the training data (default ${d.epochs})` })
    .option('max-steps', { type: 'number', describe: `stop after N optimizer steps, 0 = no limit (default ${d.max_steps})` })
    .option('lr', { type: 'number', describe: `peak learning rate (default ${d.lr})` })
    .option('min-lr', { type: 'number', describe: `final learning rate of the cosine decay (default ${d.min_lr})` })
    .option('warmup-steps', { type: 'number', describe: `linear warmup steps (default ${d.warmup_steps})` })
    .option('weight-decay', { type: 'number', describe: `AdamW decoupled weight decay (default ${d.weight_decay})` })
    .option('beta1', { type: 'number', describe: `AdamW β1 (default ${d.beta1})` })
    .option('beta2', { type: 'number', describe: `AdamW β2 (default ${d.beta2})` })
    .option('grad-clip', { type: 'number', describe: `global gradient-norm clip, 0 = off (default ${d.grad_clip})` })
    .option('alpha', { type: 'number', describe: `weight of the distillation term; 0 = hard targets only (default ${d.alpha})` })
    .option('temperature', { type: 'number', describe: `distillation temperature τ (default ${d.temperature})` })
    .option('temperature-schedule', { choices: TEMPERATURE_SCHEDULES, describe: `constant; step: max(τ − 0.5·epoch, τ_min); linear or cosine: τ → τ_min over the run's steps (default ${d.temperature_schedule})` })
    .option('temperature-min', { type: 'number', describe: `floor of step, end of linear/cosine (default ${d.temperature_min})` })
    .option('loss', { type: 'string', describe: `divergence: forward_kl, reverse_kl, jsd, tvd, skew_kl (default ${d.loss})` })
    .option('jsd-beta', { type: 'number', describe: `generalized JSD β in (0, 1) (default ${d.jsd_beta})` })
    .option('skew-lambda', { type: 'number', describe: `skew KL λ in [0, 1) (default ${d.skew_lambda})` })
    .option('topk-mode', { choices: ['tail', 'renormalize'], describe: `tail: exact rest-of-vocab bucket; renormalize: teacher renormalised over top-k (default ${d.topk_mode})` })
    .option('eval-every', { type: 'number', describe: `validate every N steps, 0 = per epoch only (default ${d.eval_every})` })
    .option('eval-windows', { type: 'number', describe: `validation windows per evaluation, 0 = all (default ${d.eval_windows})` })
    .option('early-stopping-patience', { type: 'number', describe: `stop after N evaluations without a lower validation loss, 0 = off (default ${d.early_stopping_patience})` })
    .option('save-every', { type: 'number', describe: `write the resumable state every N steps, 0 = epoch ends only (default ${d.save_every})` })
    .option('dropout', { type: 'number', describe: `dropout on attention probabilities and residual branches, 0 = off (default ${d.dropout})` })
    .option('backend', { choices: ['auto', 'node-gpu', 'node', 'wasm', 'cpu'], describe: `TF.js backend (default ${d.backend}: fastest present)` })
    .option('overwrite', { type: 'boolean', describe: 'start afresh in an --out that already holds a training run (its checkpoints and training state are replaced)' })
    .option('resume', { type: 'boolean', describe: 'continue from the training state in --out (same settings; exact: same loss at every later step)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' })
    .option('safetensors-dtype', { choices: ['F32', 'F16', 'BF16'], describe: `dtype of the HF checkpoints written; the resumable state stays F32 (default ${d.safetensors_dtype})` })
    .option('max-shard-size', { type: 'string', describe: 'shard HF checkpoints above this size with model.safetensors.index.json: 5GB (= 5·10⁹ bytes, as transformers), 500MB, 2GiB or bytes (default 5GB)' })
    .option('recompute', { choices: ['auto', 'on', 'off'], describe: `recompute decoder layers in the backward pass; auto: when the memory plan needs it (default ${d.recompute})` })
    .option('memory-budget', { type: 'string', describe: 'bytes the device holds, e.g. 24GiB or 80GB (default: wasm 4 GiB; required with node-gpu); the plan refuses before step 1 what does not fit' })
    .option('feature-layers', { type: 'string', describe: 'feature distillation: student:teacher hidden-state pairs (0 = embeddings, i = after layer i), e.g. 1:2,2:4; teacher layers from precompute --hidden-layers (default off)' })
    .option('feature-beta', { type: 'number', describe: `β_feat, weight of the feature term (default ${d.feature_beta})` })
    .option('feature-loss', { choices: ['mse', 'cosine'], describe: `feature distance: mse (FitNets) or cosine (DistilBERT) (default ${d.feature_loss})` })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' });
}
