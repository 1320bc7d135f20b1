/**
 * ONNX external data (onnx.proto `TensorProto.data_location = EXTERNAL`): large initializers live
 * in a side file, each entry naming `location` (relative to the model file), `offset` and
 * `length`. This is how models above protobuf's 2 GiB limit ship, and the layout Optimum and
 * onnxruntime-genai write (`model.onnx.data` / `model.onnx_data`).
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { encodeModel, OnnxTypes, writeOnnx } from './proto.js';

/** Initializers smaller than this stay inside the model (onnx.save_model's default size_threshold). */
const SIZE_THRESHOLD = 1024;
/** Tensors of at least ALIGN_THRESHOLD bytes start at a multiple of ALIGN (onnx ≥ 1.16 does the same), so they can be mmapped. */
const ALIGN_THRESHOLD = 1 << 20, ALIGN = 1 << 16;

/**
 * Moves every initializer of ≥ 1 KiB raw data into one external data blob.
 * @param model decoded model; not modified
 * @param location file name recorded in the model (relative to the model's directory)
 * @returns the rewritten model and the bytes of the data file
 */
export function splitExternalData(model: OnnxTypes.IModelProto, location: string): { model: OnnxTypes.IModelProto; data: Uint8Array } {
  const chunks: { raw: Uint8Array; offset: number }[] = [];
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
  const data = new Uint8Array(size);
  for (const c of chunks) data.set(c.raw, c.offset);
  return { model: { ...model, graph: { ...model.graph, initializer } }, data };
}

/**
 * Writes `model` to `path` with its large initializers in `<basename(path)>.data` beside it.
 * The data file is written (atomically) before the model, so a model file that exists is loadable.
 * @returns bytes of the model file and of the data file
 */
export function writeOnnxExternal(path: string, model: OnnxTypes.IModelProto): { modelBytes: number; dataBytes: number } {
  const dataName = `${basename(path)}.data`;
  const split = splitExternalData(model, dataName);
  writeOnnx(`${path}.data`, split.data);
  writeOnnx(path, encodeModel(split.model));
  return { modelBytes: statSync(path).size, dataBytes: split.data.length };
}
