/**
 * The UTF-8 bytes of text each token id stands for, read from tokenizer.json rather than by
 * decoding ids one at a time, because a byte-level token may hold part of a multi-byte character
 * (decoding it alone gives U+FFFD, 3 bytes). Bits per byte sums the lengths (Σ over a document's
 * ids = the document's UTF-8 length); cross-tokenizer distillation concatenates the bytes to get
 * a window's text back (lib/tokenizer/align.ts).
 */
import { readFileSync } from 'node:fs';
import { byteAlphabet } from './train.js';

interface TokenizerJson {
  added_tokens?: { id: number; content: string; special?: boolean }[];
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
  model?: { type?: string; vocab?: Record<string, number> | [string, number][] };
}

/** Decoder types of a tokenizer.json, a Sequence flattened. */
function decoderTypes(d: TokenizerJson['decoder']): string[] {
  if (!d) return [];
  return d.type === 'Sequence' ? (d.decoders ?? []).map((x) => x.type ?? '') : [d.type ?? ''];
}

/** The text bytes of every id of a tokenizer, and which ids are special (structural, no text). */
export interface TokenBytes {
  /** Path of the tokenizer.json read. */
  path: string;
  /** UTF-8 bytes of each id, indexed by id (unused ids and special tokens: empty). */
  bytes: Uint8Array[];
  /** 1 for special added tokens (`<|endoftext|>`, `</s>`, `<s>`), else 0; indexed by id. */
  special: Uint8Array;
}

/**
 * Bytes of each id of a tokenizer.json.
 * - ByteLevel decoder (GPT-2, Llama-3, kd's own): each character of the token string is one byte
 *   (GPT-2's byte → character map, inverted).
 * - otherwise (SentencePiece-style Metaspace / ByteFallback): `<0xNN>` is the byte NN, `▁` a space,
 *   any other character its UTF-8 bytes. (The space a Metaspace decoder strips at the very start
 *   of a text is kept; it is one byte per document at most.)
 * - special added tokens (`<|endoftext|>`, `</s>`) decode to nothing in the scored text: no bytes.
 * @throws Error naming the file when it is not JSON or has no vocabulary, or a byte-level token
 *   has a character outside the byte alphabet.
 */
export function tokenBytes(path: string): TokenBytes {
  let json: TokenizerJson;
  try { json = JSON.parse(readFileSync(path, 'utf8')) as TokenizerJson; } catch (e) {
    throw new Error(`${path}: not a tokenizer.json (${(e as Error).message.split('\n')[0]})`);
  }
  const vocab = json.model?.vocab;
  if (!vocab) throw new Error(`${path}: tokenizer.json has no model.vocab`);
  const entries: [string, number][] = Array.isArray(vocab) ? vocab.map(([piece], id) => [piece, id]) : Object.entries(vocab);
  const added = json.added_tokens ?? [];
  const size = Math.max(-1, ...entries.map(([, id]) => id), ...added.map((t) => t.id)) + 1;
  const bytes: Uint8Array[] = Array.from({ length: size }, () => EMPTY);
  const special = new Uint8Array(size);
  const bytesOf = decoderTypes(json.decoder).includes('ByteLevel') ? byteLevelBytes(path) : pieceBytes;
  for (const [token, id] of entries) bytes[id] = bytesOf(token);
  for (const t of added) {
    bytes[t.id] = t.special ? EMPTY : new Uint8Array(Buffer.from(t.content, 'utf8'));
    special[t.id] = t.special ? 1 : 0;
  }
  return { path, bytes, special };
}

/**
 * Byte length of each id of a tokenizer.json ({@link tokenBytes}: special tokens 0).
 * @returns Uint32Array indexed by id, of length max id + 1 (unused ids 0).
 * @throws Error as {@link tokenBytes}.
 */
export function tokenByteLengths(path: string): Uint32Array {
  return Uint32Array.from(tokenBytes(path).bytes, (b) => b.length);
}

const EMPTY = new Uint8Array(0);

/** Byte-level token → its bytes (one per character of GPT-2's alphabet). */
function byteLevelBytes(path: string): (token: string) => Uint8Array {
  const byteOf = new Map(byteAlphabet().map((ch, b) => [ch, b]));
  return (token) => {
    const out: number[] = [];
    for (const ch of token) {
      const b = byteOf.get(ch);
      if (b === undefined) throw new Error(`${path}: token ${JSON.stringify(token)} has a character outside the byte-level alphabet`);
      out.push(b);
    }
    return Uint8Array.from(out);
  };
}

/** SentencePiece-style token → UTF-8 bytes of its text. */
function pieceBytes(token: string): Uint8Array {
  const hex = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
  if (hex) return Uint8Array.of(parseInt(hex[1], 16));
  return new Uint8Array(Buffer.from(token.replace(/\u2581/g, ' '), 'utf8'));
}
