/**
 * ONNX protobuf access: the generated `onnx-proto` classes (ONNX 1.10 schema), builders for
 * tensors / value infos / attributes, and atomic model file I/O.
 */
import { readFileSync, statSync } from 'node:fs';
import { withPath } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

/** The generated ONNX message classes (`onnx.ModelProto`, `onnx.GraphProto`, ...). */
export const onnx = onnxProto.onnx;
export type { OnnxTypes };

/** ONNX `TensorProto.DataType` codes used in this project. */
export const DT = {
  FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11,
} as const;

// Raw tensor bytes are written as the host lays them out; ONNX requires little-endian.
if (endianness() !== 'LE') throw new Error('lib/onnx/proto.ts: big-endian hosts are not supported');

/** protobufjs decodes int64 fields as `Long` when the `long` package is present. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A float32 initializer with the given dims (row-major `data`, length = product of dims). */
export function floatTensor(name: string, dims: number[], data: Float32Array): OnnxTypes.ITensorProto {
  return { name, dims, dataType: DT.FLOAT, rawData: bytesOf(data) };
}

/** An fp16 initializer from IEEE binary16 bit patterns (see `lib/logits/fp16.ts`). */
export function halfTensor(name: string, dims: number[], bits: Uint16Array): OnnxTypes.ITensorProto {
  return { name, dims, dataType: DT.FLOAT16, rawData: bytesOf(bits) };
}

/** A uint8 initializer (e.g. packed 4-bit weights). */
export function uint8Tensor(name: string, dims: number[], data: Uint8Array): OnnxTypes.ITensorProto {
  return { name, dims, dataType: DT.UINT8, rawData: data };
}

/** An int8 initializer (e.g. per-channel 8-bit weight codes). */
export function int8Tensor(name: string, dims: number[], data: Int8Array): OnnxTypes.ITensorProto {
  return { name, dims, dataType: DT.INT8, rawData: bytesOf(data) };
}

/** An int64 initializer; `dims` defaults to [values.length] (pass [] for a scalar). */
export function int64Tensor(name: string, values: number[], dims = [values.length]): OnnxTypes.ITensorProto {
  return { name, dims, dataType: DT.INT64, rawData: bytesOf(BigInt64Array.from(values.map(BigInt))) };
}

/** A graph input/output declaration; string dims are symbolic (e.g. 'batch_size'). */
export function valueInfo(name: string, elemType: number, dims: (number | string)[]): OnnxTypes.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

/** Element type and dims (numbers, symbolic names, or '?' when unknown) of a value info. */
export function describeValueInfo(vi: OnnxTypes.IValueInfoProto): { elemType: number; dims: (number | string)[] } {
  const tt = vi.type?.tensorType;
  const dims = (tt?.shape?.dim ?? []).map((d) =>
    d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? toNumber(d.dimValue) : '?');
  return { elemType: tt?.elemType ?? 0, dims };
}

/** Attribute builders (ONNX `AttributeProto` with its type tag set). */
export const attr = {
  int: (name: string, i: number): OnnxTypes.IAttributeProto => ({ name, type: 2, i }),
  float: (name: string, f: number): OnnxTypes.IAttributeProto => ({ name, type: 1, f }),
  ints: (name: string, ints: number[]): OnnxTypes.IAttributeProto => ({ name, type: 7, ints }),
  tensor: (name: string, t: OnnxTypes.ITensorProto): OnnxTypes.IAttributeProto => ({ name, type: 4, t }),
};

/** Serializes a model to protobuf bytes. */
export function encodeModel(model: OnnxTypes.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Parses ONNX model bytes.
 * @throws Error "<source>: not an ONNX model (…)" when the bytes are not a ModelProto with a graph.
 */
export function decodeModel(bytes: Uint8Array, source = 'model'): OnnxTypes.ModelProto {
  let model: OnnxTypes.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new Error(`${source}: not an ONNX model (${(e as Error).message})`);
  }
  if (!model.graph) throw new Error(`${source}: not an ONNX model (no graph)`);
  return model;
}

/** protobuf's limit on one message: a self-contained .onnx cannot be larger. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * Reads a model file's bytes.
 * @throws Error "<path>: ONNX file not found" (ENOENT only; other I/O errors say what they are);
 *   "<path>: … over protobuf's 2 GiB limit …" for a file no ModelProto can be (its weights belong
 *   in external data).
 */
export function readOnnx(path: string): Uint8Array {
  let size: number;
  try { size = statSync(path).size; } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${path}: ONNX file not found`);
    throw withPath(e, path);
  }
  if (size > PROTOBUF_LIMIT) {
    throw new Error(`${path}: ${(size / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit for a self-contained .onnx; export it with its weights as external data (a .onnx_data/.onnx.data file beside it: optimum does, or onnx.save_model(m, path, save_as_external_data=True))`);
  }
  try { return readFileSync(path); } catch (e) { throw withPath(e, path); }
}

/**
 * Writes model bytes durably (lib/util/fs.ts), so a crash or a full disk never leaves a truncated
 * file under the final name. @throws Error `<path>: no space left on device` and the like
 */
export function writeOnnx(path: string, bytes: Uint8Array): void {
  writeFileAtomic(path, bytes);
}
