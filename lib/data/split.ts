/**
 * The train/validation split by document, for corpora streamed in one pass: a pure function of
 * (number of documents n, val_fraction, seed) that says for each document index whether it is a
 * validation document, so no document has to be held. The draw is the one kd has always made
 * (a seeded Fisher–Yates shuffle of the indices 0…n−1; the first round(n·f) go to validation), so
 * a corpus splits as it did before streaming; it costs 4 bytes per document while drawn and one
 * bit per document after (a 10 M-document corpus: 40 MB for a moment, then 1.25 MB).
 */
import { mulberry32 } from '../util/random.js';

/** Which documents are validation documents: `has(i)` for document index i (0-based, corpus order). */
export interface SplitMask {
  readonly documents: number;
  readonly validation: number;
  has(i: number): boolean;
}

/**
 * Draws the split of `n` documents: round(n·valFraction) of them (at least 1, at most n − 1) go to validation.
 * @throws Error when n < 2 or valFraction is not in (0, 1).
 */
export function validationMask(n: number, valFraction: number, seed: number): SplitMask {
  if (n < 2) throw new Error(`corpus has ${n} document(s); a train/validation split needs at least 2`);
  if (!(valFraction > 0 && valFraction < 1)) throw new Error(`val_fraction ${valFraction} must be in (0, 1)`);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rand = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  const nVal = Math.min(n - 1, Math.max(1, Math.round(n * valFraction)));
  const bits = new Uint8Array(Math.ceil(n / 8));
  for (let k = 0; k < nVal; k++) bits[order[k] >> 3] |= 1 << (order[k] & 7);
  return { documents: n, validation: nVal, has: (i) => (bits[i >> 3] & (1 << (i & 7))) !== 0 };
}

/**
 * Splits documents held in memory the same way (see {@link validationMask}); both splits keep corpus order.
 * @throws Error when there are fewer than 2 documents or valFraction is not in (0, 1).
 */
export function splitDocuments<T>(docs: T[], valFraction: number, seed: number): { train: T[]; validation: T[] } {
  const mask = validationMask(docs.length, valFraction, seed);
  return { train: docs.filter((_, i) => !mask.has(i)), validation: docs.filter((_, i) => mask.has(i)) };
}

/**
 * A seeded uniform number in [0, 1) for document `i` (a 32-bit integer hash, murmur3's finalizer over
 * seed and index): a pure function, used to draw the tokenizer-training sample document by document.
 */
export function documentUniform(seed: number, i: number): number {
  let h = (Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(seed + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}
