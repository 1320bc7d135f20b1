import { readFileSync } from 'node:fs';
import { decodeHalf, encodeHalf } from '../logits/fp16.js';
import { writeDurable, type DurableResult } from '../util/fs.js';
import { NamedTensors } from './tensors.js';

/*
 * safetensors (https://github.com/huggingface/safetensors): u64 little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * raw little-endian tensor bytes. Values are held as float32 here; F16 and BF16 are converted.
 */

export type SafetensorsDtype = 'F32' | 'F16';

interface HeaderEntry { dtype: string; shape: number[]; data_offsets: [number, number] }

/**
 * Reads a .safetensors file into float32 host tensors.
 * @throws Error naming the file when it is missing, truncated, or holds an unsupported dtype.
 */
export function readSafetensors(path: string): { tensors: NamedTensors; metadata: Record<string, string> } {
  let buf: Buffer;
  try { buf = readFileSync(path); } catch { throw new Error(`${path}: safetensors file not found`); }
  if (buf.length < 8) throw new Error(`${path}: not a safetensors file (too short)`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > buf.length - 8) throw new Error(`${path}: not a safetensors file (header length ${headerLen} exceeds file size)`);
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try { header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')); } catch {
    throw new Error(`${path}: not a safetensors file (header is not JSON)`);
  }
  const base = 8 + headerLen;
  const tensors: NamedTensors = new Map();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as HeaderEntry;
    const [begin, end] = e.data_offsets;
    if (base + end > buf.length) throw new Error(`${path}: truncated (tensor '${name}' ends past the file)`);
    const bytes = buf.subarray(base + begin, base + end);
    tensors.set(name, { shape: e.shape, data: decode(bytes, e.dtype, `${path}: tensor '${name}'`) });
  }
  return { tensors, metadata: (header.__metadata__ as Record<string, string>) ?? {} };
}

function decode(bytes: Buffer, dtype: string, where: string): Float32Array {
  const copy = new Uint8Array(bytes); // aligned copy
  switch (dtype) {
    case 'F32': return new Float32Array(copy.buffer);
    case 'F16': return decodeHalf(new Uint16Array(copy.buffer));
    case 'BF16': {
      const src = new Uint16Array(copy.buffer), out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    default: throw new Error(`${where} has unsupported dtype ${dtype} (supported: F32, F16, BF16)`);
  }
}

/** Bytes of the header (u64 length + JSON, padded so data starts 8-aligned) for `tensors` stored as `dtype`. */
function encodeHeader(tensors: NamedTensors, dtype: SafetensorsDtype, metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const width = dtype === 'F16' ? 2 : 4;
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length * width] };
    offset += t.data.length * width;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // align data to 8 bytes
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json, 'utf8')]);
}

/** A tensor's stored bytes (F16 rounds to nearest even). */
function tensorBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  const out = dtype === 'F16' ? encodeHalf(data) : data;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Serialises tensors (in the map's order) to safetensors bytes.
 * @param dtype storage type for every tensor (F16 rounds to nearest even).
 */
export function encodeSafetensors(tensors: NamedTensors, dtype: SafetensorsDtype = 'F32', metadata: Record<string, string> = {}): Buffer {
  return Buffer.concat([encodeHeader(tensors, dtype, metadata), ...[...tensors.values()].map((t) => tensorBytes(t.data, dtype))]);
}

/**
 * Writes a .safetensors file durably (lib/util/fs.ts: temporary name, every byte written, fsync,
 * rename), streaming one tensor at a time, so no second copy of the whole model is made.
 * @returns the file's size and sha256 (hashed while writing)
 * @throws Error `<path>: no space left on device` and the like; `path` then keeps its previous content
 */
export function writeSafetensors(path: string, tensors: NamedTensors, dtype: SafetensorsDtype = 'F32', metadata: Record<string, string> = {}): DurableResult {
  return writeDurable(path, (file) => {
    file.write(encodeHeader(tensors, dtype, metadata));
    for (const t of tensors.values()) file.write(tensorBytes(t.data, dtype));
  });
}
