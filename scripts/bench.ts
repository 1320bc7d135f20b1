/**
 * make bench: measured in one run, on the same windows and batch shape —
 *  1. bare teacher forward (full logits to JS, nothing written) vs precompute (top-k graph, rows,
 *     shards written by the writer thread, manifests): tokens/s of each and their ratio, plus the
 *     top-k graph alone (all stored τ, and τ = 1 only) to show where a gap comes from. Rounds
 *     alternate the measurements with fresh sessions; ratios are taken within a round and the
 *     median over rounds is printed, so a busy machine slows both sides alike; beside it the ratio
 *     of CPU time (all threads) for the same tokens, which other processes disturb much less.
 *     Session creation (and the writer thread's start) is excluded from every number; precompute
 *     writes 8 shards, so the last shard's write (once per run: nothing is left to overlap it)
 *     weighs 1/8, as in a run of a few hundred thousand positions;
 *  2. bytes per position: raw (int32 id, fp32 value) pairs vs the stored columns before and after
 *     Parquet compression;
 *  3. student training tokens/s and achieved FLOP/s on the TF.js backend vs the machine's MatMul
 *     ceiling (onnxruntime CPU MatMul) and vs the backend's own plain 2-D matMul rate (measured in
 *     this process) as ratios; peak RSS of the training process.
 *  4. the demo student's training speed with the memory plan's settings against the trainer before
 *     the memory options existed, and with recomputation forced (scripts/train-speed.ts;
 *     KD_BENCH_SPEED=0 skips it).
 * Inputs: runs/prep (else a 150-document prep in runs/bench/prep) and runs/teacher/model.onnx
 * (else exported from data/teacher, else a random-weight teacher of the default teacher's shape);
 * KD_BENCH_TEACHER / KD_BENCH_PREP measure another teacher, KD_BENCH_WINDOWS / KD_BENCH_ROUNDS
 * change the windows per measurement (256) and the rounds (7); KD_BENCH_SKIP_TRAINING=1 stops after
 * part 2. Part 1 is repeated (64 windows, 5 rounds; KD_BENCH_LARGE=0 skips it) for a random-weight
 * 42 M-parameter teacher (768 wide, 6 layers, cached in runs/bench), whose forward outweighs the
 * per-position top-k, log_z and writing work as in real teachers.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { plainMatMulGflops } from '../lib/backend/matmul-rate.js';
import { initBackend, type BackendChoice } from '../lib/backend/select.js';
import { readWindows } from '../lib/data/windows.js';
import { countParameters, resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import {
  addTopKOutputs, exportLlamaOnnx, onnxMatMulGflops, openOnnxSession, readOnnx, runLogits, runTopK, writeOnnx, type OnnxSession,
} from '../lib/onnx/index.js';
import { batchIds } from '../lib/precompute/teacher-rows.js';
import { rowBytes } from '../lib/shards/index.js';
import { run as precompute, PRECOMPUTE_DEFAULTS } from '../stages/precompute.js';
import { run as prepStage } from '../stages/prep.js';
import { runExport } from '../stages/teacher.js';
import { compareTrainingSpeed } from './train-speed.js';

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const WINDOWS = env('KD_BENCH_WINDOWS', 256), BATCH = 8, ROUNDS = env('KD_BENCH_ROUNDS', 7);
const out = mkdtempSync(join(tmpdir(), 'kd-bench-'));
const rows: string[][] = [];
const show = (name: string, value: string, note = '') => { rows.push([name, value, note]); console.error(`${name}: ${value} ${note}`); };

/** The prep directory and teacher to measure on, made when missing (see the module comment). */
async function inputs(): Promise<{ prep: string; teacher: string; what: string }> {
  if (process.env.KD_BENCH_TEACHER) return { prep: process.env.KD_BENCH_PREP ?? 'runs/prep', teacher: process.env.KD_BENCH_TEACHER, what: process.env.KD_BENCH_TEACHER };
  let prep = 'runs/prep', teacher = 'runs/teacher/model.onnx', what = 'default teacher';
  if (!existsSync(join(prep, 'windows.json'))) {
    prep = 'runs/bench/prep';
    if (!existsSync(join(prep, 'windows.json'))) await prepStage({ out: prep, max_documents: 150, quiet: true });
  }
  if (!existsSync(teacher) && existsSync('data/teacher/model.safetensors')) runExport({ checkpoint: 'data/teacher', out: teacher });
  if (!existsSync(teacher)) {
    teacher = 'runs/bench/teacher.onnx';
    what = 'random-weight teacher of the default shape';
    const cfg = resolveLlamaConfig({ vocab_size: readWindows(prep, 'train').meta.vocab_size, hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2 });
    if (!existsSync(teacher)) writeOnnx(teacher, exportLlamaOnnx(cfg, initLlamaWeights(cfg, 1)));
  }
  return { prep, teacher, what };
}

