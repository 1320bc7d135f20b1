/**
 * Reads facts about an ONNX decoder without loading its weights: IO names and vocabulary size
 * (for the vocab checks of DESIGN §6 and the manifest of §3.2).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describeValueInfo, onnx, OnnxTypes, toNumber } from './proto.js';
import { GRAPH, readVarint, scanFields, viewGraph } from './raw.js';

/** TensorProto fields that hold the data itself; skipped so only name/dims/type get decoded. */
const TENSOR_DATA_FIELDS = new Set([4, 5, 6, 7, 9, 10, 11, 13]);

/** Graph field number in ModelProto. */
const MODEL_GRAPH = 7;

function graphBytes(bytes: Uint8Array): Uint8Array {
  const f = scanFields(bytes).find((x) => x.no === MODEL_GRAPH && x.wire === 2)!;
  return bytes.subarray(f.payload, f.end);
}

/** Name, dims and type of every initializer, without copying or decoding their data. */
function initializerHeaders(g: Uint8Array): Map<string, OnnxTypes.TensorProto> {
  const out = new Map<string, OnnxTypes.TensorProto>();
  for (const f of scanFields(g).filter((x) => x.no === GRAPH.initializer && x.wire === 2)) {
    const t = g.subarray(f.payload, f.end);
    const parts = scanFields(t).filter((x) => !TENSOR_DATA_FIELDS.has(x.no)).map((x) => t.subarray(x.start, x.end));
    const header = onnx.TensorProto.decode(Buffer.concat(parts));
    out.set(header.name, header);
  }
  return out;
}

function nodes(g: Uint8Array): OnnxTypes.NodeProto[] {
  return scanFields(g).filter((x) => x.no === GRAPH.node && x.wire === 2)
    .map((x) => onnx.NodeProto.decode(g.subarray(x.payload, x.end)));
}

/** The top-level graph's nodes, decoded (attributes included; initializers are not). */
export function graphNodesOf(modelBytes: Uint8Array): OnnxTypes.NodeProto[] {
  return nodes(graphBytes(modelBytes));
}

/** Names of every value some node of the top-level graph produces (for finding internal tensors). */
export function producedValuesOf(modelBytes: Uint8Array): Set<string> {
  return new Set(nodes(graphBytes(modelBytes)).flatMap((n) => n.output));
}

/**
 * The hidden size (width of the residual stream) of a decoder model: the columns of the float
 * table gathered by `input_ids`; undefined when there is none (e.g. a quantized embedding).
 */
export function hiddenSizeOf(modelBytes: Uint8Array): number | undefined {
  const g = graphBytes(modelBytes);
  const embed = nodes(g).find((n) => n.opType === 'Gather' && n.input[1] === 'input_ids');
  const table = embed ? initializerHeaders(g).get(embed.input[0]) : undefined;
  return table && table.dims.length === 2 ? toNumber(table.dims[1]) : undefined;
}

/**
 * The vocabulary size (rows of the logits' last axis) of a decoder model: the `logits` output's
 * last dim when it is concrete, else the rows of the table gathered by `input_ids`
 * (Gather, or com.microsoft GatherBlockQuantized for int4 models).
 * @throws Error "<source>: not an ONNX model (…)" or "<source>: cannot determine the vocabulary size (…)".
 */
export function vocabSizeOf(modelBytes: Uint8Array, source = 'model'): number {
  const view = viewGraph(modelBytes, source);
  const logits = view.outputs.find((o) => o.name === 'logits');
  const last = logits ? describeValueInfo(logits).dims.at(-1) : undefined;
  if (typeof last === 'number' && last > 0) return last;
  const g = graphBytes(modelBytes);
  const embed = nodes(g).find((n) => /^Gather(BlockQuantized)?$/.test(n.opType) && n.input[1] === 'input_ids');
  const table = embed ? initializerHeaders(g).get(embed.input[0]) : undefined;
  if (table && table.dims.length === 2) return toNumber(table.dims[0]);
  throw new Error(`${source}: cannot determine the vocabulary size (logits last dim is ${last ?? 'missing'} and no embedding initializer gathers input_ids)`);
}

