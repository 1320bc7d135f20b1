/**
 * The memory plan of a `kd train` run: chosen before step 1 from the run's config and backend.
 */
import type { BackendName } from '../backend/select.js';
import type { LlamaConfig } from '../model/config.js';
import type { TrainConfig } from '../train/config.js';
import { memoryBudget, savedTensorsOf } from './budget.js';
import type { MemoryOptions } from './options.js';
import { choosePlan, describeFit, describeOptions, formatBytes, MemoryPlan } from './plan.js';

/** What the trainer needs from the plan. */
export interface TrainingPlan {
  memory: MemoryOptions;
  plan: MemoryPlan;
  /** One line for the run's log. */
  summary: string;
}

/**
 * Plans one optimizer step of the run and chooses its memory options: today's unchunked step
 * when it fits the budget, else recomputation, attention blocks and loss chunks as needed
 * (`recompute` on/off forces that part).
 * @param topk teacher top-k per position (0 when training on hard targets only)
 * @param where the model's source, named in the message
 * @throws Error `<where>: L = …, B = …: <total> at the peak (…) does not fit the <budget> budget …`
 *   when nothing fits, or on node-gpu without memory_budget.
 */
export function planTraining(cfg: TrainConfig, backend: BackendName, model: LlamaConfig, seqLen: number, topk: number, where: string): TrainingPlan {
  const budget = memoryBudget(backend, cfg.memory_budget);
  const fixed = cfg.recompute === 'auto' ? {} : { recompute: cfg.recompute === 'on' };
  const { plan } = choosePlan({
    model, seqLen, batchSize: cfg.batch_size, gradAccum: cfg.grad_accum,
    loss: { k: topk, mode: cfg.topk_mode, alpha: cfg.alpha }, dropout: cfg.dropout > 0, gradClip: cfg.grad_clip > 0, saved: savedTensorsOf(backend),
  }, budget, fixed, where);
  const summary = `train: memory plan ${describeFit(plan, seqLen, cfg.batch_size)} within ${formatBytes(budget)}; ${describeOptions(plan.memory)}`;
  return { memory: plan.memory, plan, summary };
}
