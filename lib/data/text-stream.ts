/**
 * Streamed text files: bytes read in 1 MiB chunks (positional reads, or through zlib for `.gz`),
 * decoded strictly (bytes that are not UTF-8 are refused with the offset of the first bad byte,
 * never turned into U+FFFD) and cut into lines. Memory: one chunk plus the longest line.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { withPath } from '../util/errors.js';

/** How the bytes of a plain-text corpus are read: strict UTF-8 (the default) or ISO-8859-1 (every byte a character). */
export type CorpusEncoding = 'utf-8' | 'latin1';
export const CORPUS_ENCODINGS: CorpusEncoding[] = ['utf-8', 'latin1'];

/** Bytes read per chunk. */
const CHUNK_BYTES = 1 << 20;

/** The bytes of a file in chunks; `.gz` files are decompressed (offsets are then of the decompressed bytes). */
export async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  if (path.endsWith('.gz')) {
    const gunzip = createReadStream(path, { highWaterMark: CHUNK_BYTES }).pipe(createGunzip({ chunkSize: 256 << 10 }));
    try {
      for await (const chunk of gunzip) yield chunk as Buffer;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code?.startsWith('Z_')) throw new Error(`${path}: not a valid gzip file (${err.message})`);
      throw withPath(e, path);
    }
    return;
  }
  let fh;
  try { fh = await open(path, 'r'); } catch (e) { throw withPath(e, path); }
  try {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let offset = 0; ;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK_BYTES, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      yield buf.subarray(0, bytesRead); // the consumer decodes it before the next read
    }
  } finally { await fh.close(); }
}

/**
 * Decodes chunks of bytes into text pieces, strictly.
 * @throws Error `<path>: not UTF-8 text: byte 0xe9 at byte offset 1234 (…)` at the first invalid sequence.
 */
export async function* decodeChunks(chunks: AsyncIterable<Uint8Array>, path: string, encoding: CorpusEncoding): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  let tail = new Uint8Array(0); // last bytes of the previous chunk: an unfinished sequence starts there
  for await (const chunk of chunks) {
    if (encoding === 'latin1') {
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
      continue;
    }
    let text: string;
    try { text = decoder.decode(chunk, { stream: true }); } catch {
      throw new Error(notUtf8(path, firstInvalid(concat(tail, chunk), offset - tail.length, tail.length)));
    }
    offset += chunk.length;
    tail = concat(tail, chunk).slice(-4);
    if (text.length > 0) yield text;
  }
  if (encoding === 'latin1') return;
  try { decoder.decode(); } catch {
    throw new Error(notUtf8(path, firstInvalid(tail, offset - tail.length, tail.length)));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The one-line refusal of a non-UTF-8 file. */
function notUtf8(path: string, at: { offset: number; byte: number | undefined }): string {
  const what = at.byte === undefined ? 'a UTF-8 sequence cut off at the end of the file' : `byte 0x${at.byte.toString(16).padStart(2, '0')}`;
  return `${path}: not UTF-8 text: ${what} at byte offset ${at.offset} (a binary file, or Latin-1 text: give --encoding latin1)`;
}

/**
 * Offset (file offset = `base` + index) and value of the first byte of the first invalid UTF-8
 * sequence in `bytes`, per the WHATWG decoder (overlong forms, surrogates and code points > U+10FFFF
 * are errors). `bytes` starts with `tailLength` bytes of text already decoded: continuation bytes
 * at its start belong to a sequence that began earlier and are skipped.
 */
function firstInvalid(bytes: Uint8Array, base: number, tailLength: number): { offset: number; byte: number | undefined } {
  let i = 0;
  while (i < tailLength && (bytes[i] & 0xc0) === 0x80) i++;
  while (i < bytes.length) {
    const b = bytes[i];
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len === 0) return { offset: base + i, byte: b };
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80, hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      if (c === undefined) return { offset: base + i, byte: undefined };
      if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return { offset: base + i, byte: b }; // the sequence's first byte
    }
    i += len;
  }
  return { offset: base + bytes.length, byte: undefined };
}

/** The whole text of a file (one document of a directory corpus), decoded strictly. */
export async function readText(path: string, encoding: CorpusEncoding): Promise<string> {
  const parts: string[] = [];
  for await (const t of decodeChunks(fileChunks(path), path, encoding)) parts.push(t);
  return parts.join('');
}

/**
 * The lines of a file with their 1-based numbers (for ids and error messages), "\n" removed;
 * a final line without "\n" counts. Only one line is held at a time.
 */
export async function* fileLines(path: string, encoding: CorpusEncoding): AsyncGenerator<[number, string]> {
  let n = 0;
  let partial: string[] = []; // pieces of the line not yet ended by "\n"
  for await (const text of decodeChunks(fileChunks(path), path, encoding)) {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      partial.push(text.slice(start, nl));
      yield [++n, partial.join('')];
      partial = [];
      start = nl + 1;
    }
    if (start < text.length) partial.push(text.slice(start));
  }
  if (partial.length > 0) yield [++n, partial.join('')];
}
