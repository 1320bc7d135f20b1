/**
 * Byte spans of a window's tokens and the alignment of two tokenizations of the same text, for
 * cross-tokenizer distillation (lib/train/cross-tokenizer.ts, lib/losses/uld.ts).
 *
 * Unit: UTF-8 bytes of the window's text — the concatenation of the bytes each token stands for
 * (lib/tokenizer/byte-lengths.ts). Not characters: a byte-level BPE token may hold part of a
 * multi-byte character, which no character offset can express, while every token has a whole
 * number of bytes (bits per byte counts the same bytes). Special tokens (EOS, BOS) stand for no
 * text: their span is empty, [o, o), at the offset where they sit between documents.
 *
 * Alignment rule. A position of a tokenization reads token j and predicts token j + 1. A teacher
 * position and a student position are aligned when the tokens they predict start at the same byte
 * of the window's text and are of the same kind (both text, or both EOS, or both BOS): both models
 * have then read exactly the same bytes and are about to predict what follows them, so their
 * next-token distributions describe the same event, over different vocabularies. Positions where
 * only one tokenization has a token boundary are not aligned (they get CE only).
 */

/** Kind of a token: text, or the special token's role. */
export const TOKEN_KIND = { text: 0, eos: 1, bos: 2 } as const;
export type TokenKind = (typeof TOKEN_KIND)[keyof typeof TOKEN_KIND];

/** A tokenization of one window: its tokens in order with their byte spans and kinds. */
export interface SpannedTokens {
  /** [n] token ids. */
  ids: Int32Array;
  /** [n·2] start, end byte offset of each token in the window's text (end exclusive). */
  spans: Uint32Array;
  /** [n] {@link TOKEN_KIND} of each token. */
  kinds: Uint8Array;
}

/** The special tokens of a tokenizer that carry a role in packed windows (DESIGN §3.1). */
export interface SpecialIds {
  eos: number;
  /** null: the tokenizer (or the prep) has no BOS. */
  bos: number | null;
}

/**
 * Start/end byte offsets of each of `ids` in the text they spell: token i covers
 * [Σ_{j<i} len_j, Σ_{j≤i} len_j), special tokens (length 0) an empty span.
 * @param byteLength bytes per id ({@link tokenByteLengths})
 * @returns [ids.length · 2] start/end pairs
 * @throws Error naming the id when it is outside the table
 */
export function byteSpans(ids: ArrayLike<number>, byteLength: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(ids.length * 2);
  let at = 0;
  for (let i = 0; i < ids.length; i++) {
    const n = byteLength[ids[i]];
    if (n === undefined) throw new Error(`token id ${ids[i]} at position ${i} is outside the tokenizer's ${byteLength.length} ids`);
    out[2 * i] = at;
    at += n;
    out[2 * i + 1] = at;
  }
  return out;
}

/**
 * The text bytes of a window and its tokens with their kinds, from the tokens' ids and stored
 * spans. `spans` may cover fewer tokens than `ids` (the shards store the L inputs' spans; the
 * last target follows the last span).
 * @param ids [n] the window's tokens (inputs and then the last target)
 * @param spans [m·2], m ≤ n: stored spans of the first m tokens
 * @param bytes text bytes per id, `special` per id (lib/tokenizer/byte-lengths.ts)
 * @throws Error when a stored span is not that token's byte length at that offset (the spans were
 *   made with another tokenizer), or a special token is neither `specials.eos` nor `.bos`
 */
export function windowText(ids: ArrayLike<number>, spans: ArrayLike<number>, table: { bytes: Uint8Array[]; special: Uint8Array }, specials: SpecialIds): { text: Uint8Array; tokens: SpannedTokens } {
  const n = ids.length, m = spans.length / 2;
  const tokens: SpannedTokens = { ids: Int32Array.from(ids), spans: new Uint32Array(2 * n), kinds: new Uint8Array(n) };
  let total = 0;
  for (let i = 0; i < n; i++) total += table.bytes[ids[i]]?.length ?? 0;
  const text = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const id = ids[i], b = table.bytes[id];
    if (b === undefined) throw new Error(`token id ${id} at position ${i} is outside the tokenizer's ${table.bytes.length} ids`);
    if (i < m && (spans[2 * i] !== at || spans[2 * i + 1] !== at + b.length)) {
      throw new Error(`position ${i}: stored byte span [${spans[2 * i]}, ${spans[2 * i + 1]}) is not token ${id}'s ${b.length} bytes at offset ${at} (spans made with another tokenizer.json?)`);
    }
    tokens.kinds[i] = table.special[id] ? kindOfSpecial(id, specials) : TOKEN_KIND.text;
    text.set(b, at);
    tokens.spans[2 * i] = at;
    at += b.length;
    tokens.spans[2 * i + 1] = at;
  }
  return { text, tokens };
}

function kindOfSpecial(id: number, s: SpecialIds): TokenKind {
  if (id === s.eos) return TOKEN_KIND.eos;
  if (id === s.bos) return TOKEN_KIND.bos;
  throw new Error(`special token id ${id} is neither the EOS (${s.eos}) nor the BOS (${s.bos ?? 'none'}) of the windows: cross-tokenizer alignment cannot map it`);
}

