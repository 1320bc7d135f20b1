/**
 * Checkpoint rehearsal at the article's size: a random TinyLlama-1.1B-shaped checkpoint (HF's
 * TinyLlama-1.1B config: hidden 2048, intermediate 5632, 22 layers, 32 heads / 4 KV heads, vocab
 * 32000, untied, BF16) is written sharded, then each step runs as its own process (so its peak
 * RSS is its own) and prints seconds and peak RSS:
 *
 *   generate     the input, written by an independent writer in this script (seeded random bfloat16
 *                bit patterns, 1 GB shards + model.safetensors.index.json), not by kd's encoder
 *   load         kd's loadCheckpoint
 *   save-bf16    loadCheckpoint → saveCheckpoint BF16, 1 GB shards
 *   verify-bf16  every tensor's stored bytes in the output equal the input's (positional reads)
 *   save-f32     loadCheckpoint → saveCheckpoint F32, 1 GB shards
 *   reload-f32   loadCheckpoint of the F32 copy; every value's float32 bits equal the input's
 *                bfloat16 widened (bits << 16, decoded here, not by kd)
 *   onnx-export  kd teacher export --external-data (model.onnx + model.onnx.data, fp32)
 *   onnx-run     onnxruntime-node: one forward of 8 tokens of the exported model
 *
 * Usage: node --import tsx scripts/rehearse-checkpoint.ts [--out runs/rehearse] [--keep] [--skip-onnx-run] [--small]
 * Outputs go under --out; each step's intermediate files are removed once checked unless --keep.
 * Needs ~14 GB of disk at the peak (2.2 GB input, 2.2 GB BF16, 4.4 GB F32, 4.4 GB ONNX) and
 * ~10 GB of RAM (the ONNX export holds the fp32 weights and their transposed copies).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { countParameters, LlamaConfig, llamaTensorShapes, resolveLlamaConfig } from '../lib/model/config.js';
import { SafetensorsFile, TensorEntry } from '../lib/model/safetensors.js';
import { INDEX_FILE, readIndex, shardName } from '../lib/model/sharded.js';

/** HF's TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json (the fields kd reads). */
const TINYLLAMA = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 2048, intermediate_size: 5632,
  num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  hidden_act: 'silu', torch_dtype: 'bfloat16', bos_token_id: 1, eos_token_id: 2,
};
const SEED = 20240101;

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
/** --small: the same steps on a 4-layer 256-wide model with 1 MB shards (a quick check of the script). */
const SMALL = flag('--small');
const CONFIG = SMALL ? { ...TINYLLAMA, hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 2, vocab_size: 2000 } : TINYLLAMA;
const SHARD = SMALL ? 1e6 : 1e9;
const OUT = args.includes('--out') ? args[args.indexOf('--out') + 1] : 'runs/rehearse';
const dirs = { input: join(OUT, 'input'), bf16: join(OUT, 'bf16'), f32: join(OUT, 'f32'), onnx: join(OUT, 'onnx') };

/** xorshift32 stream of bfloat16 bit patterns of roughly N(0, 0.02)-sized weights (norms near 1). */
function randomBf16(n: number, seed: number, norm: boolean): Uint16Array {
  const out = new Uint16Array(n), f = new Float32Array(1), u = new Uint32Array(f.buffer);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    const x = (s / 2 ** 32 - 0.5) * 0.07; // uniform, sd ≈ 0.02
    f[0] = norm ? 1 + x : x;
    out[i] = u[0] >>> 16; // truncation: the input is bfloat16 by construction
  }
  return out;
}

