/**
 * ONNX external data (onnx.proto `TensorProto.data_location = EXTERNAL`): large initializers live
 * in a side file, each entry naming `location` (relative to the model file), `offset` and
 * `length`. This is how models above protobuf's 2 GiB limit ship, and the layout Optimum and
 * onnxruntime-genai write (`model.onnx.data` / `model.onnx_data`).
 */
import { basename } from 'node:path';
import type { NamedTensors } from '../model/tensors.js';
import { writeDurable } from '../util/fs.js';
import { encodeModel, OnnxTypes, PROTOBUF_LIMIT, writeOnnx } from './proto.js';

/** Initializers smaller than this stay inside the model (onnx.save_model's default size_threshold). */
const SIZE_THRESHOLD = 1024;
/** Tensors of at least ALIGN_THRESHOLD bytes start at a multiple of ALIGN (onnx ≥ 1.16 does the same), so they can be mmapped. */
const ALIGN_THRESHOLD = 1 << 20, ALIGN = 1 << 16;

/** Where each moved initializer's bytes go in the data file. */
interface Placement { raw: Uint8Array; offset: number }

/**
 * Rewrites every initializer of ≥ 1 KiB raw data as an external reference into `location`.
 * @returns the rewritten model, where each moved tensor's bytes go, and the data file's size
 */
function planExternalData(model: OnnxTypes.IModelProto, location: string): { model: OnnxTypes.IModelProto; chunks: Placement[]; size: number } {
  const chunks: Placement[] = [];
  let size = 0;
  const initializer = (model.graph?.initializer ?? []).map((t): OnnxTypes.ITensorProto => {
    const raw = t.rawData;
    if (!raw || raw.length < SIZE_THRESHOLD) return t;
    if (raw.length >= ALIGN_THRESHOLD) size = Math.ceil(size / ALIGN) * ALIGN;
    chunks.push({ raw, offset: size });
    const entries = { location, offset: String(size), length: String(raw.length) };
    size += raw.length;
    return {
      name: t.name, dims: t.dims, dataType: t.dataType, dataLocation: 1,
      externalData: Object.entries(entries).map(([key, value]) => ({ key, value })),
    };
  });
  return { model: { ...model, graph: { ...model.graph, initializer } }, chunks, size };
}

/**
 * Moves every initializer of ≥ 1 KiB raw data into one external data blob, in memory (small
 * models; {@link writeOnnxExternal} streams instead).
 * @param model decoded model; not modified
 * @param location file name recorded in the model (relative to the model's directory)
 * @returns the rewritten model and the bytes of the data file
 */
export function splitExternalData(model: OnnxTypes.IModelProto, location: string): { model: OnnxTypes.IModelProto; data: Uint8Array } {
  const plan = planExternalData(model, location);
  const data = new Uint8Array(plan.size);
  for (const c of plan.chunks) data.set(c.raw, c.offset);
  return { model: plan.model, data };
}

/**
 * Writes `model` to `path` with its large initializers in `<basename(path)>.data` beside it. The
 * data file is streamed (each initializer at its offset, zeros between: any size) and durable,
 * and written before the model, so a model file that exists is loadable.
 * @returns bytes of the model file and of the data file
 * @throws Error `<file>: no space left on device` and the like
 */
export function writeOnnxExternal(path: string, model: OnnxTypes.IModelProto): { modelBytes: number; dataBytes: number } {
  const plan = planExternalData(model, `${basename(path)}.data`);
  const data = writeDurable(`${path}.data`, (file) => {
    let at = 0;
    for (const c of plan.chunks) {
      if (c.offset > at) file.write(new Uint8Array(c.offset - at)); // alignment padding (< 64 KiB)
      file.write(c.raw);
      at = c.offset + c.raw.length;
    }
  });
  const bytes = encodeModel(plan.model);
  writeOnnx(path, bytes);
  return { modelBytes: bytes.length, dataBytes: data.bytes };
}

/**
 * Refuses a self-contained export whose initializers alone exceed protobuf's 2 GiB, before
 * anything is written.
 * @param bytes the initializers' total raw bytes
 * @throws Error `<path>: the weights are N GiB, over protobuf's 2 GiB limit for a self-contained .onnx; use --external-data`
 */
export function checkSelfContainedSize(path: string, bytes: number): void {
  if (bytes <= PROTOBUF_LIMIT) return;
  throw new Error(`${path}: the weights are ${(bytes / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit for a self-contained .onnx; use --external-data (weights in ${basename(path)}.data beside it)`);
}

/** Total raw bytes of a model's initializers. */
export function initializerBytes(model: OnnxTypes.IModelProto): number {
  return (model.graph?.initializer ?? []).reduce((n, t) => n + (t.rawData?.length ?? 0), 0);
}

/**
 * A lower bound of the initializer bytes an export of `weights` at `dtype` makes (fp32 4 bytes a
 * value, fp16 2, int8 one byte and int4 half a byte for the q/k/v/o/gate/up/down projections and 4 for the rest),
 * so a model too large to be self-contained is refused before anything, even its config, is written.
 */
export function exportWeightBytes(weights: NamedTensors, dtype: 'fp32' | 'fp16' | 'int8' | 'int4'): number {
  const quantized = { int8: 1, int4: 0.5 } as Record<string, number>;
  let bytes = 0;
  for (const [name, t] of weights) bytes += t.data.length * (dtype === 'fp16' ? 2 : dtype in quantized && /_proj\.weight$/.test(name) ? quantized[dtype] : 4);
  return bytes;
}
