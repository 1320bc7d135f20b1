import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { decodeHalf, encodeHalf } from '../logits/fp16.js';
import { withPath } from '../util/errors.js';
import { DurableFile, writeDurable, type DurableResult } from '../util/fs.js';
import { HostTensor, NamedTensors } from './tensors.js';

/*
 * safetensors (https://github.com/huggingface/safetensors): u64 little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * raw little-endian tensor bytes, contiguous. Values are held as float32 here; F16 and BF16 are
 * converted. Files are read tensor by tensor at their offsets and written tensor by tensor, so
 * their size is not limited by Node's 2 GiB file read or 4 GiB Buffer.
 */

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';
export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16'];
const WIDTH: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** safetensors' own limit on the JSON header (MAX_HEADER_SIZE in the Rust crate). */
const MAX_HEADER = 100_000_000;
/** Positional reads and conversions go in pieces of this many bytes (readSync takes < 2 GiB). */
const PIECE = 1 << 26;

/** One tensor of a file: its dtype, shape and absolute byte range [begin, end) in the file. */
export interface TensorEntry { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }

/** Throws the one-line error for a failed open/read: "not found" only for ENOENT. */
function ioError(e: unknown, path: string): never {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${path}: safetensors file not found`);
  throw withPath(e, path);
}

/** Fills `dst` from `fd` at `position`, looping over short reads. @throws Error naming `path` on EOF or an I/O error */
function readAt(fd: number, dst: Uint8Array, position: number, path: string): void {
  for (let off = 0; off < dst.length;) {
    let n: number;
    try { n = readSync(fd, dst, off, Math.min(PIECE, dst.length - off), position + off); } catch (e) { ioError(e, path); }
    if (n === 0) throw new Error(`${path}: truncated (ends at byte ${position + off}, needed ${position + dst.length})`);
    off += n;
  }
}

/**
 * An open .safetensors file: its validated header, and tensors read on demand by positional reads.
 * Call `close()` when done (`readSafetensors` does it for you).
 */
export class SafetensorsFile {
  readonly entries: TensorEntry[];
  readonly metadata: Record<string, string>;
  readonly size: number;
  private fd: number | undefined;

  /**
   * Opens `path` and validates its header: sane length, JSON object, known dtypes, shape × width =
   * byte length, offsets inside the file and contiguous.
   * @throws Error `<path>: safetensors file not found` (ENOENT only), `<path>: permission denied…`,
   *   `<path>: is a directory…`, `<path>: not a safetensors file (…)`, `<path>: truncated (…)`
   */
  constructor(readonly path: string) {
    try { this.fd = openSync(path, 'r'); } catch (e) { ioError(e, path); }
    try {
      const st = fstatSync(this.fd);
      if (st.isDirectory()) throw Object.assign(new Error('EISDIR: illegal operation on a directory, read'), { code: 'EISDIR', syscall: 'read' });
      this.size = st.size;
      const { entries, metadata } = parseHeader(this.fd, path, st.size);
      this.entries = entries;
      this.metadata = metadata;
    } catch (e) {
      this.close();
      throw withPath(e, path);
    }
  }

  /** The stored bytes of `entry` (as in the file, little-endian). */
  raw(entry: TensorEntry): Uint8Array {
    const out = new Uint8Array(entry.end - entry.begin); // own ArrayBuffer: aligned for typed views
    readAt(this.fd!, out, entry.begin, this.path);
    return out;
  }

  /** `entry` decoded to float32. */
  tensor(entry: TensorEntry): HostTensor {
    const bytes = this.raw(entry);
    return { shape: entry.shape, data: decode(bytes, entry.dtype) };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Reads and validates the header at the start of `fd`. @throws Error (message without the path) */
function parseHeader(fd: number, path: string, size: number): { entries: TensorEntry[]; metadata: Record<string, string> } {
  const bad = (why: string) => new Error(`${path}: not a safetensors file (${why})`);
  if (size < 8) throw bad(`${size} bytes, shorter than the 8-byte header length`);
  const head = Buffer.alloc(8);
  readAt(fd, head, 0, path);
  const headerLen = Number(head.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER) throw bad(`header length ${headerLen} exceeds safetensors' limit of ${MAX_HEADER}`);
  if (headerLen > size - 8) throw bad(`header length ${headerLen} exceeds the file size ${size}`);
  const text = Buffer.alloc(headerLen);
  readAt(fd, text, 8, path);
  let header: unknown;
  try { header = JSON.parse(text.toString('utf8')); } catch { throw bad('header is not JSON'); }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object');
  const base = 8 + headerLen;
  const entries: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name !== '__metadata__') entries.push(checkEntry(name, raw, base, size, path));
  }
  checkContiguous(entries, base, size, path);
  return { entries, metadata: ((header as Record<string, unknown>).__metadata__ ?? {}) as Record<string, string> };
}

