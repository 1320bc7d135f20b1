/**
 * Where one training step of the demo student goes, kernel by kernel (kd issue 15).
 *
 * Builds the student of pipelines/configs/student.json (hidden 128, 2 layers, 4/2 heads, vocab of
 * the data), one batch (the first of `--data`'s logit dataset, or a synthetic one of the same
 * shapes: B × L = 16 × 128, top-32 soft labels at τ ∈ {1, 2, 4}), runs `--warmup` training steps
 * with the trainer's own loop (lib/train/loop.ts: loss, backward, clipping, AdamW), times `--steps`
 * more, then profiles `--profile` steps with tf.profile and prints:
 *  - a breakdown table: kernel → ms per step, share of the step (BatchMatMul split into plain 2-D
 *    products and batched ones; "outside kernels" = JS, tape and tidy bookkeeping);
 *  - the costliest kernel calls by input shapes;
 *  - tokens/s and training GFLOP/s (6·N + 12·layers·d·L per token, Kaplan et al. 2020, §2.1);
 *  - the backend's plain 2-D matMul GFLOP/s measured in the same run, on the LM head's shape
 *    (2048×128 · 128×4096) and on 512×512 · 512×512, each with a fresh B (as in training, where
 *    every step's weights are new tensors), best of 5.
 * Times are CPU time of this process by default (`--clock cpu`): the wasm backend runs one thread,
 * so other processes on a shared machine do not inflate them; `--clock wall` gives wall time.
 *
 *   node --import tsx scripts/profile-step.ts [--backend wasm] [--data runs/logits] [--warmup 3] [--steps 4] [--profile 2] [--clock cpu|wall] [--json]
 */
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { initBackend, type BackendChoice } from '../lib/backend/select.js';
import { countParameters, LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { openLogitDataset } from '../lib/shards/index.js';
import { AdamW } from '../lib/train/adamw.js';
import { Batch } from '../lib/train/batch.js';
import { resolveTrainConfig, STUDENT_DEFAULTS, TrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { trainLoop } from '../lib/train/loop.js';
import { shardData } from '../lib/train/shard-data.js';
import { mulberry32 } from '../lib/util/random.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' }, data: { type: 'string' },
    warmup: { type: 'string', default: '3' }, steps: { type: 'string', default: '4' }, profile: { type: 'string', default: '2' },
    clock: { type: 'string', default: 'cpu' }, json: { type: 'boolean', default: false },
  },
});
const count = (name: 'warmup' | 'steps' | 'profile', min: number) => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: must be an integer ≥ ${min}, got '${args[name]}'`);
  return n;
};
const WARMUP = count('warmup', 1), STEPS = count('steps', 1), PROFILED = count('profile', 1);
if (args.clock !== 'cpu' && args.clock !== 'wall') throw new Error(`--clock: must be 'cpu' or 'wall', got '${args.clock}'`);
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
/** Milliseconds on the chosen clock. */
const now = args.clock === 'cpu' ? cpuMs : () => performance.now();

/** A synthetic batch of the demo shapes: random ids, sorted top-k logits, log_z above their logsumexp. */
function syntheticBatch(B: number, L: number, V: number, k: number, temperatures: number[]): Batch {
  const rand = mulberry32(1), N = B * L, T = temperatures.length;
  const inputIds = Int32Array.from({ length: N }, () => Math.floor(rand() * V));
  const targets = Int32Array.from({ length: N }, () => Math.floor(rand() * V));
  const ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N * T);
  for (let p = 0; p < N; p++) {
    const chosen = new Set<number>();
    while (chosen.size < k) chosen.add(Math.floor(rand() * V));
    const z = Array.from({ length: k }, (_, j) => (j === 0 ? 0 : -4 * rand())).sort((a, b) => b - a);
    [...chosen].forEach((id, j) => { ids[p * k + j] = id; logits[p * k + j] = z[j]; });
    temperatures.forEach((tau, t) => { logZ[p * T + t] = Math.log(z.reduce((s, x) => s + Math.exp(x / tau), 0) + V * 0.01); });
  }
  return { B, L, inputIds, targets, teacher: { k, temperatures, ids, logits, logZ } };
}

/** The batch to train on and the vocabulary: the first batch of `--data`, else synthetic. */
async function inputs(cfg: TrainConfig): Promise<{ batch: Batch; vocab: number; temperatures: number[]; source: string }> {
  if (!args.data) {
    const temperatures = [1, 2, 4];
    return { batch: syntheticBatch(cfg.batch_size, 128, 4096, 32, temperatures), vocab: 4096, temperatures, source: 'synthetic batch (V 4096, k 32, τ 1/2/4)' };
  }
  const ds = await openLogitDataset(args.data);
  const data = await shardData(ds);
  try {
    const batch = await data.batchAt(cfg.seed, 0, 0, cfg.batch_size);
    return { batch, vocab: ds.manifest.tokenizer.real_vocab_size, temperatures: ds.manifest.temperatures, source: `first batch of ${args.data}` };
  } finally { await data.close(); }
}

/** Best-of-5 GFLOP/s of a plain [M, K] · [K, N] tf.matMul with a fresh B each time (see the module comment). */
function plainMatMulGflops(M: number, K: number, N: number): number {
  const a = tf.randomNormal([M, K]), host = tf.randomNormal([K, N]);
  const hostData = host.dataSync();
  let best = Infinity;
  for (let r = 0; r < 6; r++) {
    const b = tf.tensor2d(hostData, [K, N]); // a new tensor: its packed form is not cached
    const t0 = now();
    const c = tf.matMul(a as tf.Tensor2D, b);
    c.dataSync();
    const ms = now() - t0;
    if (r > 0) best = Math.min(best, ms); // the first call creates the backend's operator
    tf.dispose([b, c]);
  }
  tf.dispose([a, host]);
  return (2 * M * K * N) / best / 1e6;
}

const trainCfg = resolveTrainConfig(JSON.parse(readFileSync('pipelines/configs/student.json', 'utf8')), 'pipelines/configs/student.json', STUDENT_DEFAULTS);
const backend = await initBackend(args.backend as BackendChoice);
if (args.clock === 'cpu') {
  // tf.profile times each kernel with backend.time (wall clock on wasm and cpu); CPU time instead.
  const b = tf.backend() as unknown as { time(f: () => void): Promise<{ kernelMs: number }> };
  b.time = async (f) => { const t0 = cpuMs(); f(); return { kernelMs: cpuMs() - t0 }; };
}
const { batch, vocab, temperatures, source } = await inputs(trainCfg);
const modelCfg: LlamaConfig = resolveLlamaConfig({ vocab_size: vocab, max_position_embeddings: Math.max(batch.L, 256), ...trainCfg.model } as Partial<LlamaConfig>, 'pipelines/configs/student.json: model');
const model = new LlamaModel(modelCfg, undefined, trainCfg.seed);
const optimizer = new AdamW(model.variables(), { beta1: trainCfg.beta1, beta2: trainCfg.beta2, eps: 1e-8, weightDecay: trainCfg.weight_decay });
const lossFn = makeLossFn(trainCfg, vocab, temperatures);
let done = 0;
/** `n` optimizer steps of the trainer's loop on the one batch. */
const steps = (n: number) => trainLoop({
  model, optimizer, startStep: done, totalSteps: (done += n), stepsPerEpoch: 1e9, accum: 1, batchAt: () => batch, lossFn,
  lrAt: () => trainCfg.lr, gradClip: trainCfg.grad_clip, onStep: () => undefined,
});

await steps(WARMUP);
const t0 = performance.now(), c0 = cpuMs();
await steps(STEPS);
const wallPerStep = (performance.now() - t0) / STEPS, cpuPerStep = (cpuMs() - c0) / STEPS;
const stepMs = args.clock === 'cpu' ? cpuPerStep : wallPerStep;
const tokens = batch.B * batch.L;
const flopsPerToken = 6 * countParameters(modelCfg) + 12 * modelCfg.num_hidden_layers * modelCfg.hidden_size * batch.L;

// Profile: registered kernels only (scopes such as customGrad ops contain kernels that are listed themselves).
const p0 = now();
const profile = await tf.profile(() => steps(PROFILED));
const profiledMs = (now() - p0) / PROFILED;
const kernels = profile.kernels.filter((k) => tf.getKernel(k.name, tf.getBackend()) !== undefined);
const label = (k: (typeof kernels)[number]) => (k.name === 'BatchMatMul' ? `BatchMatMul ${k.inputShapes.every((s) => (s?.length ?? 0) <= 2) ? '2-D' : 'batched'}` : k.name);
const byName = new Map<string, { ms: number; calls: number }>(), byCall = new Map<string, { ms: number; calls: number }>();
const add = (m: typeof byName, key: string, ms: number) => { const e = m.get(key) ?? { ms: 0, calls: 0 }; e.ms += ms; e.calls += 1; m.set(key, e); };
for (const k of kernels) {
  const ms = k.kernelTimeMs as number;
  add(byName, label(k), ms);
  add(byCall, `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(' ')}`, ms);
}
const inKernels = [...byName.values()].reduce((s, e) => s + e.ms, 0) / PROFILED;
const plain = { head: plainMatMulGflops(2048, 128, 4096), square: plainMatMulGflops(512, 512, 512) };
const plainRate = Math.max(plain.head, plain.square);
const gflops = (tokens * flopsPerToken) / stepMs / 1e6;

const rows = [...byName].map(([name, e]) => ({ name, ms: e.ms / PROFILED, calls: e.calls / PROFILED })).sort((a, b) => b.ms - a.ms);
const pct = (ms: number) => `${((100 * ms) / profiledMs).toFixed(1)}%`;
const lines = [
  `backend ${backend}, ${countParameters(modelCfg).toLocaleString('en-US')} parameters, ${source}; ${args.clock} time, profiled step ${profiledMs.toFixed(0)} ms (unprofiled ${stepMs.toFixed(0)} ms)`, '',
  '| kernel | calls/step | ms/step | share of step |', '|---|---:|---:|---:|',
  ...rows.map((r) => `| ${r.name} | ${r.calls} | ${r.ms.toFixed(1)} | ${pct(r.ms)} |`),
  `| outside kernels (JS, tape, tidy) | | ${(profiledMs - inKernels).toFixed(1)} | ${pct(profiledMs - inKernels)} |`, '',
  'costliest kernel calls (input shapes):', '',
  '| kernel call | calls/step | ms/step |', '|---|---:|---:|',
  ...[...byCall].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(process.env.KD_PROFILE_TOP ?? 15)).map(([name, e]) => `| ${name} | ${e.calls / PROFILED} | ${(e.ms / PROFILED).toFixed(1)} |`), '',
  `training: ${(tokens / (wallPerStep / 1000)).toFixed(0)} tokens/s wall, ${(tokens / (cpuPerStep / 1000)).toFixed(0)} tokens/s of CPU time (${STEPS} steps of ${batch.B} × ${batch.L} after ${WARMUP} warm-up)`,
  `training GFLOP/s (${args.clock}): ${gflops.toFixed(2)} = ${(gflops / plainRate).toFixed(2)} × the plain matMul rate`,
  `plain 2-D matMul (${args.clock}, fresh B, best of 5): ${plain.head.toFixed(1)} GFLOP/s at 2048×128 · 128×4096, ${plain.square.toFixed(1)} GFLOP/s at 512×512 · 512×512`,
];
console.log(lines.join('\n'));
if (args.json) {
  console.log(JSON.stringify({
    backend, clock: args.clock, step_ms: stepMs, profiled_step_ms: profiledMs, wall_step_ms: wallPerStep, cpu_step_ms: cpuPerStep,
    tokens_per_s_wall: tokens / (wallPerStep / 1000), tokens_per_s_cpu: tokens / (cpuPerStep / 1000), training_gflops: gflops,
    plain_matmul_gflops: plain, kernels: rows,
  }));
}
model.dispose(); optimizer.dispose();