/** Graph input and output names, in declaration order. */
export function ioNamesOf(modelBytes: Uint8Array, source = 'model'): { inputs: string[]; outputs: string[] } {
  const view = viewGraph(modelBytes, source);
  return { inputs: view.inputs.map((i) => i.name), outputs: view.outputs.map((o) => o.name) };
}

/** TensorProto fields: external_data entries and data_location (1 = EXTERNAL). */
const TENSOR_EXTERNAL_DATA = 13, TENSOR_DATA_LOCATION = 14;

/**
 * Relative paths of the external data files that the top-level graph's initializers reference
 * (e.g. `model.onnx_data`), sorted and without duplicates; [] for a self-contained model.
 */
export function externalDataFiles(modelBytes: Uint8Array, source = 'model'): string[] {
  viewGraph(modelBytes, source); // validates the bytes with a one-line error
  const g = graphBytes(modelBytes);
  const files = new Set<string>();
  for (const f of scanFields(g).filter((x) => x.no === GRAPH.initializer && x.wire === 2)) {
    const t = g.subarray(f.payload, f.end);
    const fields = scanFields(t);
    const loc = fields.find((x) => x.no === TENSOR_DATA_LOCATION);
    if (!loc || readVarint(t, loc.payload)[0] !== 1) continue;
    for (const e of fields.filter((x) => x.no === TENSOR_EXTERNAL_DATA && x.wire === 2)) {
      const entry = onnx.StringStringEntryProto.decode(t.subarray(e.payload, e.end));
      if (entry.key === 'location') files.add(entry.value);
    }
  }
  return [...files].sort();
}

/**
 * Parameters of a model: elements of its initializers of rank ≥ 1 (weights and norms; scalar
 * constants, int64 shapes and RoPE buffers — `inv_freq`, cos/sin caches, which HF does not count
 * as parameters — excluded). A tied embedding stored once counts once. A
 * `com.microsoft.MatMulNBits` weight counts as its N·K logical elements (its packed codes, scales
 * and zero points are not counted again); a DequantizeLinear weight counts its codes, not its
 * scales and zero points.
 */
export function parameterCountOf(modelBytes: Uint8Array, source = 'model'): number {
  viewGraph(modelBytes, source); // validates the bytes
  const g = graphBytes(modelBytes);
  let n = 0;
  const quantized = new Set<string>();
  for (const node of nodes(g).filter((x) => x.opType === 'MatMulNBits')) {
    const a = (name: string) => toNumber(node.attribute.find((x) => x.name === name)?.i);
    n += a('K') * a('N');
    node.input.slice(1, 4).forEach((x) => quantized.add(x));
  }
  for (const node of nodes(g).filter((x) => x.opType === 'DequantizeLinear')) node.input.slice(1, 3).forEach((x) => quantized.add(x));
  for (const t of initializerHeaders(g).values()) {
    if (quantized.has(t.name) || ROPE_BUFFER.test(t.name)) continue;
    if (t.dims.length >= 1 && t.dataType !== onnx.TensorProto.DataType.INT64) n += t.dims.reduce((a, d) => a * toNumber(d), 1);
  }
  return n;
}

/** Initializer names of rotary-embedding buffers (not parameters in HF's count). */
const ROPE_BUFFER = /inv_freq|(cos|sin)_cache/i;

/** HF config keys that bound the positions a decoder accepts, in order of preference. */
const CONTEXT_KEYS = ['max_position_embeddings', 'n_positions', 'max_sequence_length', 'seq_length'] as const;

/** A context length and where it was read. */
export interface ContextLength { limit: number; key: string; file: string }

