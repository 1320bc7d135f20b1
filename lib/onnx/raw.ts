/**
 * Lossless protobuf surgery on ONNX model bytes.
 *
 * Decoding a user's model with the ONNX 1.10 classes and encoding it again would drop fields
 * that schema does not know (newer IR versions) and copy every initializer. Instead we walk the
 * top-level fields of ModelProto and its GraphProto, keep their bytes untouched, and append new
 * fields: protobuf parsers merge repeated fields in order, so appended nodes, initializers,
 * inputs and outputs extend the graph.
 */
import { onnx, OnnxTypes } from './proto.js';

/** One top-level protobuf field: its number and the byte range of the whole record. */
export interface RawField {
  no: number;
  wire: number;
  start: number;
  /** Start of the payload of a length-delimited field (wire type 2). */
  payload: number;
  end: number;
}

/** ModelProto field numbers (onnx.proto). */
const MODEL_GRAPH = 7, MODEL_OPSET = 8;
/** GraphProto field numbers (onnx.proto). */
export const GRAPH = { node: 1, initializer: 5, input: 11, output: 12 } as const;

/** Reads a base-128 varint at `pos`; returns its value and the position after it. */
export function readVarint(buf: Uint8Array, pos: number): [value: number, next: number] {
  let value = 0, scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++];
    value += (b & 0x7f) * scale; // multiply, not shift: lengths can exceed 2^31
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new Error('varint too long');
}

/**
 * Lists the top-level fields of a serialized message.
 * @throws Error on truncated data or wire types that ONNX never uses (groups).
 */
export function scanFields(buf: Uint8Array): RawField[] {
  const fields: RawField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [key, p] = readVarint(buf, pos);
    const no = Math.floor(key / 8), wire = key % 8;
    if (no === 0) throw new Error(`invalid field number 0 at byte ${start}`);
    let payload = p, end: number;
    if (wire === 0) end = readVarint(buf, p)[1];
    else if (wire === 1) end = p + 8;
    else if (wire === 5) end = p + 4;
    else if (wire === 2) {
      const [len, q] = readVarint(buf, p);
      payload = q;
      end = q + len;
    } else throw new Error(`unsupported wire type ${wire} at byte ${start}`);
    if (end > buf.length) throw new Error(`field ${no} runs past the end of the data`);
    fields.push({ no, wire, start, payload, end });
    pos = end;
  }
  return fields;
}

function encodeVarint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The parts of a model that graph surgery needs, decoded; everything else stays raw. */
export interface GraphView {
  /** Default-domain ('' or 'ai.onnx') opset version; 0 when not declared. */
  opset: number;
  inputs: OnnxTypes.ValueInfoProto[];
  outputs: OnnxTypes.ValueInfoProto[];
}

/** Additions to a graph; `dropOutputs` removes all existing graph outputs first. */
export interface GraphEdit {
  dropOutputs: boolean;
  nodes: OnnxTypes.INodeProto[];
  initializers: OnnxTypes.ITensorProto[];
  inputs: OnnxTypes.IValueInfoProto[];
  outputs: OnnxTypes.IValueInfoProto[];
}

function splitModel(bytes: Uint8Array, source: string): { fields: RawField[]; graph: RawField } {
  let fields: RawField[];
  try {
    fields = scanFields(bytes);
  } catch (e) {
    throw new Error(`${source}: not an ONNX model (${(e as Error).message})`);
  }
  const graphs = fields.filter((f) => f.no === MODEL_GRAPH && f.wire === 2);
  if (graphs.length !== 1) throw new Error(`${source}: not an ONNX model (${graphs.length} graph fields, expected 1)`);
  return { fields, graph: graphs[0] };
}

/**
 * Decodes the opset, graph inputs and graph outputs of a model without touching its weights.
 * @throws Error "<source>: not an ONNX model (…)" for bytes that are not a ModelProto.
 */
export function viewGraph(bytes: Uint8Array, source: string): GraphView {
  const { fields, graph } = splitModel(bytes, source);
  try {
    let opset = 0;
    for (const f of fields.filter((x) => x.no === MODEL_OPSET && x.wire === 2)) {
      const id = onnx.OperatorSetIdProto.decode(bytes.subarray(f.payload, f.end));
      if (!id.domain || id.domain === 'ai.onnx') opset = Number(id.version);
    }
    const g = bytes.subarray(graph.payload, graph.end);
    const gf = scanFields(g);
    const decode = (no: number) => gf.filter((f) => f.no === no && f.wire === 2)
      .map((f) => onnx.ValueInfoProto.decode(g.subarray(f.payload, f.end)));
    return { opset, inputs: decode(GRAPH.input), outputs: decode(GRAPH.output) };
  } catch (e) {
    throw new Error(`${source}: not an ONNX model (${(e as Error).message})`);
  }
}

/** Applies `edit` to the model's graph and returns new model bytes; all other bytes are copied. */
export function editGraph(bytes: Uint8Array, edit: GraphEdit, source: string): Uint8Array {
  const { fields, graph } = splitModel(bytes, source);
  const g = bytes.subarray(graph.payload, graph.end);
  const kept = scanFields(g).filter((f) => !(edit.dropOutputs && f.no === GRAPH.output));
  const added = onnx.GraphProto.encode({
    node: edit.nodes, initializer: edit.initializers, input: edit.inputs, output: edit.outputs,
  }).finish();
  const graphBody = concatBytes([...kept.map((f) => g.subarray(f.start, f.end)), added]);
  const graphHeader = Uint8Array.from([...encodeVarint(MODEL_GRAPH * 8 + 2), ...encodeVarint(graphBody.length)]);
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    if (f === graph) parts.push(graphHeader, graphBody);
    else parts.push(bytes.subarray(f.start, f.end));
  }
  return concatBytes(parts);
}
