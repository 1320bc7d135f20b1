/**
 * onnxruntime-node sessions for decoder LMs (teachers and exported students): opening with the
 * right execution provider, feeds built from the session's declared inputs (DESIGN §3.4), and
 * runners for the top-k and scoring graphs made by `topk-graph.ts`.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { decodeHalf } from '../logits/fp16.js';
import { SCORING_OUTPUT, TOPK_OUTPUTS, WIDTH_OUTPUT } from './topk-graph.js';
import { HIDDEN_OUTPUT } from './hidden-graph.js';
import { UNIFORMS_INPUT } from './sample-graph.js';

export type Device = 'auto' | 'cpu' | 'cuda';
export type ExecutionProvider = 'cpu' | 'cuda';
/** Input name → tensor, as passed to `session.run`. */
export type Feeds = Record<string, ort.Tensor>;
/** Token ids or masks, row-major [batch, seqLen]. */
export type IntArray = BigInt64Array | Int32Array;

export interface OnnxSession {
  session: ort.InferenceSession;
  /** The provider the session was created with (CUDA sessions may still place some nodes on CPU). */
  executionProvider: ExecutionProvider;
  inputNames: string[];
  outputNames: string[];
  /** File path, or the `source` option for in-memory models; used in error messages. */
  source: string;
}

export interface OpenSessionOptions {
  /** 'auto' tries CUDA and falls back to CPU; 'cuda' fails if CUDA cannot be used. Default 'auto'. */
  device?: Device;
  /** Intra-op threads (ORT default when omitted). */
  threads?: number;
  /** Name for error messages when opening from bytes. */
  source?: string;
  /** No warning on stderr when 'auto' falls back to the CPU. */
  quiet?: boolean;
}

const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split('\n')[0].trim();

function loadError(source: string, e: unknown): Error {
  const msg = firstLine(e);
  if (/protobuf parsing failed/i.test(msg)) return new Error(`${source}: not an ONNX model (${msg})`);
  return new Error(`${source}: failed to load ONNX model (${msg})`);
}

async function create(model: string | Uint8Array, eps: string[], threads?: number): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: eps, graphOptimizationLevel: 'all',
    // Weight-only QDQ linears (kd export --dtype int8, QDQ-quantized teachers): the CPU provider
    // fuses DequantizeLinear → MatMul into MatMulNBits, by default at accuracy_level 4, which also
    // quantizes the activations to int8 (logits then move by 2e-3–9e-3 of their scale, measured by
    // scripts/int8-layouts.ts). Level 1 computes in fp32: the model as written.
    extra: { session: { qdq_matmulnbits_accuracy_level: '1' } },
  };
  if (threads !== undefined) options.intraOpNumThreads = threads;
  return typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options);
}

/** Why CUDA failed to load in this process; later 'auto' opens go straight to CPU without retrying. */
let cudaFailure: string | undefined;

/** Errors that come from the CUDA provider itself, not from the model. */
const isProviderError = (msg: string): boolean => /cuda|execution provider|shared librar/i.test(msg);

/**
 * Why onnxruntime-node cannot have a CUDA provider here, found without trying (trying makes ORT log
 * a multi-line native error): no CUDA builds on this platform, or the provider library is not in
 * the binding's directory (npm installs it only with ONNXRUNTIME_NODE_INSTALL=cuda12). Undefined
 * when it may work or the package layout is not the one we know.
 */
