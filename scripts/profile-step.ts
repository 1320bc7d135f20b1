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
 * so other processes on a shared machine inflate them much less than wall time (`--clock wall`).
 *
 * `--compare DIR` runs this script alternately in DIR (a checkout of an older commit, with this
 * script and lib/backend/matmul-rate.ts copied into it) and here, `--rounds` times each, as separate processes, and
 * prints both breakdowns side by side (median ms per kernel over rounds), tokens/s of both and
 * the median of the per-round ratios: a busy machine slows both sides of a round alike.
 *
 *   node --import tsx scripts/profile-step.ts [--backend wasm] [--data runs/logits] [--warmup 3] [--steps 4] [--profile 2] [--clock cpu|wall] [--top 15] [--json]
 *   node --import tsx scripts/profile-step.ts --compare runs/before [--rounds 3] [same options]
 */
import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { plainMatMulGflops } from '../lib/backend/matmul-rate.js';
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
    clock: { type: 'string', default: 'cpu' }, top: { type: 'string', default: '15' }, json: { type: 'boolean', default: false },
    compare: { type: 'string' }, rounds: { type: 'string', default: '3' },
  },
});
const count = (name: 'warmup' | 'steps' | 'profile' | 'top' | 'rounds', min: number) => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: must be an integer ≥ ${min}, got '${args[name]}'`);
  return n;
};
const WARMUP = count('warmup', 1), STEPS = count('steps', 1), PROFILED = count('profile', 1), TOP = count('top', 0), ROUNDS = count('rounds', 1);
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

/** What one profiling run measures (also its --json line). */
interface StepProfile {
  backend: string; clock: string; parameters: number; source: string;
  /** Per step on --clock: unprofiled and profiled. */
  step_ms: number; profiled_step_ms: number;
  tokens_per_s_wall: number; tokens_per_s_cpu: number;
  /** Training FLOP/s (Kaplan et al. 2020) on --clock, GFLOP/s. */
  training_gflops: number;
  plain_matmul_gflops: { head: number; square: number };
  /** By kernel (BatchMatMul split into 2-D and batched), ms per step on --clock. */
  kernels: { name: string; calls: number; ms: number }[];
  /** The costliest kernel calls by input shapes. */
  calls: { name: string; calls: number; ms: number }[];
}

/** Trains the demo student on one batch and profiles it (see the module comment). */
async function profileStep(): Promise<StepProfile> {
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
  const tokens = batch.B * batch.L;
  const flopsPerToken = 6 * countParameters(modelCfg) + 12 * modelCfg.num_hidden_layers * modelCfg.hidden_size * batch.L;

  // Registered kernels only: scopes (customGrad ops) contain kernels that are listed themselves.
  const p0 = now();
  const profile = await tf.profile(() => steps(PROFILED));
  const profiledMs = (now() - p0) / PROFILED;
  const kernels = profile.kernels.filter((k) => tf.getKernel(k.name, tf.getBackend()) !== undefined);
  const byName = new Map<string, { ms: number; calls: number }>(), byCall = new Map<string, { ms: number; calls: number }>();
  const add = (m: typeof byName, key: string, ms: number) => { const e = m.get(key) ?? { ms: 0, calls: 0 }; e.ms += ms / PROFILED; e.calls += 1 / PROFILED; m.set(key, e); };
  for (const k of kernels) {
    const batched = k.inputShapes.some((s) => (s?.length ?? 0) > 2);
    add(byName, k.name === 'BatchMatMul' ? `BatchMatMul ${batched ? 'batched' : '2-D'}` : k.name, k.kernelTimeMs as number);
    add(byCall, `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(' ')}`, k.kernelTimeMs as number);
  }
  const inKernels = [...byName.values()].reduce((s, e) => s + e.ms, 0);
  byName.set('outside kernels (JS, tape, tidy)', { ms: profiledMs - inKernels, calls: 0 });
  const plain = { head: plainMatMulGflops(2048, 128, 4096, 5, now), square: plainMatMulGflops(512, 512, 512, 5, now) };
  const stepMs = args.clock === 'cpu' ? cpuPerStep : wallPerStep;
  const sorted = (m: typeof byName) => [...m].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
  model.dispose(); optimizer.dispose();
  return {
    backend, clock: args.clock!, parameters: countParameters(modelCfg), source, step_ms: stepMs, profiled_step_ms: profiledMs,
    tokens_per_s_wall: tokens / (wallPerStep / 1000), tokens_per_s_cpu: tokens / (cpuPerStep / 1000),
    training_gflops: (tokens * flopsPerToken) / stepMs / 1e6, plain_matmul_gflops: plain,
    kernels: sorted(byName), calls: sorted(byCall).slice(0, TOP),
  };
}

const plainRate = (p: StepProfile) => Math.max(p.plain_matmul_gflops.head, p.plain_matmul_gflops.square);
const rates = (p: StepProfile) => [
  `training: ${p.tokens_per_s_wall.toFixed(0)} tokens/s wall, ${p.tokens_per_s_cpu.toFixed(0)} tokens/s of CPU time (${STEPS} steps after ${WARMUP} warm-up)`,
  `training GFLOP/s (${p.clock}): ${p.training_gflops.toFixed(2)} = ${(p.training_gflops / plainRate(p)).toFixed(2)} × the plain matMul rate`,
  `plain 2-D matMul (${p.clock}, fresh B, best of 5): ${p.plain_matmul_gflops.head.toFixed(1)} GFLOP/s at 2048×128 · 128×4096, ${p.plain_matmul_gflops.square.toFixed(1)} GFLOP/s at 512×512 · 512×512`,
];

/** The breakdown tables and rates of one run. */
function report(p: StepProfile): string {
  const pct = (ms: number) => `${((100 * ms) / p.profiled_step_ms).toFixed(1)}%`;
  return [
    `backend ${p.backend}, ${p.parameters.toLocaleString('en-US')} parameters, ${p.source}; ${p.clock} time, profiled step ${p.profiled_step_ms.toFixed(0)} ms (unprofiled ${p.step_ms.toFixed(0)} ms)`, '',
    '| kernel | calls/step | ms/step | share of step |', '|---|---:|---:|---:|',
    ...p.kernels.map((r) => `| ${r.name} | ${r.calls ? Math.round(r.calls) : ''} | ${r.ms.toFixed(1)} | ${pct(r.ms)} |`), '',
    'costliest kernel calls (input shapes):', '',
    '| kernel call | calls/step | ms/step |', '|---|---:|---:|',
    ...p.calls.map((r) => `| ${r.name} | ${Math.round(r.calls)} | ${r.ms.toFixed(1)} |`), '',
    ...rates(p),
  ].join('\n');
}

/** Runs this script with --json in `cwd` and returns its profile. */
function child(cwd: string): StepProfile {
  const pass = ['backend', 'data', 'warmup', 'steps', 'profile', 'clock', 'top'] as const;
  const argv = pass.flatMap((k) => (args[k] === undefined ? [] : [`--${k}`, String(args[k])]));
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/profile-step.ts', ...argv, '--json'], { cwd, encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop()!) as StepProfile;
}

/** Before (`dir`) and after (this tree), alternating; see the module comment. */
function compare(dir: string): string {
  for (const f of ['scripts/profile-step.ts', 'lib/backend/matmul-rate.ts']) {
    if (!existsSync(join(dir, f))) throw new Error(`--compare ${dir}: no ${f} there (copy it from this tree into the older checkout)`);
  }
  const before: StepProfile[] = [], after: StepProfile[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    before.push(child(dir));
    after.push(child('.'));
    process.stderr.write(`round ${r + 1}: before ${before[r].step_ms.toFixed(0)} ms/step, after ${after[r].step_ms.toFixed(0)} ms/step (${args.clock})\n`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const msOf = (runs: StepProfile[], name: string) => median(runs.map((p) => p.kernels.find((k) => k.name === name)?.ms ?? 0));
  const stepOf = (runs: StepProfile[]) => median(runs.map((p) => p.profiled_step_ms));
  const names = [...new Set([...before, ...after].flatMap((p) => p.kernels.map((k) => k.name)))]
    .sort((x, y) => msOf(before, y) + msOf(after, y) - msOf(before, x) - msOf(after, x));
  const cell = (runs: StepProfile[], name: string) => `${msOf(runs, name).toFixed(1)} | ${((100 * msOf(runs, name)) / stepOf(runs)).toFixed(1)}%`;
  const ratio = (key: 'tokens_per_s_wall' | 'tokens_per_s_cpu') => median(after.map((a, i) => a[key] / before[i][key]));
  const last = after[after.length - 1];
  return [
    `${last.backend}, ${last.source}; ${args.clock} time, median of ${ROUNDS} alternating rounds; before = ${dir}`, '',
    '| kernel | before ms/step | before share | after ms/step | after share |', '|---|---:|---:|---:|---:|',
    ...names.filter((n) => msOf(before, n) >= 0.5 || msOf(after, n) >= 0.5).map((n) => `| ${n} | ${cell(before, n)} | ${cell(after, n)} |`),
    `| profiled step | ${stepOf(before).toFixed(0)} | 100% | ${stepOf(after).toFixed(0)} | 100% |`, '',
    `tokens/s wall: before ${median(before.map((p) => p.tokens_per_s_wall)).toFixed(0)}, after ${median(after.map((p) => p.tokens_per_s_wall)).toFixed(0)}; after/before ${ratio('tokens_per_s_wall').toFixed(2)} (median of per-round ratios)`,
    `tokens/s of CPU time: before ${median(before.map((p) => p.tokens_per_s_cpu)).toFixed(0)}, after ${median(after.map((p) => p.tokens_per_s_cpu)).toFixed(0)}; after/before ${ratio('tokens_per_s_cpu').toFixed(2)}`,
    `training GFLOP/s (${args.clock}): before ${median(before.map((p) => p.training_gflops)).toFixed(2)}, after ${median(after.map((p) => p.training_gflops)).toFixed(2)}; after / plain matMul rate of the same process: ${median(after.map((p) => p.training_gflops / plainRate(p))).toFixed(2)} (best shape), ${median(after.map((p) => p.training_gflops / p.plain_matmul_gflops.head)).toFixed(2)} (LM-head shape)`,
    `plain 2-D matMul (after's processes, median): ${median(after.map((p) => p.plain_matmul_gflops.head)).toFixed(1)} GFLOP/s at 2048×128 · 128×4096, ${median(after.map((p) => p.plain_matmul_gflops.square)).toFixed(1)} at 512×512 · 512×512`,
  ].join('\n');
}

if (args.compare) console.log(compare(args.compare));
else {
  const p = await profileStep();
  console.log(report(p));
  if (args.json) console.log(JSON.stringify(p));
}
