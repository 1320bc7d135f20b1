/**
 * Token-noise injection (the seed article's §5.3): a seeded share r of the train windows' *input*
 * positions is replaced by a random token, uniformly over the vocabulary or by the train split's
 * unigram distribution, while the targets stay the clean next tokens. The noise is a pure function
 * of (seed, window row, position), fixed by prep in windows.json; precompute applies it to the
 * teacher's inputs and stores the noisy `input_ids` in the shards, so the teacher's soft labels are
 * computed on exactly the inputs the student trains on. Validation windows are never noised.
 *
 * Positions whose clean input is a special token (EOS, BOS) are left alone: they mark document
 * boundaries, which the packing relies on. Replacement ids are never special tokens.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashSeed } from '../../util/random.js';
import { sha256, writeFileAtomic } from '../../util/fs.js';

export type NoiseDistribution = 'uniform' | 'unigram';
export const NOISE_DISTRIBUTIONS: NoiseDistribution[] = ['uniform', 'unigram'];

/** The noise recorded in windows.json `augmentation.token_noise`. */
export interface TokenNoiseSpec {
  /** Probability that an input position is replaced, in (0, 1). */
  rate: number;
  distribution: NoiseDistribution;
  seed: number;
  /** Ids never replaced and never drawn (EOS, BOS). */
  protected_ids: number[];
  /** `unigram`: the train split's token counts, float64 [vocab_size] little-endian, in this file. */
  unigram?: { file: string; sha256: string };
  /** Replaced input positions of the train windows, counted by prep (the realised rate = replaced / positions). */
  realized?: { positions: number; replaced: number };
}

const SALT = 0x6e6f6973; // 'nois'
const UNIT = 2 ** -32;

/** The seeded replacement of input tokens of the train windows; see the module comment. */
export class TokenNoise {
  private readonly cdf?: Float64Array; // unigram: cumulative counts of the allowed ids
  private readonly allowed: Int32Array; // ids a replacement may take, ascending
  private readonly special: Set<number>;

  /**
   * @param vocab real vocabulary size V; replacements are ids in [0, V) outside `protected_ids`
   * @param counts `unigram`: token counts [V] of the train split
   * @throws Error when `unigram` counts are missing or no allowed id has a count
   */
  constructor(readonly spec: TokenNoiseSpec, vocab: number, counts?: Float64Array, source = 'token noise') {
    this.special = new Set(spec.protected_ids);
    const ids: number[] = [];
    for (let i = 0; i < vocab; i++) if (!this.special.has(i) && (spec.distribution === 'uniform' || (counts?.[i] ?? 0) > 0)) ids.push(i);
    this.allowed = Int32Array.from(ids);
    if (spec.distribution === 'unigram') {
      if (!counts) throw new Error(`${source}: unigram noise needs the train split's token counts`);
      this.cdf = new Float64Array(ids.length);
      let c = 0;
      ids.forEach((id, j) => { c += counts[id]; this.cdf![j] = c; });
    }
    if (this.allowed.length === 0) throw new Error(`${source}: no token can be drawn as noise`);
  }

  /**
   * Replaces the noised positions of one window's inputs in place.
   * @param row window row in the train split (the seed's second part)
   * @param inputs [L] the window's input ids (row[0:L]); written in place
   * @returns the number of positions replaced
   */
  apply(row: number, inputs: { length: number; [i: number]: number }): number {
    let replaced = 0;
    const s = hashSeed(this.spec.seed, SALT, row);
    for (let t = 0; t < inputs.length; t++) {
      if (hashSeed(s, t) * UNIT >= this.spec.rate || this.special.has(inputs[t])) continue;
      inputs[t] = this.draw(hashSeed(s, t, 1) * UNIT);
      replaced++;
    }
    return replaced;
  }

  /** The replacement for a uniform u ∈ [0, 1): uniform over the allowed ids, or inverse-CDF of the unigram counts. */
  private draw(u: number): number {
    if (!this.cdf) return this.allowed[Math.floor(u * this.allowed.length)];
    const x = u * this.cdf[this.cdf.length - 1];
    let lo = 0, hi = this.cdf.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.cdf[mid] > x) hi = mid; else lo = mid + 1; }
    return this.allowed[lo];
  }
}

/** File name of the unigram counts beside windows.json. */
export const UNIGRAM_FILE = 'train.unigram.f64';

/** Writes token counts [V] as float64 LE (durably) and returns the spec's `unigram` entry. */
export function writeUnigram(dir: string, counts: Float64Array): NonNullable<TokenNoiseSpec['unigram']> {
  const bytes = new Uint8Array(counts.buffer, counts.byteOffset, counts.byteLength);
  writeFileAtomic(join(dir, UNIGRAM_FILE), bytes);
  return { file: UNIGRAM_FILE, sha256: sha256(bytes) };
}

/**
 * The {@link TokenNoise} of a prep directory's spec (unigram counts read and hash-checked).
 * @throws Error naming the counts file when it is missing, of the wrong size or changed since prep.
 */
export function loadTokenNoise(dir: string, spec: TokenNoiseSpec, vocab: number): TokenNoise {
  if (spec.distribution !== 'unigram') return new TokenNoise(spec, vocab, undefined, join(dir, 'windows.json'));
  const path = join(dir, spec.unigram?.file ?? UNIGRAM_FILE);
  if (!existsSync(path)) throw new Error(`${path}: not found (unigram token noise needs it)`);
  const bytes = readFileSync(path);
  if (bytes.length !== vocab * 8) throw new Error(`${path}: ${bytes.length} bytes, expected ${vocab * 8} (float64 × vocab ${vocab})`);
  if (spec.unigram && sha256(bytes) !== spec.unigram.sha256) throw new Error(`${path}: sha256 differs from windows.json (changed after prep?)`);
  const counts = new Float64Array(new Uint8Array(bytes).buffer);
  return new TokenNoise(spec, vocab, counts, path);
}
