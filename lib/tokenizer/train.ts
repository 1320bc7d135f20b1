/**
 * Byte-level BPE training (GPT-2 style) with the `tokenizers` Node binding.
 *
 * The binding's `Tokenizer.train(files)` takes no trainer options: it always runs the default
 * BpeTrainer (vocab 30000, no special tokens, alphabet = only the bytes seen). BPE training
 * is greedy, so the first n merges of that run are exactly the merges a run stopped at the
 * requested size would make. We therefore train once, keep merges until the vocabulary
 * (256 bytes + specials + merged tokens) reaches the requested size, and rebuild the
 * tokenizer from that JSON.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/fs.js';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tokenizers from 'tokenizers';
import { splitAtWordBoundaries } from '../data/chunks.js';

/** End-of-text token, used as both BOS and EOS. */
export const EOS_TOKEN = '<|endoftext|>';

/** The binding's BpeTrainer stops at 30000 tokens, which bounds the sizes we can produce. */
export const MAX_TRAINED_VOCAB = 30000;

export interface TrainOptions {
  /** Total vocabulary size including the 256 byte tokens and the special tokens. */
  vocabSize?: number;
  /** Special tokens, given ids 256, 257, … (default `[EOS_TOKEN]`). */
  specialTokens?: string[];
}

/** A BPE vocabulary: token → id, and merges in rank order. */
export interface BpeVocab {
  vocab: Record<string, number>;
  merges: [string, string][];
}

/**
 * GPT-2's byte → printable-character map (`bytes_to_unicode`): printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100…U+0143 in byte order. Index = byte value.
 */
export function byteAlphabet(): string[] {
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars.push(String.fromCodePoint(printable ? b : next++));
  }
  return chars;
}

/**
 * Keeps the first merges of a longer BPE run until the vocabulary has `vocabSize` tokens.
 * Ids: byte b → b, specials → 256…, merged tokens densely in merge order. A merge whose
 * result is already a token (two pairs can spell the same string) is kept without a new id,
 * as the trainer does.
 * @param merges all merges of the run, in rank order.
 * @throws Error when the run has too few merges to reach `vocabSize`.
 */
export function truncateMerges(merges: [string, string][], vocabSize: number, specials: string[]): BpeVocab {
  const vocab: Record<string, number> = {};
  let size = 0;
  for (const t of [...byteAlphabet(), ...specials]) vocab[t] = size++;
  if (size > vocabSize) throw new Error(`vocab_size ${vocabSize} is smaller than 256 bytes + ${specials.length} special tokens`);
  const kept: [string, string][] = [];
  for (const [a, b] of merges) {
    if (size >= vocabSize) break;
    if (!(a in vocab) || !(b in vocab)) throw new Error(`BPE merge '${a} ${b}' uses a token not in the vocabulary`);
    kept.push([a, b]);
    if (!((a + b) in vocab)) vocab[a + b] = size++;
  }
  if (size < vocabSize) {
    throw new Error(`corpus too small for vocab_size ${vocabSize}: training produced only ${size} tokens`);
  }
  return { vocab, merges: kept };
}

