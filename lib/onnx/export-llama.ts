/**
 * Exports a Llama-architecture model (HF `LlamaForCausalLM` semantics) to ONNX with the IO
 * conventions of the exporters users' teachers come from (DESIGN §3.4), so the same session code
 * runs our students and their teachers, and every variant can be tested against the others.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { headDim, LlamaConfig, llamaTensorShapes } from '../model/config.js';
import { NamedTensors } from '../model/tensors.js';
import { checkSelfContainedSize, exportWeightBytes, initializerBytes, writeOnnxExternal } from './external-data.js';
import { LlamaGraph, LlamaGraphIo, OnnxDtype, OPSET } from './llama-graph.js';
import { TOKENIZER_SHA256_KEY } from './model-tokenizer.js';
import { DT, encodeModel, OnnxTypes, valueInfo, writeOnnx } from './proto.js';

export { writeOnnx } from './proto.js';
export type { OnnxDtype } from './llama-graph.js';

/**
 * Graph IO conventions:
 * - `optimum`: Optimum `decoder_model.onnx` — input_ids, attention_mask, position_ids → logits.
 * - `optimum-kv`: Optimum `decoder_with_past_model.onnx` — adds past_key_values.N.key/value
 *   [batch_size, num_kv_heads, past_sequence_length, head_dim] inputs and present.N.key/value
 *   [batch_size, num_kv_heads, total_sequence_length, head_dim] outputs; attention_mask covers
 *   past + current positions. A past of length 0 gives the plain forward.
 * - `merged`: Optimum `decoder_model_merged.onnx` — as optimum-kv plus use_cache_branch bool [1].
 *   Optimum selects a no-past or with-past subgraph with an If node; here one graph serves both:
 *   use_cache_branch = false slices the past to length 0 (i.e. ignores it), true uses it.
 * - `genai`: onnxruntime-genai builder — input_ids, attention_mask, past_key_values.N.key/value →
 *   logits, present.N.key/value; no position_ids input, the graph derives HF's positions
 *   cumsum(attention_mask) − 1 (1 where masked) itself.
 */
export type OnnxIo = 'optimum' | 'optimum-kv' | 'merged' | 'genai';
export const ONNX_IOS: readonly OnnxIo[] = ['optimum', 'optimum-kv', 'merged', 'genai'];
export const ONNX_DTYPES: readonly OnnxDtype[] = ['fp32', 'fp16', 'int8', 'int4'];

const IO_SPECS: Record<OnnxIo, LlamaGraphIo> = {
  optimum: { positions: 'input', past: false, useCacheBranch: false },
  'optimum-kv': { positions: 'input', past: true, useCacheBranch: false },
  merged: { positions: 'input', past: true, useCacheBranch: true },
  genai: { positions: 'derived', past: true, useCacheBranch: false },
};

/** Export options; every field has a default. */
export interface ExportLlamaOptions {
  /** Weight/activation precision (default fp32); see `llama-graph.ts`. */
  dtype?: OnnxDtype;
  /** Graph IO convention (default optimum). */
  io?: OnnxIo;
  /** int4: MatMulNBits block size along K, a power of two ≥ 16 (default 32). */
  blockSize?: number;
  /**
   * int4: asymmetric blocks with per-block zero points (default; on the default teacher 13% lower
   * KL to fp32 than symmetric for 1% more bytes, README "Teacher precision") or symmetric (zero point 8, none stored).
   */
  symmetric?: boolean;
  /** Name used in error messages (e.g. the checkpoint path). */
  source?: string;
  /**
   * sha256 (hex) of the model's tokenizer.json, stored in metadata_props as `kd.tokenizer_sha256`
   * so that precompute can check a prep tokenizer against the model alone (model-tokenizer.ts).
   */
  tokenizerSha256?: string;
}

function checkWeights(cfg: LlamaConfig, weights: NamedTensors, source: string): void {
  for (const [name, shape] of llamaTensorShapes(cfg)) {
    const t = weights.get(name);
    if (!t) throw new Error(`${source}: missing tensor '${name}'`);
    const want = shape.reduce((a, b) => a * b, 1);
    if (t.shape.join(',') !== shape.join(',') || t.data.length !== want) {
      throw new Error(`${source}: tensor '${name}' has shape [${t.shape}] (${t.data.length} values), config expects [${shape}]`);
    }
  }
}

function checkOptions(o: ExportLlamaOptions, source: string): Required<Omit<ExportLlamaOptions, 'source' | 'tokenizerSha256'>> {
  const dtype = o.dtype ?? 'fp32', io = o.io ?? 'optimum', blockSize = o.blockSize ?? 32;
  if (!ONNX_DTYPES.includes(dtype)) throw new Error(`${source}: ONNX export dtype '${dtype}' is not supported (valid: ${ONNX_DTYPES.join(', ')})`);
  if (!ONNX_IOS.includes(io)) throw new Error(`${source}: ONNX export io '${io}' is not supported (valid: ${ONNX_IOS.join(', ')})`);
  if (!(Number.isInteger(blockSize) && blockSize >= 16 && (blockSize & (blockSize - 1)) === 0)) {
    throw new Error(`${source}: int4 block size must be a power of two ≥ 16, got ${blockSize}`);
  }
  return { dtype, io, blockSize, symmetric: o.symmetric ?? false };
}