/** The independent writer: shards of ≤ 1 GB in HF tensor order, then the index (transformers' layout). */
function generate(): Record<string, unknown> {
  rmSync(dirs.input, { recursive: true, force: true });
  mkdirSync(dirs.input, { recursive: true });
  const shapes = llamaTensorShapes(resolveLlamaConfig(CONFIG as Partial<LlamaConfig>));
  const groups: [string, number[]][][] = [];
  let size = Infinity;
  for (const t of shapes) {
    const bytes = t[1].reduce((a, b) => a * b, 1) * 2;
    if (size + bytes > SHARD) { groups.push([]); size = 0; }
    groups[groups.length - 1].push(t);
    size += bytes;
  }
  const weightMap: Record<string, string> = {};
  let total = 0, seed = SEED;
  groups.forEach((group, gi) => {
    const file = shardName(gi, groups.length);
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const [name, shape] of group) {
      const n = shape.reduce((a, b) => a * b, 1) * 2;
      header[name] = { dtype: 'BF16', shape, data_offsets: [off, off + n] };
      off += n;
      weightMap[name] = file;
    }
    total += off;
    const json = Buffer.from(JSON.stringify(header));
    const fd = openSync(join(dirs.input, file), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeAll(fd, len); writeAll(fd, json);
    for (const [name, shape] of group) writeAll(fd, randomBf16(shape.reduce((a, b) => a * b, 1), seed++, name.endsWith('norm.weight')));
    closeSync(fd);
  });
  writeFileSync(join(dirs.input, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  writeFileSync(join(dirs.input, 'config.json'), JSON.stringify(CONFIG, null, 2));
  return { shards: groups.length, bytes: total, parameters: total / 2 };
}

function writeAll(fd: number, a: ArrayBufferView): void {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
}

/** name → (open file, entry) over every shard of a checkpoint directory. */
function openAll(dir: string): { files: SafetensorsFile[]; entries: Map<string, [SafetensorsFile, TensorEntry]> } {
  const shards = [...new Set(Object.values(readIndex(dir).weight_map))];
  const files = shards.map((s) => new SafetensorsFile(join(dir, s)));
  const entries = new Map<string, [SafetensorsFile, TensorEntry]>();
  for (const f of files) for (const e of f.entries) entries.set(e.name, [f, e]);
  return { files, entries };
}

function dirBytes(dir: string, files: string[]): number {
  return files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

function shardsOf(dir: string): string[] {
  return [...new Set(Object.values(readIndex(dir).weight_map))];
}

/** Every tensor of `dir` has exactly the input's stored bytes, and the index covers the same tensors. */
function verifyBf16(): Record<string, unknown> {
  const a = openAll(dirs.input), b = openAll(dirs.bf16);
  try {
    if (a.entries.size !== b.entries.size) throw new Error(`${dirs.bf16}: ${b.entries.size} tensors, input has ${a.entries.size}`);
    let bytes = 0;
    for (const [name, [fa, ea]] of a.entries) {
      const other = b.entries.get(name);
      if (!other) throw new Error(`${dirs.bf16}: tensor '${name}' missing`);
      const [fb, eb] = other;
      if (eb.dtype !== 'BF16' || eb.shape.join() !== ea.shape.join()) throw new Error(`${dirs.bf16}: tensor '${name}' is ${eb.dtype} [${eb.shape}]`);
      const x = fa.raw(ea), y = fb.raw(eb);
      if (!Buffer.from(x.buffer, x.byteOffset, x.length).equals(Buffer.from(y.buffer, y.byteOffset, y.length))) throw new Error(`${dirs.bf16}: tensor '${name}' differs from the input`);
      bytes += x.length;
    }
    const index = readIndex(dirs.bf16);
    return { tensors: a.entries.size, bytes_equal: bytes, shards: shardsOf(dirs.bf16).length, total_size: index.metadata.total_size };
  } finally { for (const f of [...a.files, ...b.files]) f.close(); }
}

/** Every reloaded F32 value has the bits of the input's bfloat16 widened. */
function reloadF32(): Record<string, unknown> {
  const { weights } = loadCheckpoint(dirs.f32);
  const a = openAll(dirs.input);
  try {
    for (const [name, [fa, ea]] of a.entries) {
      const t = weights.get(name);
      if (!t) throw new Error(`${dirs.f32}: tensor '${name}' missing`);
      const raw = fa.raw(ea), src = new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2);
      const got = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
      if (got.length !== src.length) throw new Error(`${dirs.f32}: tensor '${name}' has ${got.length} values, input ${src.length}`);
      for (let i = 0; i < src.length; i++) if (got[i] !== ((src[i] << 16) >>> 0)) throw new Error(`${dirs.f32}: tensor '${name}'[${i}] = 0x${got[i].toString(16)}, input bf16 0x${src[i].toString(16)}`);
    }
    return { tensors: weights.size, shards: shardsOf(dirs.f32).length, bytes: dirBytes(dirs.f32, [...shardsOf(dirs.f32), INDEX_FILE]) };
  } finally { for (const f of a.files) f.close(); }
}

async function onnxRun(): Promise<Record<string, unknown>> {
  const ort = await import('onnxruntime-node');
  const path = join(dirs.onnx, 'model.onnx');
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 2 });
  const open = (performance.now() - t0) / 1000;
  const n = 8, ids = BigInt64Array.from({ length: n }, (_, i) => BigInt((1 + i * 997) % CONFIG.vocab_size));
  const t1 = performance.now();
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids, [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]),
  });
  const logits = out.logits.data as Float32Array;
  return { open_s: +open.toFixed(1), forward_s: +((performance.now() - t1) / 1000).toFixed(2), logits_dims: out.logits.dims, finite: logits.every(Number.isFinite), logit0: logits[0] };
}

