/**
 * Byte spans of tokens in a split's text, and the alignment of two tokenizations of that text,
 * for cross-tokenizer distillation (lib/train/cross-tokenizer.ts, lib/losses/uld.ts).
 *
 * Unit: UTF-8 bytes of the split's text, i.e. the bytes each token of the split's stream stands
 * for (lib/tokenizer/byte-lengths.ts), concatenated in stream order from the split's first token.
 * Bytes, not characters: a byte-level BPE token may hold part of a multi-byte character, which no
 * character offset can express, while every token covers a whole number of bytes (and bits per
 * byte counts the same bytes). Special tokens (EOS, BOS) stand for no text: their span is empty,
 * [o, o), at the offset between the documents they separate.
 *
 * Alignment rule. A position reads token j and predicts token j + 1. A teacher position and a
 * student position align when the tokens they predict start at the same byte of the text and are
 * of the same kind (text, EOS or BOS): both models have then read the text up to that byte and
 * predict what follows it, so their next-token distributions describe the same event over
 * different vocabularies. Positions where only one tokenization has a token boundary do not align
 * (they get CE only). (Boizard et al. 2024 align by position index; byte offsets are exact where
 * the boundaries agree, and never pair positions that read different text.)
 */

/** Kind of a token: text, or the special token's role. The values order tokens at one byte as the stream does: EOS, then BOS, then text. */
export const TOKEN_KIND = { eos: 0, bos: 1, text: 2 } as const;
export type TokenKind = (typeof TOKEN_KIND)[keyof typeof TOKEN_KIND];

/** The special tokens that carry a role in packed windows (DESIGN §3.1). */
export interface SpecialIds {
  eos: number;
  /** null: the windows have no BOS. */
  bos: number | null;
}

/** Kind of token `id` ({@link TOKEN_KIND}): EOS and BOS by id, everything else text. */
export function kindOf(id: number, s: SpecialIds): TokenKind {
  return id === s.eos ? TOKEN_KIND.eos : id === s.bos ? TOKEN_KIND.bos : TOKEN_KIND.text;
}

/** Largest offset a span may hold (the `byte_spans` column is uint32 at most). */
export const MAX_SPAN_OFFSET = 0xffffffff;

/**
 * Start/end byte offsets of each of `ids` in the text they spell, from byte `start`: token i covers
 * [start + Σ_{j<i} len_j, start + Σ_{j≤i} len_j); special tokens (length 0) an empty span.
 * @param byteLength bytes per id ({@link tokenByteLengths})
 * @returns [ids.length · 2] start/end pairs
 * @throws Error naming the id when it is outside the table, or when an offset exceeds 2³² − 1
 */
export function byteSpans(ids: ArrayLike<number>, byteLength: ArrayLike<number>, start = 0): Uint32Array {
  const out = new Uint32Array(ids.length * 2);
  let at = start;
  for (let i = 0; i < ids.length; i++) {
    const n = byteLength[ids[i]];
    if (n === undefined) throw new Error(`token id ${ids[i]} at position ${i} is outside the tokenizer's ${byteLength.length} ids`);
    out[2 * i] = at;
    at += n;
    if (at > MAX_SPAN_OFFSET) throw new Error(`byte offset ${at} exceeds ${MAX_SPAN_OFFSET}: byte spans index at most 4 GiB of text per split`);
    out[2 * i + 1] = at;
  }
  return out;
}

/**
 * The byte offset in the split's text at which each packed window starts, for windows packed as a
 * stream (BOS mode none or document: row r = stream[r·L … r·L + L], so row r + 1 starts where
 * row r's L inputs end).
 * @param ids [rows·(L + 1)] the windows, row-major
 * @returns starts [rows] and `end`, the byte where the last window's last target ends (the text
 *   the windows cover is [0, end))
 * @throws Error naming the id when it is outside `byteLength`
 */
export function windowStarts(ids: ArrayLike<number>, rows: number, seqLen: number, byteLength: ArrayLike<number>): { starts: Float64Array; end: number } {
  const starts = new Float64Array(rows), L = seqLen;
  let at = 0;
  const len = (i: number) => {
    const n = byteLength[ids[i]];
    if (n === undefined) throw new Error(`token id ${ids[i]} (window ${Math.floor(i / (L + 1))}) is outside the tokenizer's ${byteLength.length} ids`);
    return n;
  };
  for (let r = 0; r < rows; r++) {
    starts[r] = at;
    for (let t = 0; t < L; t++) at += len(r * (L + 1) + t);
  }
  return { starts, end: rows > 0 ? at + len(rows * (L + 1) - 1) : 0 };
}

/** Sort key of a token that starts at byte `start` and is of kind `kind`: increasing along a stream (no empty documents). */
export function tokenKey(start: number, kind: TokenKind): number {
  return start * 3 + kind;
}

/**
 * Keys ({@link tokenKey}) of the tokens a stored teacher window's positions predict: position t
 * predicts targets[t], which starts where input t ends.
 * @param spans [L·2] the inputs' byte spans (the `byte_spans` column)
 * @param targets [L] the window's next-token ids
 * @returns [L]
 */
export function teacherKeys(spans: ArrayLike<number>, targets: ArrayLike<number>, s: SpecialIds): Float64Array {
  const out = new Float64Array(targets.length);
  for (let t = 0; t < targets.length; t++) out[t] = tokenKey(spans[2 * t + 1], kindOf(targets[t], s));
  return out;
}

/**
 * Which teacher position each student position aligns with (the rule in the module comment).
 * @param teacher [L_t] keys of the tokens the teacher's positions predict ({@link teacherKeys})
 * @param student [L_s] keys of the tokens the student's positions predict
 * @returns [L_s] the teacher position, −1 = not aligned
 */
export function alignPositions(teacher: ArrayLike<number>, student: ArrayLike<number>): Int32Array {
  const at = new Map<number, number>();
  for (let t = 0; t < teacher.length; t++) if (!at.has(teacher[t])) at.set(teacher[t], t);
  const out = new Int32Array(student.length);
  for (let j = 0; j < student.length; j++) out[j] = at.get(student[j]) ?? -1;
  return out;
}