/** A piece of a window for the student to tokenize: text (a byte range) or a special token. */
export type Segment =
  | { kind: typeof TOKEN_KIND.text; start: number; end: number; text: string }
  | { kind: typeof TOKEN_KIND.eos | typeof TOKEN_KIND.bos; at: number };

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Cuts a window into the pieces the student tokenizes separately: maximal runs of text tokens
 * (documents, or the parts of them inside the window) and the special tokens between them. A
 * window of byte-level tokens may start or end inside a multi-byte character: those partial bytes
 * are left out of the text segment (the student never reads them; no position predicting them aligns).
 * @throws Error when a text segment is not valid UTF-8 inside (the corpus was not UTF-8 text)
 */
export function segments(text: Uint8Array, tokens: SpannedTokens): Segment[] {
  const out: Segment[] = [];
  const n = tokens.ids.length;
  for (let i = 0; i < n;) {
    const kind = tokens.kinds[i] as TokenKind;
    if (kind !== TOKEN_KIND.text) {
      out.push({ kind, at: tokens.spans[2 * i] });
      i++;
      continue;
    }
    let j = i;
    while (j < n && tokens.kinds[j] === TOKEN_KIND.text) j++;
    let start = tokens.spans[2 * i], end = tokens.spans[2 * (j - 1) + 1];
    while (start < end && (text[start] & 0xc0) === 0x80) start++; // continuation bytes of a character begun before the window
    end = completeCharactersEnd(text, start, end);
    if (end > start) {
      let s: string;
      try { s = STRICT_UTF8.decode(text.subarray(start, end)); } catch {
        throw new Error(`window text bytes ${start}..${end} are not UTF-8 (cross-tokenizer distillation re-tokenizes the text)`);
      }
      out.push({ kind: TOKEN_KIND.text, start, end, text: s });
    }
    i = j;
  }
  return out;
}

/** `end`, moved back before a multi-byte character that is cut off at `end`. */
function completeCharactersEnd(text: Uint8Array, start: number, end: number): number {
  let lead = end - 1;
  while (lead >= start && lead > end - 4 && (text[lead] & 0xc0) === 0x80) lead--;
  if (lead < start) return end;
  const b = text[lead];
  const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
  return lead + need > end ? lead : end;
}

/**
 * The student's tokens of a window: each text segment's ids (from the student tokenizer, in
 * segment order) with spans counted from the segment's start, and the student's EOS/BOS for the
 * window's (a BOS is dropped when the student has none).
 * @param textIds one id list per text segment, in order
 * @param byteLength the student's bytes per id
 * @throws Error when a segment's ids do not spell exactly its bytes (a tokenizer whose normalizer
 *   changes the text, e.g. one that prepends "▁": alignment needs ids that reproduce the bytes)
 */
export function studentTokens(segs: Segment[], textIds: ArrayLike<number>[], byteLength: ArrayLike<number>, specials: SpecialIds, tokenizer: string): SpannedTokens {
  const ids: number[] = [], spans: number[] = [], kinds: number[] = [];
  let s = 0;
  for (const seg of segs) {
    if (seg.kind !== TOKEN_KIND.text) {
      const id = seg.kind === TOKEN_KIND.eos ? specials.eos : specials.bos;
      if (id === null) continue;
      ids.push(id); spans.push(seg.at, seg.at); kinds.push(seg.kind);
      continue;
    }
    let at = seg.start;
    for (const id of Array.from(textIds[s++])) {
      const n = byteLength[id] ?? 0;
      ids.push(id); spans.push(at, at + n); kinds.push(TOKEN_KIND.text);
      at += n;
    }
    if (at !== seg.end) throw new Error(`${tokenizer}: its ids of ${JSON.stringify(seg.text.slice(0, 40))} spell ${at - seg.start} bytes, the text has ${seg.end - seg.start}: cross-tokenizer alignment needs a tokenizer whose tokens reproduce the text's bytes (e.g. byte-level BPE)`);
  }
  if (s !== textIds.length) throw new Error(`studentTokens: ${textIds.length} id lists for ${s} text segments`);
  return { ids: Int32Array.from(ids), spans: Uint32Array.from(spans), kinds: Uint8Array.from(kinds) };
}

/**
 * Which teacher position each student position aligns with (the rule in the module comment):
 * position j of a tokenization predicts token j + 1, keyed by (its start byte, its kind).
 * @param teacherLive whether teacher position t has a target (unaligned otherwise)
 * @param positions student positions to align (the window's length; at most student tokens − 1)
 * @returns [positions] teacher position per student position, −1 = not aligned
 */
export function alignPositions(teacher: SpannedTokens, student: SpannedTokens, positions: number, teacherLive: (t: number) => boolean = () => true): Int32Array {
  const key = (tok: SpannedTokens, next: number) => tok.spans[2 * next] * 4 + tok.kinds[next];
  const at = new Map<number, number>();
  for (let t = 0; t + 1 < teacher.ids.length; t++) {
    const k = key(teacher, t + 1);
    if (teacherLive(t) && !at.has(k)) at.set(k, t);
  }
  const out = new Int32Array(positions).fill(-1);
  for (let j = 0; j < positions && j + 1 < student.ids.length; j++) out[j] = at.get(key(student, j + 1)) ?? -1;
  return out;
}