// 1. Bare forward vs precompute, same windows, same batch shape, fresh sessions each round.
const { prep, teacher, what } = await inputs();
const w = readWindows(prep, 'train');
const L = w.seqLen, T = PRECOMPUTE_DEFAULTS.temperatures;
/** Wall-clock tokens/s and CPU seconds (all threads of this process) of one measurement. */
interface Speed { tps: number; cpu: number }
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
/** Median over rounds of a/b, wall-clock tokens/s measured in the same round (a busy machine slows both alike). */
const ratio = (a: Speed[], b: Speed[]) => median(a.map((x, i) => x.tps / b[i].tps));
/** b's CPU time over a's for the same tokens, summed over rounds: the throughput ratio when CPU is the limit. */
const cpuRatio = (a: Speed[], b: Speed[]) => b.reduce((s, x) => s + x.cpu, 0) / a.reduce((s, x) => s + x.cpu, 0);
const perS = (a: Speed[]) => `${median(a.map((x) => x.tps)).toFixed(0)} tokens/s`;
const both = (a: Speed[], b: Speed[]) => `${ratio(a, b).toFixed(3)} (CPU-time ratio ${cpuRatio(a, b).toFixed(3)})`;

/** Part 1 for one teacher: prints its rows (names prefixed by `label`) and returns the precompute summary of the last round. */
async function measure(model: string, label: string, description: string, windows: number, rounds: number) {
  /** Speed of `run` over the bench windows with a session opened (untimed) from `bytes`. */
  async function forward(bytes: Uint8Array | string, run: (h: OnnxSession, ids: BigInt64Array, B: number) => Promise<unknown>): Promise<Speed> {
    const h = await openOnnxSession(bytes, { device: 'auto', source: model });
    const t0 = performance.now(), cpu0 = process.cpuUsage();
    for (let b0 = 0; b0 < windows; b0 += BATCH) await run(h, batchIds(w, b0, BATCH), BATCH);
    const cpu = process.cpuUsage(cpu0);
    const speed = { tps: (windows * L) / ((performance.now() - t0) / 1000), cpu: (cpu.user + cpu.system) / 1e6 };
    await h.session.release();
    return speed;
  }
  const graph = (temperatures: number[]) => addTopKOutputs(readOnnx(model), { k: PRECOMPUTE_DEFAULTS.k, temperatures, source: model });
  const [topkAll, topkOne] = [graph(T), graph([1])];
  const runs = { bare: [] as Speed[], topk: [] as Speed[], topk1: [] as Speed[], pre: [] as Speed[] };
  const split = { loop: 0, forward: 0, write: 0 };
  let last: Awaited<ReturnType<typeof precompute>> | undefined;
  for (let r = 0; r < rounds; r++) {
    runs.bare.push(await forward(model, (h, ids, B) => runLogits(h, ids, B, L)));
    runs.topk.push(await forward(topkAll, (h, ids, B) => runTopK(h, ids, B, L)));
    runs.topk1.push(await forward(topkOne, (h, ids, B) => runTopK(h, ids, B, L)));
    last = await precompute({ teacher: model, prep, out: join(out, 'logits'), max_windows: windows, batch_size: BATCH, rows_per_shard: windows / 8, quiet: true, overwrite: true });
    runs.pre.push({ tps: last.tokens_per_s, cpu: last.cpu_seconds });
    split.loop += (windows * L) / last.tokens_per_s;
    split.forward += last.forward_seconds;
    split.write += last.write_seconds;
  }
  const cpuPerK = (a: Speed[]) => `${((1e6 * a.reduce((s, x) => s + x.cpu, 0)) / (a.length * windows * L)).toFixed(0)} CPU-ms per 1k tokens`;
  show(`${label}bare teacher forward`, perS(runs.bare), `(${description}; ${windows} windows × ${L}, batch ${BATCH}, ${last!.execution_provider}; full logits to JS; ${cpuPerK(runs.bare)}; median of ${rounds} rounds)`);
  show(`${label}top-k graph alone`, perS(runs.topk), `(${both(runs.topk, runs.bare)} × bare; TopK k=${PRECOMPUTE_DEFAULTS.k} + log_z at ${T.length} τ, nothing written)`);
  show(`${label}top-k graph, τ = 1 only`, perS(runs.topk1), `(${both(runs.topk1, runs.bare)} × bare)`);
  show(`${label}precompute`, perS(runs.pre), `(${both(runs.pre, runs.topk)} × top-k graph alone: rows, shards by the writer thread, manifests)`);
  const pct = (x: number) => `${((100 * x) / split.loop).toFixed(1)}%`;
  show(`${label}precompute time split`, `${pct(split.forward)} forward`, `(main thread: ${pct(split.loop - split.forward)} rows, manifests, last write; writer thread busy ${pct(split.write)} of the time, beside the forwards)`);
  show(`${label}precompute / bare forward`, both(runs.pre, runs.bare), `(goal ≥ 0.95; wall-clock per round: ${runs.pre.map((x, i) => (x.tps / runs.bare[i].tps).toFixed(2)).join(', ')})`);
  return last!;
}
const { bytes_per_position: bytesPerPosition } = await measure(teacher, '', what, WINDOWS, ROUNDS);