/** A standard HF tokenizer.json (GPT-2 layout) for a byte-level BPE vocabulary. */
export function tokenizerJson(bpe: BpeVocab, specials: string[]): object {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: bpe.vocab[content], content, single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: bpe.vocab,
      // "a b" strings (byte-level tokens never contain a space) load in every tokenizers
      // version; the newer [a, b] pair form does not load before tokenizers 0.20.
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/**
 * Trainer script run in a child Node process: the binding's trainer writes progress output
 * (blank lines when not a TTY) straight to the process's stdout, which would corrupt `--json`.
 * Arguments: path of the `tokenizers` package, corpus file, output file.
 */
const TRAIN_SCRIPT = `
const [pkg, corpus, out] = process.argv.slice(1);
const tk = require(pkg);
const tok = new tk.Tokenizer(tk.BPE.empty());
tok.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
tok.train([corpus]);
tok.save(out, false);
`;

/**
 * A document as lines of the trainer's corpus file. The trainer reads files line by line keeping
 * "\n", so documents may span lines; a long document is cut into lines at pre-token starts (a
 * 20 MB line took 2.3 GB): the "\n" that ends each piece is a pre-token of its own, with no pair
 * to merge, so the merges are the same.
 */
export function trainingLines(text: string): string {
  return splitAtWordBoundaries(text).join('\n') + '\n';
}

/** Runs the binding's default BpeTrainer over a corpus file (see {@link trainingLines}) and returns its merges in rank order. */
function trainFullMerges(corpus: string): [string, string][] {
  const dir = mkdtempSync(join(tmpdir(), 'kd-bpe-'));
  try {
    const saved = join(dir, 'trained.json');
    const pkg = createRequire(import.meta.url).resolve('tokenizers');
    const child = spawnSync(process.execPath, ['-e', TRAIN_SCRIPT, pkg, corpus, saved], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (child.status !== 0) {
      throw new Error(`BPE training failed (exit ${child.status ?? child.signal}): ${String(child.stderr).trim().split('\n').pop()}`);
    }
    // Parsed from the binding's own output; merges are "a b" strings or [a, b] pairs by version.
    const model = JSON.parse(readFileSync(saved, 'utf8')).model as { merges: (string | [string, string])[] };
    return model.merges.map((m) => (typeof m === 'string' ? splitMerge(m) : m));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function splitMerge(m: string): [string, string] {
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}

/**
 * Trains a byte-level BPE tokenizer of exactly `vocabSize` tokens and writes `outPath`
 * (written to a temporary name and renamed once verified).
 * @param texts training documents.
 * @returns the vocabulary size and number of merges written.
 * @throws Error when vocabSize is out of range, the corpus is too small, or the rebuilt
 *   tokenizer fails to load or to round-trip `texts` (checked on the first 20 documents).
 */
export async function trainTokenizer(texts: string[], outPath: string, opts: TrainOptions = {}): Promise<{ vocabSize: number; merges: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kd-bpe-corpus-'));
  try {
    const corpus = join(dir, 'corpus.txt');
    writeFileSync(corpus, texts.map(trainingLines).join(''));
    return await trainTokenizerFromFile(corpus, outPath, texts.slice(0, 20), opts);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * {@link trainTokenizer} from a corpus file already written as {@link trainingLines} (prep streams
 * its sample there).
 * @param checks documents the rebuilt tokenizer must round-trip (the first piece of each).
 */
export async function trainTokenizerFromFile(corpus: string, outPath: string, checks: string[], opts: TrainOptions = {}): Promise<{ vocabSize: number; merges: number }> {
  const vocabSize = opts.vocabSize ?? 4096;
  const specials = opts.specialTokens ?? [EOS_TOKEN];
  if (!Number.isInteger(vocabSize) || vocabSize > MAX_TRAINED_VOCAB) {
    throw new Error(`vocab_size ${vocabSize} must be an integer ≤ ${MAX_TRAINED_VOCAB} (the tokenizers binding's trainer limit)`);
  }
  const bpe = truncateMerges(trainFullMerges(corpus), vocabSize, specials);
  const json = JSON.stringify(tokenizerJson(bpe, specials));
  await verify(json, vocabSize, checks.map((t) => splitAtWordBoundaries(t)[0]), outPath); // a piece: bounded memory
  writeFileAtomic(outPath, json);
  return { vocabSize, merges: bpe.merges.length };
}

/** Loads the rebuilt JSON in the binding and checks its size and decode(encode(x)) = x. */
async function verify(json: string, vocabSize: number, samples: string[], outPath: string): Promise<void> {
  const tok = tokenizers.Tokenizer.fromString(json);
  const got = tok.getVocabSize(true);
  if (got !== vocabSize) throw new Error(`${outPath}: rebuilt tokenizer has ${got} tokens, expected ${vocabSize}`);
  const probe = 'Byte-level: tabs\t, newlines\n, accents é, CJK 漢字, emoji 🙂, <|endoftext|>.';
  for (const text of [probe, ...samples]) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const back = await tok.decode(enc.getIds(), false);
    if (back !== text) throw new Error(`${outPath}: rebuilt tokenizer does not round-trip ${JSON.stringify(text.slice(0, 40))}`);
  }
}
