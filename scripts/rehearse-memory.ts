/**
 * Full-width memory rehearsal (issue "a 1.1B student on one 24 GB GPU"): a student of
 * TinyLlama-1.1B's width and vocabulary (hidden 2048, intermediate 5632, 32 / 4 heads, vocab
 * 32000, untied) with 2 layers trains a few optimizer steps at L = 512 on this machine, and its
 * measured peak of live buffers is compared with the memory plan.
 *
 * Before running it plans both CPU backends and estimates the time per step from the step's
 * FLOPs and a measured matMul rate: wasm when the plan fits its 4 GiB heap, else cpu (no heap
 * limit, ~0.2 GFLOP/s). Prints one JSON line per backend considered and one for the run.
 *
 *   node --import tsx scripts/rehearse-memory.ts [--backend auto|wasm|cpu] [--steps 3] [--seq-len 512] [--layers 2]
 */
import * as tf from '@tensorflow/tfjs-core';
import yargs from 'yargs';
import { BackendName, initBackend } from '../lib/backend/select.js';
import { memoryBudget, savedTensorsOf } from '../lib/memory/budget.js';
import { choosePlan, describeFit, describeOptions, MemoryPlan, PlanInput } from '../lib/memory/plan.js';
import { measureStepPeak } from '../lib/memory/step-peak.js';
import { LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';

const argv = yargs(process.argv.slice(2))
  .option('backend', { choices: ['auto', 'wasm', 'cpu'] as const, default: 'auto' as const })
  .option('steps', { type: 'number', default: 3 })
  .option('seq-len', { type: 'number', default: 512 })
  .option('layers', { type: 'number', default: 2 })
  .option('k', { type: 'number', default: 64 })
  .strict().parseSync();

const model: LlamaConfig = resolveLlamaConfig({
  vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: argv.layers, num_attention_heads: 32, num_key_value_heads: 4,
  max_position_embeddings: 2048, tie_word_embeddings: false, rms_norm_eps: 1e-5, rope_theta: 10000,
}, 'rehearsal student');
const L = argv['seq-len'], B = 1;

/** FLOPs of one step: matMuls forward (2·params·N, attention 4·N·L·H·hd over the causal half), backward twice that, recomputation one more forward. */
function stepFlops(plan: MemoryPlan): number {
  const d = model.hidden_size, f = model.intermediate_size, hd = d / model.num_attention_heads, kv = model.num_key_value_heads * hd;
  const layer = d * (d + 2 * kv) + d * d + 3 * d * f, N = B * L;
  const forward = 2 * N * (model.num_hidden_layers * layer + d * model.vocab_size) + model.num_hidden_layers * 2 * N * L * d; // causal: half of 4·N·L·d
  const recompute = plan.memory.recompute ? 2 * N * model.num_hidden_layers * layer : 0;
  const chunked = Number.isFinite(plan.memory.lossChunk) ? 2 * N * d * model.vocab_size : 0; // logits recomputed in backprop
  return 3 * forward + recompute + chunked;
}

/** GFLOP/s of a [512, 2048]·[2048, 2816] matMul on the current backend. */
function matMulRate(): number {
  const a = tf.randomNormal([512, 2048]) as tf.Tensor2D, b = tf.randomNormal([2048, 2816]) as tf.Tensor2D;
  tf.matMul(a, b).dispose(); // warm-up
  const t = performance.now();
  const c = tf.matMul(a, b); c.dataSync();
  const s = (performance.now() - t) / 1000;
  tf.dispose([a, b, c]);
  return (2 * 512 * 2048 * 2816) / s / 1e9;
}

const base: Omit<PlanInput, 'memory' | 'saved'> = { model, seqLen: L, batchSize: B, gradAccum: 1, loss: { k: argv.k, mode: 'tail', alpha: 0.8 }, dropout: false, gradClip: true };
const options: { backend: BackendName; plan?: MemoryPlan; fits: boolean; why?: string; gflops: number; est_s_per_step?: number }[] = [];
for (const backend of ['wasm', 'cpu'] as const) {
  await initBackend(backend);
  const gflops = matMulRate();
  try {
    const { plan } = choosePlan({ ...base, saved: savedTensorsOf(backend) }, memoryBudget(backend, null), {}, 'rehearsal student');
    options.push({ backend, plan, fits: true, gflops, est_s_per_step: stepFlops(plan) / (gflops * 1e9) });
  } catch (e) {
    options.push({ backend, fits: false, why: (e as Error).message, gflops });
  }
}
for (const o of options) console.log(JSON.stringify({ backend: o.backend, fits: o.fits, gflops: Number(o.gflops.toFixed(2)), est_s_per_step: o.est_s_per_step && Math.round(o.est_s_per_step), plan: o.plan && describeFit(o.plan, L, B), settings: o.plan && describeOptions(o.plan.memory), why: o.why }));
const chosen = argv.backend === 'auto' ? options.find((o) => o.fits)! : options.find((o) => o.backend === argv.backend)!;
if (!chosen?.plan) throw new Error(`rehearsal: no backend holds the student (${options.map((o) => o.why).join('; ')})`);
await initBackend(chosen.backend);
process.stderr.write(`rehearsal: ${chosen.backend}, ${describeOptions(chosen.plan.memory)}, ~${Math.round(chosen.est_s_per_step!)} s per step estimated\n`);
const m = await measureStepPeak(model, {
  seqLen: L, batchSize: B, k: argv.k, steps: argv.steps, memory: chosen.plan.memory,
  onStep: (r) => console.log(JSON.stringify({ step: r.step, loss: Number(r.loss.toFixed(4)), tokens_per_s: Number(r.tokens_per_s.toFixed(2)) })),
});
console.log(JSON.stringify({
  run: 'rehearsal', backend: chosen.backend, parameters: chosen.plan.parameters, seq_len: L, steps: m.records.length, settings: describeOptions(chosen.plan.memory),
  planned_total_bytes: chosen.plan.total_bytes, measured_peak_bytes: m.peakBytes, ratio: Number((chosen.plan.total_bytes / m.peakBytes).toFixed(3)),
  handle_peak_bytes: m.handlePeakBytes, seconds: Math.round(m.seconds), s_per_step: Math.round(m.seconds / m.records.length),
  losses: m.records.map((r) => Number(r.loss.toFixed(4))), peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
}));