// 2. Storage per position.
const manifest = JSON.parse(readFileSync(join(out, 'logits', 'manifest.json'), 'utf8'));
const raw = manifest.k * 8;
const stored = rowBytes({ seqLen: L, k: manifest.k, numTemps: manifest.temperatures.length, idDtype: manifest.encoding.ids, valueDtype: manifest.encoding.values }) / L;
show('raw (int32 id, fp32 value) pairs', `${raw} bytes/position`, `(k = ${manifest.k})`);
show('stored columns, uncompressed', `${stored.toFixed(1)} bytes/position`, `(${(stored / raw).toFixed(2)} × raw; incl. input/target ids and ${manifest.temperatures.length} log_z)`);
show('stored, Parquet (byte-split, BROTLI-1)', `${bytesPerPosition.toFixed(1)} bytes/position`, `(${(bytesPerPosition / raw).toFixed(2)} × raw)`);
// 1b. The same for a teacher whose forward dominates as in real ones (random weights, cached in runs/bench).
if (!process.env.KD_BENCH_TEACHER && process.env.KD_BENCH_LARGE !== '0') {
  const large = 'runs/bench/teacher-42m.onnx';
  const cfg = resolveLlamaConfig({ vocab_size: w.meta.vocab_size, hidden_size: 768, intermediate_size: 2048, num_hidden_layers: 6, num_attention_heads: 12, num_key_value_heads: 6 });
  if (!existsSync(large)) {
    mkdirSync(dirname(large), { recursive: true }); // a fresh clone has no runs/bench
    writeOnnx(large, exportLlamaOnnx(cfg, initLlamaWeights(cfg, 1)));
  }
  await measure(large, '42 M teacher: ', `random weights, 768 wide, 6 layers, ${(countParameters(cfg) / 1e6).toFixed(1)} M params`, env('KD_BENCH_LARGE_WINDOWS', 64), 5);
}
const table = () => console.log(['| measure | value | note |', '|---|---:|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n'));
if (process.env.KD_BENCH_SKIP_TRAINING) {
  table();
  rmSync(out, { recursive: true, force: true });
  process.exit(0);
}

