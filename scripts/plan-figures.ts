/**
 * The memory plan's figures for README (issue "A 1.1B student trains on one 24 GB GPU"): for the
 * Hugging Face configs of TinyLlama-1.1B and Llama-3.2-1B (test/fixtures/hub-configs), AdamW fp32,
 * top-32 KD + CE, on a backend that shares saved tensors (TensorFlow CPU/GPU):
 * the total at L = 2048, B = 1 with kd train's choice for a 24 GiB card, the largest L that fits
 * 24 GiB at B = 1, and the largest B at L = 2048 that fits 24 and 80 GiB. Planned, not measured.
 *
 *   node --import tsx scripts/plan-figures.ts [--json]
 */
import { choosePlan, describeOptions, formatBytes, MemoryPlan, PlanInput } from '../lib/memory/plan.js';
import { readModelConfig } from '../stages/plan.js';

const GiB = 1024 ** 3;
const MODELS = ['TinyLlama-1.1B', 'Llama-3.2-1B'];

/** kd train's plan for a budget, or undefined when nothing fits. */
function fit(model: ReturnType<typeof readModelConfig>, seqLen: number, batchSize: number, budget: number): MemoryPlan | undefined {
  const input: Omit<PlanInput, 'memory'> = { model, seqLen, batchSize, gradAccum: 1, loss: { k: 32, mode: 'tail', alpha: 0.8 }, dropout: false, gradClip: true, saved: 'shares' };
  try { return choosePlan(input, budget).plan; } catch { return undefined; }
}

/** Largest n in [1, hi] (multiples of `step`) for which ok(n) holds, by bisection (ok is monotone). */
function largest(ok: (n: number) => boolean, step: number, hi: number): number {
  let lo = 0, top = Math.floor(hi / step);
  while (lo < top) { const mid = Math.ceil((lo + top) / 2); if (ok(mid * step)) lo = mid; else top = mid - 1; }
  return lo * step;
}

const rows = MODELS.map((name) => {
  const model = readModelConfig(`test/fixtures/hub-configs/${name}-config.json`);
  const at24 = fit(model, 2048, 1, 24 * GiB)!;
  return {
    model: name, parameters: at24.parameters, vocab_size: model.vocab_size, tied: model.tie_word_embeddings,
    total_bytes_L2048_B1: at24.total_bytes, settings_24GiB: describeOptions(at24.memory),
    weights_grads_moments_bytes: at24.weights_bytes + at24.gradients_bytes + at24.optimizer_bytes,
    largest_L_24GiB: largest((L) => fit(model, L, 1, 24 * GiB) !== undefined, 128, model.max_position_embeddings),
    largest_B_L2048_24GiB: largest((B) => fit(model, 2048, B, 24 * GiB) !== undefined, 1, 256),
    largest_B_L2048_80GiB: largest((B) => fit(model, 2048, B, 80 * GiB) !== undefined, 1, 256),
  };
});
if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2));
else {
  console.log('| student | parameters | weights + grads + AdamW | total at L = 2048, B = 1 (24 GiB card) | largest L at B = 1, 24 GiB | largest B at L = 2048: 24 GiB / 80 GiB |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.model} (vocab ${r.vocab_size}${r.tied ? ', tied' : ''}) | ${r.parameters.toLocaleString('en-US')} | ${formatBytes(r.weights_grads_moments_bytes)} | ${formatBytes(r.total_bytes_L2048_B1)} (${r.settings_24GiB}) | ${r.largest_L_24GiB.toLocaleString('en-US')} | ${r.largest_B_L2048_24GiB} / ${r.largest_B_L2048_80GiB} |`);
  }
}
