/**
 * Bytes of text per token id, for bits per byte: the UTF-8 bytes a token contributes when the
 * tokenizer decodes a sequence, so that Σ over a document's ids is the document's UTF-8 length.
 * Read from tokenizer.json rather than by decoding ids one at a time, because a byte-level token
 * may hold part of a multi-byte character (decoding it alone gives U+FFFD, 3 bytes).
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

/**
 * Byte length of each id of a tokenizer.json.
 * - ByteLevel decoder (GPT-2, Llama-3, kd's own): each character of the token string is one byte
 *   (GPT-2's byte → character map).
 * - otherwise (SentencePiece-style Metaspace / ByteFallback): `<0xNN>` is one byte, `▁` a space,
 *   any other character its UTF-8 length. (The space a Metaspace decoder strips at the very start
 *   of a text is counted; it is one byte per document at most.)
 * - special added tokens (`<|endoftext|>`, `</s>`) decode to nothing in the scored text: 0 bytes.
 * @returns Uint32Array indexed by id, of length max id + 1 (unused ids 0).
 * @throws Error naming the file when it is not JSON or has no vocabulary.
 */
export function tokenByteLengths(path: string): Uint32Array {
  let json: TokenizerJson;
  try { json = JSON.parse(readFileSync(path, 'utf8')) as TokenizerJson; } catch (e) {
    throw new Error(`${path}: not a tokenizer.json (${(e as Error).message.split('\n')[0]})`);
  }
  const vocab = json.model?.vocab;
  if (!vocab) throw new Error(`${path}: tokenizer.json has no model.vocab`);
  const entries: [string, number][] = Array.isArray(vocab) ? vocab.map(([piece], id) => [piece, id]) : Object.entries(vocab);
  const added = json.added_tokens ?? [];
  const size = Math.max(-1, ...entries.map(([, id]) => id), ...added.map((t) => t.id)) + 1;
  const out = new Uint32Array(size);
  const byteLevel = decoderTypes(json.decoder).includes('ByteLevel');
  const bytesOf = byteLevel ? byteLevelLength(path) : pieceLength;
  for (const [token, id] of entries) out[id] = bytesOf(token);
  for (const t of added) out[t.id] = t.special ? 0 : Buffer.byteLength(t.content);
  return out;
}

/** Byte-level token → its byte count (one per character of GPT-2's alphabet). */
function byteLevelLength(path: string): (token: string) => number {
  const alphabet = new Set(byteAlphabet());
  return (token) => {
    let n = 0;
    for (const ch of token) {
      if (!alphabet.has(ch)) throw new Error(`${path}: token ${JSON.stringify(token)} has a character outside the byte-level alphabet`);
      n++;
    }
    return n;
  };
}

/** SentencePiece-style token → UTF-8 bytes of its text. */
function pieceLength(token: string): number {
  if (/^<0x[0-9A-Fa-f]{2}>$/.test(token)) return 1;
  return Buffer.byteLength(token.replace(/\u2581/g, ' '));
}