/**
 * The Llama forward pass as an ONNX ModelProto (opset 17; plus com.microsoft v1 for int4).
 *
 * Inputs (int64): `input_ids` [batch_size, sequence_length]; `attention_mask` [batch_size,
 * sequence_length] (or total_sequence_length with a past); `position_ids` [batch_size,
 * sequence_length] unless io is genai; with a past (io optimum-kv, merged, genai)
 * `past_key_values.N.key|value` [batch_size, num_kv_heads, past_sequence_length, head_dim] in the
 * activation type; merged adds `use_cache_branch` bool [1].
 * Outputs: `logits` [batch_size, sequence_length, vocab_size] (float32, or float16 for dtype fp16;
 * vocab dim concrete); with a past also `present.N.key|value` [batch_size, num_kv_heads,
 * total_sequence_length, head_dim].
 * @throws Error naming `opts.source` for a missing or mis-shaped tensor or a bad option.
 */
export function buildLlamaModel(cfg: LlamaConfig, weights: NamedTensors, opts: ExportLlamaOptions = {}): OnnxTypes.IModelProto {
  const source = opts.source ?? 'weights';
  const o = checkOptions(opts, source);
  checkWeights(cfg, weights, source);
  const spec = IO_SPECS[o.io];
  const lg = new LlamaGraph(cfg, weights, { ...o, io: spec });
  const nodes = lg.build();
  const bl = ['batch_size', 'sequence_length'];
  const kvDims = (len: string) => ['batch_size', cfg.num_key_value_heads, len, headDim(cfg)];
  const perLayer = (prefix: string, len: string) => Array.from({ length: cfg.num_hidden_layers }, (_, i) =>
    (['key', 'value'] as const).map((kind) => valueInfo(`${prefix}.${i}.${kind}`, lg.act, kvDims(len)))).flat();
  const input = [
    valueInfo('input_ids', DT.INT64, bl),
    valueInfo('attention_mask', DT.INT64, ['batch_size', spec.past ? 'total_sequence_length' : 'sequence_length']),
    ...(spec.positions === 'input' ? [valueInfo('position_ids', DT.INT64, bl)] : []),
    ...(spec.past ? perLayer('past_key_values', 'past_sequence_length') : []),
    ...(spec.useCacheBranch ? [valueInfo('use_cache_branch', DT.BOOL, [1])] : []),
  ];
  const output = [valueInfo('logits', lg.act, [...bl, cfg.vocab_size]), ...(spec.past ? perLayer('present', 'total_sequence_length') : [])];
  return {
    irVersion: 8,
    producerName: 'kd',
    opsetImport: [{ domain: '', version: OPSET }, ...(o.dtype === 'int4' ? [{ domain: 'com.microsoft', version: 1 }] : [])],
    graph: { name: 'llama', node: nodes, initializer: lg.g.initializers, input, output },
    ...(opts.tokenizerSha256 ? { metadataProps: [{ key: TOKENIZER_SHA256_KEY, value: opts.tokenizerSha256 }] } : {}),
  };
}

/** {@link buildLlamaModel} serialized to self-contained ONNX bytes. */
export function exportLlamaOnnx(cfg: LlamaConfig, weights: NamedTensors, opts: ExportLlamaOptions = {}): Uint8Array {
  return encodeModel(buildLlamaModel(cfg, weights, opts));
}

/**
 * Writes the export to `path` (atomically; directories created). With `externalData`, weights of
 * ≥ 1 KiB go to `<path>.data` (e.g. model.onnx.data) as ONNX external data; open such a model by
 * path, not from bytes. Without it, weights over protobuf's 2 GiB are refused before anything is written.
 * @returns bytes of the .onnx file and of the data file (0 without external data)
 */
export function writeLlamaOnnx(path: string, cfg: LlamaConfig, weights: NamedTensors,
  opts: ExportLlamaOptions & { externalData?: boolean } = {}): { modelBytes: number; dataBytes: number } {
  if (!opts.externalData) checkSelfContainedSize(path, exportWeightBytes(weights, opts.dtype ?? 'fp32'));
  const model = buildLlamaModel(cfg, weights, opts);
  if (!opts.externalData) checkSelfContainedSize(path, initializerBytes(model));
  mkdirSync(dirname(path), { recursive: true });
  if (opts.externalData) return writeOnnxExternal(path, model);
  writeOnnx(path, encodeModel(model));
  return { modelBytes: statSync(path).size, dataBytes: 0 };
}
