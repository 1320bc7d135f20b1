/**
 * Long documents are tokenized piece by piece: the tokenizer binding holds ~370 bytes per token of
 * one encode call (a 20 MB line took 3.7 GB), so a document is cut into pieces of bounded size at
 * points where every pre-tokenizer kd meets starts a new pre-token anyway — before a space that
 * follows a non-space and precedes a letter (GPT-2/Llama-3 byte-level regexes: ` ?\p{L}+`;
 * SentencePiece Metaspace: `▁word`). BPE merges never cross a pre-token, so the ids of the pieces,
 * concatenated, are the ids of the whole document. A tokenizer whose normalizer prepends "▁" to
 * every input (Llama-2's `Prepend`) would add one at each piece: each later piece then goes in
 * without its leading space, which that "▁" stands for.
 */

/** Characters per piece; about 40 MB of binding memory each. */
export const PIECE_CHARS = 1 << 17;

const BOUNDARY = /(?<=\S) (?=\p{L})/gu;

/**
 * Cuts `text` into pieces of about `maxChars` (the first boundary at or after it when that comes
 * within another `maxChars`, else the last one before it); a piece with no boundary at all stays whole.
 * @returns the pieces, in order; their concatenation is `text`.
 */
export function splitAtWordBoundaries(text: string, maxChars = PIECE_CHARS): string[] {
  if (text.length <= maxChars) return [text];
  const pieces: string[] = [];
  let start = 0;
  while (text.length - start > maxChars) {
    const after = boundaryAfter(text, start + maxChars);
    const cut = after !== undefined && after < start + 2 * maxChars ? after : boundaryBefore(text, start, start + maxChars) ?? after;
    if (cut === undefined) break;
    pieces.push(text.slice(start, cut));
    start = cut;
  }
  pieces.push(text.slice(start));
  return pieces;
}

function boundaryAfter(text: string, from: number): number | undefined {
  const re = new RegExp(BOUNDARY.source, 'gu');
  re.lastIndex = from;
  const m = re.exec(text);
  return m ? m.index : undefined;
}

/** The last boundary in (start, end), searched backwards in steps so that a long piece costs little. */
function boundaryBefore(text: string, start: number, end: number): number | undefined {
  for (let lo = Math.max(start + 1, end - 4096); ; lo = Math.max(start + 1, lo - 4096)) {
    const re = new RegExp(BOUNDARY.source, 'gu');
    re.lastIndex = lo;
    let last: number | undefined;
    for (let m = re.exec(text); m && m.index < end; m = re.exec(text)) last = m.index;
    if (last !== undefined) return last;
    if (lo === start + 1) return undefined;
  }
}

/** Characters of text per call of the binding's batch encoder (its pieces run in parallel threads). */
export const BATCH_CHARS = 1 << 20;

/**
 * Token ids of each text, encoding long texts in pieces (see splitAtWordBoundaries) and at most
 * ~`batchChars` characters per `encodeBatch` call, so memory stays bounded whatever the lengths.
 * @param encodeBatch the tokenizer's batch encoder (no special tokens added).
 * @param prependsToEveryInput the tokenizer's normalizer prepends "▁" to every input (see the module comment).
 * @returns ids per text, in order (a Uint32Array when the text took several pieces).
 */
export async function encodeInPieces(texts: string[], encodeBatch: (texts: string[]) => Promise<ArrayLike<number>[]>, pieceChars = PIECE_CHARS, batchChars = BATCH_CHARS, prependsToEveryInput = false): Promise<ArrayLike<number>[]> {
  const pieces = texts.map((t) => splitAtWordBoundaries(t, pieceChars).map((p, i) => (i > 0 && prependsToEveryInput ? p.slice(1) : p)));
  const flat = pieces.flat();
  const encoded: ArrayLike<number>[] = [];
  for (let i = 0; i < flat.length;) {
    let j = i, chars = 0;
    while (j < flat.length && (j === i || chars + flat[j].length <= batchChars)) chars += flat[j++].length;
    encoded.push(...await encodeBatch(flat.slice(i, j)));
    i = j;
  }
  let at = 0;
  return pieces.map((p) => {
    const parts = encoded.slice(at, (at += p.length));
    if (parts.length === 1) return parts[0];
    const ids = new Uint32Array(parts.reduce((n, x) => n + x.length, 0));
    let o = 0;
    for (const x of parts) { ids.set(x, o); o += x.length; }
    return ids;
  });
}