function cudaProviderMissing(): string | undefined {
  if (process.platform !== 'linux' && process.platform !== 'win32') return `onnxruntime-node has no CUDA provider on ${process.platform}`;
  let dir: string;
  try {
    dir = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
  if (!existsSync(join(dir, 'onnxruntime_binding.node'))) return undefined;
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return existsSync(join(dir, lib)) ? undefined : `${lib} is not installed in ${dir}; run 'npx onnxruntime-node install cuda12'`;
}

/** CUDA (with CPU for unsupported nodes) when asked or, for 'auto', when it loads; else undefined. */
async function tryCuda(model: string | Uint8Array, device: Device, source: string, threads?: number, quiet = false) {
  if (device === 'cpu' || (device === 'auto' && cudaFailure !== undefined)) return undefined;
  try {
    const missing = cudaProviderMissing();
    if (missing) throw new Error(`CUDA ${missing}`);
    return await create(model, ['cuda', 'cpu'], threads);
  } catch (e) {
    const msg = firstLine(e);
    if (!isProviderError(msg)) throw loadError(source, e);
    if (device === 'cuda') throw new Error(`${source}: CUDA execution provider is not available (${msg})`);
    cudaFailure = msg;
    if (!quiet) process.stderr.write(`kd: CUDA execution provider unavailable (${msg}); using CPU\n`);
    return undefined;
  }
}

/**
 * Opens an ONNX model with onnxruntime-node.
 * Pass a path (not bytes) when the model has external data, so ORT finds it next to the file.
 * With device 'auto', a CUDA provider that fails to load is reported once on stderr and the
 * session runs on CPU.
 * @throws Error "<path>: teacher ONNX not found"; "<path>: not an ONNX model (…)"; "<path>:
 *   CUDA execution provider is not available (…)" for device 'cuda'; "<path>: failed to load
 *   ONNX model (…)" for other ORT errors; a bad `threads` value.
 */
export async function openOnnxSession(pathOrBytes: string | Uint8Array, opts: OpenSessionOptions = {}): Promise<OnnxSession> {
  const source = typeof pathOrBytes === 'string' ? pathOrBytes : opts.source ?? 'model';
  if (typeof pathOrBytes === 'string' && !existsSync(pathOrBytes)) throw new Error(`${source}: teacher ONNX not found`);
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
    throw new Error(`${source}: threads must be an integer ≥ 1, got ${opts.threads}`);
  }
  let session = await tryCuda(pathOrBytes, opts.device ?? 'auto', source, opts.threads, opts.quiet);
  const executionProvider: ExecutionProvider = session ? 'cuda' : 'cpu';
  if (!session) {
    try {
      session = await create(pathOrBytes, ['cpu'], opts.threads);
    } catch (e) {
      throw loadError(source, e);
    }
  }
  return {
    session, executionProvider, source,
    inputNames: [...session.inputNames], outputNames: [...session.outputNames],
  };
}

function toDtype(values: IntArray | number[], type: string, source: string, name: string): BigInt64Array | Int32Array {
  if (type === 'int64') {
    if (values instanceof BigInt64Array) return values;
    const out = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]);
    return out;
  }
  if (type === 'int32') return values instanceof Int32Array ? values : Int32Array.from(values, Number);
  throw new Error(`${source}: ONNX input '${name}' has type ${type}, expected int64 or int32`);
}

/** HF position ids: cumsum(mask) − 1 along each row, 1 at masked positions. */
export function positionIdsFromMask(mask: ArrayLike<number | bigint>, batch: number, seqLen: number): number[] {
  const pos = new Array<number>(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    let seen = 0;
    for (let t = 0; t < seqLen; t++) {
      const on = Number(mask[b * seqLen + t]) !== 0;
      if (on) seen++;
      pos[b * seqLen + t] = on ? seen - 1 : 1;
    }
  }
  return pos;
}

/** An empty past key/value tensor: batch in dim 0, every symbolic dim (the past length) 0. */
function emptyPast(meta: ort.InferenceSession.TensorValueMetadata, batch: number, source: string): ort.Tensor {
  if (meta.shape.length === 0) throw new Error(`${source}: ONNX input '${meta.name}' has no declared shape`);
  const dims = meta.shape.map((d, i) => (i === 0 ? batch : typeof d === 'number' ? d : 0));
  if (meta.type === 'float16') return new ort.Tensor('float16', new Uint16Array(0), dims);
  if (meta.type === 'float32') return new ort.Tensor('float32', new Float32Array(0), dims);
  throw new Error(`${source}: ONNX input '${meta.name}' has type ${meta.type}, expected float32 or float16`);
}

