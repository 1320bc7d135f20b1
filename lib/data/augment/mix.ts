/**
 * Weighted corpus mixing (the seed article's §5.3): `--corpus a.jsonl:0.7 --corpus b/:0.3` makes
 * the prepared data a mixture with those shares, by documents or by tokens. Mixing downsamples:
 * every kept document appears once (no repetition), so the mixture is as large as its scarcest
 * corpus allows — corpus i keeps each document with probability q_i = w_i·M / n_i, where n_i is
 * its size (documents or tokens), w_i its normalised weight and M = min_j n_j / w_j (the limiting
 * corpus keeps everything). The draw is a seeded hash of (seed, corpus, document index), so a
 * re-run keeps the same documents; by tokens, the expected share is exact and the realised one
 * is recorded.
 */
import { streamCorpus, type CorpusOptions, type Document } from '../corpus.js';
import { documentUniform } from '../split.js';
import { hashSeed } from '../../util/random.js';

export type MixBy = 'documents' | 'tokens';
export const MIX_BY: MixBy[] = ['documents', 'tokens'];

/** One corpus of a mixture and its weight (not yet normalised). */
export interface CorpusShare { source: string; weight: number }

/** A corpus of the mixture as windows.json `augmentation.mix.corpora` records it. */
export interface MixedCorpus {
  source: string;
  /** Normalised weight w_i (Σ = 1). */
  weight: number;
  /** Keep probability q_i. */
  probability: number;
  documents: number;
  /** Size n_i the shares are computed from (documents or tokens, per `by`). */
  size: number;
  kept_documents: number;
  kept_tokens: number;
}

/** windows.json `augmentation.mix`. */
export interface MixSpec { by: MixBy; seed: number; corpora: MixedCorpus[] }

const SALT = 0x6d697820; // 'mix '

/**
 * Parses `--corpus` values: `source` or `source:weight` (the weight after the last colon, a
 * positive number); a config may also give `{ source, weight }` objects.
 * @throws Error "--corpus 'x:0': weight must be a positive number" and the like.
 */
export function parseCorpusList(value: unknown, flag = '--corpus'): CorpusShare[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new Error(`${flag}: no corpus given`);
  const shares = list.map((v): CorpusShare => {
    if (typeof v === 'object' && v !== null && 'source' in v) {
      const { source, weight } = v as { source: unknown; weight?: unknown };
      if (typeof source !== 'string' || source.length === 0) throw new Error(`${flag}: source must be a path`);
      return { source, weight: checkWeight(weight ?? 1, flag, source) };
    }
    if (typeof v !== 'string' || v.length === 0) throw new Error(`${flag}: must be 'brown', a path, or path:weight`);
    const m = /^(.*):([^:/\\]*)$/.exec(v);
    if (m && m[1].length > 0) return { source: m[1], weight: checkWeight(Number(m[2]), flag, v) };
    return { source: v, weight: 1 };
  });
  const seen = new Set<string>();
  for (const s of shares) {
    if (seen.has(s.source)) throw new Error(`${flag}: corpus '${s.source}' given twice`);
    seen.add(s.source);
  }
  return shares;
}

function checkWeight(w: unknown, flag: string, what: string): number {
  if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) throw new Error(`${flag} '${what}': weight must be a positive number`);
  return w;
}

/**
 * Keep probabilities q_i = w_i·M / n_i with M = min_j n_j / w_j (module comment).
 * @param sizes n_i per corpus (documents or tokens) @returns q_i ∈ (0, 1]
 * @throws Error naming the corpus when it is empty.
 */
export function keepProbabilities(shares: CorpusShare[], sizes: number[]): number[] {
  const total = shares.reduce((s, c) => s + c.weight, 0);
  const w = shares.map((c) => c.weight / total);
  sizes.forEach((n, i) => { if (!(n > 0)) throw new Error(`${shares[i].source}: corpus is empty, cannot take a share of it`); });
  const M = Math.min(...sizes.map((n, i) => n / w[i]));
  return sizes.map((n, i) => Math.min(1, (w[i] * M) / n));
}

/** Whether document `local` (index within its corpus) of corpus `corpus` is kept with probability q. */
export function keepDocument(seed: number, corpus: number, local: number, q: number): boolean {
  return q >= 1 || documentUniform(hashSeed(seed, SALT, corpus), local) < q;
}

/** A document of a concatenation of corpora, with its corpus and its index within that corpus. */
export interface SourcedDocument extends Document { corpus: number; local: number }

/**
 * The documents of `sources` one corpus after another, in each corpus' order; `opts.limit` caps
 * the whole stream (the split's document indices are positions in it). One source: exactly
 * {@link streamCorpus}.
 */
export async function* streamSources(sources: string[], opts: CorpusOptions = {}): AsyncGenerator<SourcedDocument> {
  const limit = opts.limit ?? Infinity;
  let n = 0;
  for (let c = 0; c < sources.length && n < limit; c++) {
    let local = 0;
    for await (const d of streamCorpus(sources[c], { ...opts, limit: limit - n })) {
      yield { ...d, corpus: c, local: local++ };
      n++;
    }
  }
}