/** One step, in this process; prints its figures as the last stdout line. */
async function step(name: string): Promise<void> {
  const t0 = performance.now();
  let detail: Record<string, unknown>;
  switch (name) {
    case 'generate': detail = generate(); break;
    case 'load': {
      const { cfg, weights } = loadCheckpoint(dirs.input);
      detail = { tensors: weights.size, parameters: countParameters(cfg) };
      break;
    }
    case 'save-bf16': case 'save-f32': {
      const { cfg, weights } = loadCheckpoint(dirs.input);
      const dir = name === 'save-bf16' ? dirs.bf16 : dirs.f32;
      rmSync(dir, { recursive: true, force: true });
      const w = saveCheckpoint(dir, cfg, weights, { dtype: name === 'save-bf16' ? 'BF16' : 'F32', maxShardSize: SHARD });
      detail = { files: w.files.length, bytes: w.bytes };
      break;
    }
    case 'verify-bf16': detail = verifyBf16(); break;
    case 'reload-f32': detail = reloadF32(); break;
    case 'onnx-export': {
      const { runExport } = await import('../stages/teacher.js');
      rmSync(dirs.onnx, { recursive: true, force: true });
      const r = runExport({ checkpoint: dirs.input, out: join(dirs.onnx, 'model.onnx'), external_data: true });
      detail = { model_bytes: r.bytes, data_bytes: r.data_bytes };
      break;
    }
    case 'onnx-run': detail = await onnxRun(); break;
    default: throw new Error(`scripts/rehearse-checkpoint.ts: unknown step '${name}'`);
  }
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ step: name, seconds, peak_rss_mib: process.resourceUsage().maxRSS / 1024, ...detail }) + '\n');
}

const STEPS = ['generate', 'load', 'save-bf16', 'verify-bf16', 'save-f32', 'reload-f32', 'onnx-export', 'onnx-run'];
/** Files no later step reads, removed after the step named. */
const CLEAN_AFTER: Record<string, string[]> = { 'verify-bf16': [dirs.bf16], 'reload-f32': [dirs.f32], 'onnx-run': [dirs.onnx, dirs.input] };

function main(): void {
  mkdirSync(OUT, { recursive: true });
  const rows: Record<string, unknown>[] = [];
  for (const name of STEPS) {
    if (name === 'onnx-run' && flag('--skip-onnx-run')) continue;
    process.stderr.write(`rehearse: ${name} …\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/rehearse-checkpoint.ts', '--step', name, '--out', OUT, ...(SMALL ? ['--small'] : [])], { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
    const last = r.stdout.toString().trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !last.startsWith('{')) {
      process.stderr.write(`rehearse: step ${name} failed (exit ${r.status ?? r.signal})\n${r.stdout}`);
      process.exit(1);
    }
    const row = JSON.parse(last) as Record<string, unknown>;
    rows.push(row);
    process.stderr.write(`  ${last}\n`);
    if (!flag('--keep')) for (const d of CLEAN_AFTER[name] ?? []) rmSync(d, { recursive: true, force: true });
  }
  writeFileSync(join(OUT, 'rehearse-checkpoint.json'), JSON.stringify(rows, null, 2) + '\n');
  const pad = (s: string, n: number) => s.padEnd(n);
  process.stdout.write(`\n${pad('step', 12)} ${'seconds'.padStart(8)} ${'peak RSS'.padStart(10)}  result\n`);
  for (const r of rows) {
    const { step: s, seconds, peak_rss_mib, ...rest } = r as { step: string; seconds: number; peak_rss_mib: number };
    process.stdout.write(`${pad(s, 12)} ${seconds.toFixed(1).padStart(8)} ${`${(peak_rss_mib / 1024).toFixed(2)} GiB`.padStart(10)}  ${JSON.stringify(rest)}\n`);
  }
  process.stdout.write(`figures: ${join(OUT, 'rehearse-checkpoint.json')}\n`);
}

if (args.includes('--step')) await step(args[args.indexOf('--step') + 1]);
else if (existsSync('scripts/rehearse-checkpoint.ts')) main();
else throw new Error('scripts/rehearse-checkpoint.ts: run from the repository root');