/**
 * Builds feeds for every input the session declares: `input_ids`, `attention_mask` (ones unless
 * given), `position_ids` (from the mask), `past_key_values.N.key/value` (past length 0),
 * `use_cache_branch` (false). `extra` supplies further inputs (e.g. `labels`).
 * @param inputIds [batch, seqLen] row-major token ids
 * @throws Error naming the source for a declared input this function cannot fill, or sizes
 *   that do not match batch × seqLen.
 */
export function buildFeeds(h: OnnxSession, inputIds: IntArray, batch: number, seqLen: number,
  attentionMask?: IntArray, extra: Feeds = {}): Feeds {
  const n = batch * seqLen;
  if (inputIds.length !== n) throw new Error(`${h.source}: got ${inputIds.length} input ids, expected batch ${batch} × seq ${seqLen}`);
  if (attentionMask && attentionMask.length !== n) throw new Error(`${h.source}: attention mask has ${attentionMask.length} values, expected ${n}`);
  const mask: IntArray = attentionMask ?? new Int32Array(n).fill(1);
  const feeds: Feeds = {};
  const intFeed = (meta: ort.InferenceSession.TensorValueMetadata, v: IntArray | number[]) => {
    const data = toDtype(v, meta.type, h.source, meta.name);
    return data instanceof BigInt64Array
      ? new ort.Tensor('int64', data, [batch, seqLen]) : new ort.Tensor('int32', data, [batch, seqLen]);
  };
  for (const meta of h.session.inputMetadata) {
    const name = meta.name;
    if (name in extra) feeds[name] = extra[name];
    else if (!meta.isTensor) throw new Error(`${h.source}: ONNX input '${name}' is not a tensor`);
    else if (name === 'input_ids') feeds[name] = intFeed(meta, inputIds);
    else if (name === 'attention_mask') feeds[name] = intFeed(meta, mask);
    else if (name === 'position_ids') feeds[name] = intFeed(meta, positionIdsFromMask(mask, batch, seqLen));
    else if (/^past_key_values\.\d+\.(key|value)$/.test(name)) feeds[name] = emptyPast(meta, batch, h.source);
    else if (name === 'use_cache_branch') feeds[name] = new ort.Tensor('bool', new Uint8Array([0]), [1]);
    else throw new Error(`${h.source}: don't know how to feed ONNX input '${name}' (${meta.type} [${meta.shape}])`);
  }
  return feeds;
}

function requireOutputs(h: OnnxSession, names: readonly string[], hint: string): void {
  const missing = names.filter((n) => !h.outputNames.includes(n));
  if (missing.length) throw new Error(`${h.source}: ONNX session has no output(s) ${missing.join(', ')} (${hint})`);
}

export interface TopKResult {
  /** [B·L·k] ids, sorted by descending logit per position. */
  topkIds: Int32Array;
  /** [B·L·k] logit − max logit (first of each position is 0). */
  topkLogits: Float32Array;
  /** [B·L·T] logsumexp(z/τ) − max(z)/τ for each stored temperature τ. */
  logZ: Float32Array;
  k: number;
  numTemperatures: number;
  /** Width of the teacher's logits in this run (its vocabulary as computed), when the graph reports it. */
  logitsWidth?: number;
  /** [B·L·n_layers·width] fp16 bits of the `hidden` output (addHiddenOutput), when the graph has it. */
  hidden?: Uint16Array;
  /** Layers and width of `hidden`. */
  hiddenShape?: { layers: number; width: number };
}

/**
 * Runs a session made from an {@link addTopKOutputs} graph on `ids` [B, L] (no padding).
 * @throws Error naming the source when the graph lacks the top-k outputs or the teacher's
 *   logits are NaN/Inf at some position.
 */