// 3. Student training throughput and FLOP/s per TF.js backend, each in its own `kd train` process
// (so its peak RSS is training alone), vs the ONNX Runtime MatMul ceiling measured here.
const studentCfg = JSON.parse(readFileSync('pipelines/configs/student.json', 'utf8'));
const m = resolveLlamaConfig({ vocab_size: manifest.tokenizer.vocab_size, ...studentCfg.model });
const flopsPerToken = 6 * countParameters(m) + 12 * m.num_hidden_layers * m.hidden_size * L; // Kaplan et al. 2020, §2.1
const ceiling = await onnxMatMulGflops();
show('onnxruntime CPU MatMul ceiling', `${ceiling.toFixed(1)} GFLOP/s`, '(2048×1024 · 1024×1024, best of 5)');
for (const backend of availableBackends()) {
  const dir = join(out, `student-${backend}`);
  const steps = backend === 'cpu' ? 3 : 6;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'pipelines/kd.ts', 'train', '--config', 'pipelines/configs/student.json',
    '--prep', prep, '--data', join(out, 'logits'), '--out', dir, '--max-steps', String(steps), '--eval-windows', '8', '--backend', backend, '--quiet', '--json'], { maxBuffer: 1 << 24 });
  const summary = JSON.parse(stdout.trim().split('\n').pop()!);
  const records = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.tokens_per_s);
  const tps = records.slice(1).reduce((s, r) => s + r.tokens_per_s, 0) / (records.length - 1); // the first step warms up
  const achieved = (tps * flopsPerToken) / 1e9;
  show(`student training, ${backend}`, `${tps.toFixed(0)} tokens/s`, `(${(countParameters(m) / 1e6).toFixed(2)} M params, batch ${studentCfg.batch_size}×${L}, α ${studentCfg.alpha}, ${steps} steps)`);
  const plain = await tfPlainMatMul(backend);
  if (plain) show(`TF.js ${backend} plain matMul rate`, `${plain.toFixed(1)} GFLOP/s`, '(2048×128 · 128×4096, the LM head\'s shape; new B per call, best of 5; this process)');
  show(`achieved training FLOP/s, ${backend}`, `${achieved.toFixed(2)} GFLOP/s`, `(${(achieved / ceiling).toFixed(3)} × the MatMul ceiling${plain ? `, ${(achieved / plain).toFixed(2)} × the backend's plain matMul rate` : ''})`);
  show(`peak RSS of training, ${backend}`, `${(summary.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB`, '(kd train process alone; the teacher is never loaded)');
}

/** The backend's plain 2-D matMul GFLOP/s (lib/backend/matmul-rate.ts), measured in this process; undefined on cpu (too slow to be a yardstick). */
async function tfPlainMatMul(backend: string): Promise<number | undefined> {
  if (backend === 'cpu') return undefined;
  await initBackend(backend as BackendChoice);
  return plainMatMulGflops(2048, 128, 4096);
}

/** TF.js backends whose packages are installed (tfjs-node and -gpu are optional). */
function availableBackends(): string[] {
  const pkgs: [string, string][] = [['node-gpu', '@tensorflow/tfjs-node-gpu'], ['node', '@tensorflow/tfjs-node'], ['wasm', '@tensorflow/tfjs-backend-wasm'], ['cpu', '@tensorflow/tfjs-backend-cpu']];
  return pkgs.filter(([, p]) => existsSync(join('node_modules', p))).map(([b]) => b);
}

// 4. The memory plan's settings (off for this student) against the trainer before recomputation,
// blocked attention and chunked loss (scripts/train-speed.ts), wasm, alternating rounds.
if (process.env.KD_BENCH_SPEED !== '0') {
  try {
    const c = await compareTrainingSpeed(prep, join(out, 'logits'), { log: (s) => console.error(s) });
    show('training now / before memory options (wasm, plan: off)', c.now_over_before.toFixed(3), `(median of ${c.rounds.length} rounds vs ${c.before}; goal ≥ 0.95)`);
    show('training with --recompute on / plan (wasm)', c.recompute_over_now.toFixed(3), '(what recomputation costs this student)');
  } catch (e) { show('training now / before memory options', 'skipped', (e as Error).message); }
}

table();
rmSync(out, { recursive: true, force: true });