function checkEntry(name: string, raw: unknown, base: number, size: number, path: string): TensorEntry {
  const where = `${path}: tensor '${name}'`;
  const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e !== 'object' || e === null) throw new Error(`${where}: header entry is not an object`);
  if (typeof e.dtype !== 'string' || !(SAFETENSORS_DTYPES as readonly string[]).includes(e.dtype)) {
    throw new Error(`${where} has unsupported dtype ${String(e.dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
  }
  const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!Array.isArray(e.shape) || !e.shape.every(isCount)) throw new Error(`${where}: shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every(isCount) || off[0] > off[1]) {
    throw new Error(`${where}: data_offsets ${JSON.stringify(off)} is not [begin, end] with 0 ≤ begin ≤ end`);
  }
  const dtype = e.dtype as SafetensorsDtype, shape = e.shape as number[];
  const want = shape.reduce((a, b) => a * b, 1) * WIDTH[dtype];
  if (off[1] - off[0] !== want) throw new Error(`${where}: ${off[1] - off[0]} bytes, but ${dtype} [${shape}] needs ${want}`);
  if (base + off[1] > size) throw new Error(`${path}: truncated (tensor '${name}' ends at byte ${base + off[1]}, the file has ${size})`);
  return { name, dtype, shape, begin: base + off[0], end: base + off[1] };
}

/** Tensors must tile the data section exactly (as the Rust crate requires): sorts `entries` by offset. */
function checkContiguous(entries: TensorEntry[], base: number, size: number, path: string): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = base;
  for (const e of entries) {
    if (e.begin !== at) throw new Error(`${path}: not a safetensors file (tensor '${e.name}' starts at data byte ${e.begin - base}, expected ${at - base}: tensors overlap or leave a gap)`);
    at = e.end;
  }
  if (at !== size) throw new Error(`${path}: not a safetensors file (${size - at} bytes after the last tensor)`);
}

/** Stored bytes → float32 (F16/BF16 widened exactly). */
function decode(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  switch (dtype) {
    case 'F32': return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    case 'F16': return decodeHalf(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
    case 'BF16': {
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
  }
}

/**
 * float32 → bfloat16 bit patterns, round to nearest even. A NaN stays a NaN (its upper 16 bits,
 * with the quiet bit set only when they alone would read as Inf), so every bfloat16 pattern
 * widened to float32 comes back bit for bit.
 */
export function encodeBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length), out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | ((b & 0x7f0000) === 0 ? 0x40 : 0);
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Bytes `data` takes when stored as `dtype`. */
export function storedBytes(data: Float32Array, dtype: SafetensorsDtype): number {
  return data.length * WIDTH[dtype];
}

/** Bytes of the header (u64 length + JSON, padded so data starts 8-aligned) for `tensors` stored as `dtype`. */
function encodeHeader(tensors: NamedTensors, dtype: SafetensorsDtype, metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = storedBytes(t.data, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // align data to 8 bytes
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json, 'utf8')]);
}

/** A piece of a tensor's stored bytes (F16 and BF16 round to nearest even). */
function pieceBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  const out = dtype === 'F16' ? encodeHalf(data) : dtype === 'BF16' ? encodeBf16(data) : data;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Writes one tensor's stored bytes, converting PIECE bytes at a time (no full-size copy). */
function writeTensor(file: DurableFile, data: Float32Array, dtype: SafetensorsDtype): void {
  const step = PIECE / 4;
  for (let i = 0; i < data.length; i += step) file.write(pieceBytes(data.subarray(i, Math.min(data.length, i + step)), dtype));
}

/**
 * Serialises tensors (in the map's order) to safetensors bytes in memory: for small files (tests).
 * @param dtype storage type for every tensor (F16 and BF16 round to nearest even).
 */
export function encodeSafetensors(tensors: NamedTensors, dtype: SafetensorsDtype = 'F32', metadata: Record<string, string> = {}): Buffer {
  return Buffer.concat([encodeHeader(tensors, dtype, metadata), ...[...tensors.values()].map((t) => pieceBytes(t.data, dtype))]);
}

/**
 * Reads a .safetensors file into float32 host tensors, one positional read per tensor (any size).
 * @throws Error naming the file: `safetensors file not found` (ENOENT only), other I/O errors as
 *   what they are (permission denied, is a directory, …), a corrupt header, a truncated file.
 */
export function readSafetensors(path: string): { tensors: NamedTensors; metadata: Record<string, string> } {
  const file = new SafetensorsFile(path);
  try {
    const tensors: NamedTensors = new Map();
    for (const e of file.entries) tensors.set(e.name, file.tensor(e));
    return { tensors, metadata: file.metadata };
  } finally { file.close(); }
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
    for (const t of tensors.values()) writeTensor(file, t.data, dtype);
  });
}