export async function runTopK(h: OnnxSession, ids: IntArray, batch: number, seqLen: number, extra: Feeds = {}): Promise<TopKResult> {
  requireOutputs(h, TOPK_OUTPUTS, 'add them with addTopKOutputs');
  const withWidth = h.outputNames.includes(WIDTH_OUTPUT);
  const withHidden = h.outputNames.includes(HIDDEN_OUTPUT);
  const out = await h.session.run(buildFeeds(h, ids, batch, seqLen, undefined, extra), [...TOPK_OUTPUTS, ...(withWidth ? [WIDTH_OUTPUT] : []), ...(withHidden ? [HIDDEN_OUTPUT] : [])]);
  const idsT = out.topk_ids, logZ = out.log_z.data as Float32Array;
  const k = idsT.dims[2], numTemperatures = out.log_z.dims[2];
  const src = idsT.data as BigInt64Array;
  const words = new Int32Array(src.buffer, src.byteOffset, 2 * src.length); // ids are in [0, V): low words (little-endian)
  const topkIds = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) topkIds[i] = words[2 * i];
  const bad = logZ.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    const pos = Math.floor(bad / numTemperatures);
    throw new Error(`${h.source}: teacher logits are NaN/Inf at batch row ${Math.floor(pos / seqLen)}, position ${pos % seqLen}`);
  }
  const logitsWidth = withWidth ? Number((out[WIDTH_OUTPUT].data as BigInt64Array)[0]) : undefined;
  const hid = withHidden ? out[HIDDEN_OUTPUT] : undefined;
  const hidden = hid ? new Uint16Array((hid.data as Uint16Array).buffer, (hid.data as Uint16Array).byteOffset, hid.size) : undefined; // fp16 bits
  const hiddenShape = hid ? { layers: hid.dims[2], width: hid.dims[3] } : undefined;
  return { topkIds, topkLogits: out.topk_logits.data as Float32Array, logZ, k, numTemperatures, logitsWidth, hidden, hiddenShape };
}

/**
 * Runs a session made from an addSampledOutputs graph (sample-graph.ts): as {@link runTopK}, with
 * `uniforms` [B·L·n] in [0, 1) fed as `sample_uniforms`; `topkIds`/`topkLogits` then hold the n draws.
 */
export async function runSampled(h: OnnxSession, ids: IntArray, batch: number, seqLen: number, uniforms: Float32Array, n: number): Promise<TopKResult> {
  if (uniforms.length !== batch * seqLen * n) throw new Error(`${h.source}: got ${uniforms.length} uniforms, expected ${batch} × ${seqLen} × ${n}`);
  return runTopK(h, ids, batch, seqLen, { [UNIFORMS_INPUT]: new ort.Tensor('float32', uniforms, [batch, seqLen, n]) });
}

/**
 * Runs a session made from an {@link addScoringOutputs} graph: log p(labels[b,t] | ids[b, ≤t]).
 * @param labels [B, L]; −100 (ignored) positions return log p of id 0 and must be masked by the caller
 * @returns Float32Array [B·L]
 */
export async function runScoring(h: OnnxSession, ids: IntArray, labels: IntArray, batch: number, seqLen: number): Promise<Float32Array> {
  requireOutputs(h, [SCORING_OUTPUT], 'add it with addScoringOutputs');
  if (labels.length !== batch * seqLen) throw new Error(`${h.source}: got ${labels.length} labels, expected ${batch * seqLen}`);
  const labelFeed = new ort.Tensor('int64', toDtype(labels, 'int64', h.source, 'labels') as BigInt64Array, [batch, seqLen]);
  const out = await h.session.run(buildFeeds(h, ids, batch, seqLen, undefined, { labels: labelFeed }), [SCORING_OUTPUT]);
  return out[SCORING_OUTPUT].data as Float32Array;
}

/** Runs the session and returns the full `logits` [B·L·V] (tests, small models, parity checks). */
export async function runLogits(h: OnnxSession, ids: IntArray, batch: number, seqLen: number,
  attentionMask?: IntArray): Promise<{ logits: Float32Array; dims: number[] }> {
  requireOutputs(h, ['logits'], "a language model's full [batch, sequence, vocabulary] logits are needed; a graph from addTopKOutputs or addScoringOutputs has none");
  const out = await h.session.run(buildFeeds(h, ids, batch, seqLen, attentionMask), ['logits']);
  const t = out.logits;
  if (t.type === 'float16') return { logits: decodeHalf(t.data as Uint16Array), dims: [...t.dims] };
  if (t.type !== 'float32') throw new Error(`${h.source}: logits are ${t.type}, expected float32 or float16`);
  return { logits: t.data as Float32Array, dims: [...t.dims] };
}
