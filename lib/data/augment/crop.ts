/**
 * Random cropping of train documents before packing (the seed article's §5.3, "random cropping /
 * truncation"): a seeded share of documents keeps one contiguous span of its tokens, so the student
 * and — through precompute — the teacher see shorter, differently aligned contexts. A pure function
 * of (seed, document index): a re-run of prep writes identical windows.
 */
import { documentUniform } from '../split.js';
import { hashSeed } from '../../util/random.js';

/** Where a crop starts: anywhere (`random`) or at the document's first token (`head`, truncation). */
export type CropStart = 'random' | 'head';
export const CROP_STARTS: CropStart[] = ['random', 'head'];

/** The crop recorded in windows.json `augmentation.crop`. */
export interface CropSpec {
  /** Probability that a train document is cropped, in [0, 1]. */
  rate: number;
  /** Kept length in tokens, drawn uniformly from [min_tokens, min(max_tokens, document length)]. */
  min_tokens: number;
  max_tokens: number;
  start: CropStart;
  seed: number;
}

/** What prep counts while cropping (recorded beside the spec). */
export interface CropCounts { documents: number; cropped: number; tokens_before: number; tokens_after: number }

/** Stream salt: crop draws are independent of the split and the tokenizer sample drawn from the same seed. */
const SALT = 0x63726f70; // 'crop'

/**
 * The span of document `index` that prep keeps: the whole document unless its draw u < rate and it
 * is longer than `min_tokens`; then a length ℓ ~ U{min_tokens … min(max_tokens, n)} and a start
 * s ~ U{0 … n − ℓ} (`random`) or 0 (`head`).
 * @param n document length in tokens (without BOS/EOS, which the window writer adds)
 * @returns [start, end) token offsets
 */
export function cropSpan(spec: CropSpec, index: number, n: number): [number, number] {
  if (n <= spec.min_tokens || documentUniform(hashSeed(spec.seed, SALT), index) >= spec.rate) return [0, n];
  const hi = Math.min(spec.max_tokens, n);
  const length = spec.min_tokens + Math.floor(documentUniform(hashSeed(spec.seed, SALT, 1), index) * (hi - spec.min_tokens + 1));
  const start = spec.start === 'head' ? 0 : Math.floor(documentUniform(hashSeed(spec.seed, SALT, 2), index) * (n - length + 1));
  return [start, start + length];
}

/** Applies {@link cropSpan} to a document's ids and counts it into `counts`. */
export function cropDocument(spec: CropSpec, index: number, ids: ArrayLike<number>, counts: CropCounts): ArrayLike<number> {
  const [s, e] = cropSpan(spec, index, ids.length);
  counts.documents++;
  counts.tokens_before += ids.length;
  counts.tokens_after += e - s;
  if (s === 0 && e === ids.length) return ids;
  counts.cropped++;
  return Array.prototype.slice.call(ids, s, e) as number[];
}