/** Parses a JSON file beside a model; undefined when absent or broken (the loaders report broken files). */
function readSideJson(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const positiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/**
 * The context length of a model, from the files beside an .onnx (or inside a checkpoint
 * directory): the Hugging Face `config.json` (as Optimum exports it; `max_position_embeddings` or
 * the like) and the onnxruntime-genai `genai_config.json` (`model.context_length`). When both
 * give one, the smaller wins. `search.max_length` of genai_config.json is not used: it is the
 * default generation length (prompt + new tokens, 20 in ORT's reference example), not a limit of
 * the model. ONNX itself records no context length.
 * @returns the limit, its key and the file it came from; undefined when no file names one
 */
export function contextLengthOf(modelPath: string): ContextLength | undefined {
  const dir = existsSync(modelPath) && statSync(modelPath).isDirectory() ? modelPath : dirname(modelPath);
  const found: ContextLength[] = [];
  const hf = readSideJson(join(dir, 'config.json'));
  const key = hf && CONTEXT_KEYS.find((k) => positiveInt(hf[k]));
  if (hf && key) found.push({ limit: hf[key] as number, key, file: join(dir, 'config.json') });
  const genai = readSideJson(join(dir, 'genai_config.json'))?.model as Record<string, unknown> | undefined;
  if (genai && positiveInt(genai.context_length)) found.push({ limit: genai.context_length, key: 'model.context_length', file: join(dir, 'genai_config.json') });
  return found.sort((a, b) => a.limit - b.limit)[0];
}

/**
 * @throws Error "<dir>/config.json: max_position_embeddings 64 is smaller than the windows'
 *   seq_len 128 (<windowsFile>); use a model with a longer context or kd prep --seq-len ≤ 64"
 *   (or "<dir>/genai_config.json: model.context_length 64 …")
 */
export function checkContextLength(modelPath: string, seqLen: number, windowsFile: string): void {
  const ctx = contextLengthOf(modelPath);
  if (ctx && ctx.limit < seqLen) {
    throw new Error(`${ctx.file}: ${ctx.key} ${ctx.limit} is smaller than the windows' seq_len ${seqLen} (${windowsFile}); use a model with a longer context or kd prep --seq-len ≤ ${ctx.limit}`);
  }
}

/** ModelProto field number of metadata_props. */
const MODEL_METADATA = 14;

/** The model's `metadata_props` (key → value), without decoding the graph. */
export function metadataOf(modelBytes: Uint8Array, source = 'model'): Record<string, string> {
  viewGraph(modelBytes, source); // validates the bytes
  const out: Record<string, string> = {};
  for (const f of scanFields(modelBytes).filter((x) => x.no === MODEL_METADATA && x.wire === 2)) {
    const e = onnx.StringStringEntryProto.decode(modelBytes.subarray(f.payload, f.end));
    out[e.key] = e.value;
  }
  return out;
}

/**
 * The last dim of the `logits` output when the graph declares it as a number; undefined when it
 * is symbolic or missing (the real width then shows only when the model runs).
 */
export function declaredLogitsWidth(modelBytes: Uint8Array, source = 'model'): number | undefined {
  const logits = viewGraph(modelBytes, source).outputs.find((o) => o.name === 'logits');
  const last = logits ? describeValueInfo(logits).dims.at(-1) : undefined;
  return typeof last === 'number' && last > 0 ? last : undefined;
}

/**
 * The weight precision of a decoder, for manifests (DESIGN §3.2): 'int4' when a
 * com.microsoft.MatMulNBits node has bits = 4 (or 'int<bits>' for other widths), 'int8' when a
 * matrix weight (rank ≥ 2 initializer) is INT8 (QDQ weights), else 'fp16' when most matrix weights
 * are float16, else 'fp32'.
 */
export function teacherDtypeOf(modelBytes: Uint8Array, source = 'model'): string {
  viewGraph(modelBytes, source); // validates the bytes
  const g = graphBytes(modelBytes);
  const nbits = nodes(g).find((n) => n.opType === 'MatMulNBits');
  if (nbits) return `int${toNumber(nbits.attribute.find((a) => a.name === 'bits')?.i) || 4}`;
  let half = 0, full = 0;
  for (const t of initializerHeaders(g).values()) {
    if (t.dims.length < 2) continue;
    if (t.dataType === onnx.TensorProto.DataType.INT8) return 'int8';
    if (t.dataType === onnx.TensorProto.DataType.FLOAT16) half++;
    else if (t.dataType === onnx.TensorProto.DataType.FLOAT) full++;
  }
  return half > full ? 'fp16' : 'fp32';
}
