/**
 * BOS as the tokenizer does it: a tokenizer.json whose post-processor puts a token before every
 * sequence (Llama-2 `<s>`, Llama-3 `<|begin_of_text|>`, in a TemplateProcessing or a Sequence of
 * processors) has a BOS; prep then starts every document with it by default (DESIGN §3.1).
 */
import type { BosMode, BosSpec } from '../data/window-writer.js';
import type { Tokenizer } from './tokenizer.js';

/** Token names tried, in order, for an explicit `--bos document|window` when the post-processor adds none. */
export const BOS_CANDIDATES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];

/** A BOS token: its id and where it was found. */
export interface BosToken { id: number; token: string | null; from: 'post-processor' | 'vocabulary' }

/**
 * The token the post-processor puts before a sequence, found by encoding a probe with and without
 * special tokens (so every post-processor type counts as the binding runs it).
 * @returns undefined when it adds nothing in front
 * @throws Error naming the tokenizer when it adds more than one token in front, or changes the
 *   sequence itself (kd packs one BOS)
 */
export async function postProcessorBos(tok: Tokenizer): Promise<BosToken | undefined> {
  const probe = 'a';
  const plain = await tok.encode(probe), full = await tok.encodeWithSpecialTokens(probe);
  const at = indexOfRun(full, plain);
  if (at < 0) throw new Error(`${tok.path}: the post-processor changes the ids of the text (${JSON.stringify(plain)} → ${JSON.stringify(full)}); kd cannot place its BOS`);
  if (at === 0) return undefined;
  if (at > 1) throw new Error(`${tok.path}: the post-processor puts ${at} tokens before a sequence (${full.slice(0, at).join(', ')}); kd supports one BOS`);
  return { id: full[0], token: tok.idToToken(full[0]), from: 'post-processor' };
}

function indexOfRun(hay: number[], needle: number[]): number {
  for (let i = 0; i + needle.length <= hay.length; i++) {
    if (needle.every((v, j) => hay[i + j] === v)) return i;
  }
  return -1;
}

/**
 * The BOS of a prep: `mode` undefined takes the tokenizer's default (document when its
 * post-processor adds a BOS, else none). An explicit document/window uses the post-processor's
 * BOS, else the first of {@link BOS_CANDIDATES} in the vocabulary.
 * @throws Error "--bos window: <tokenizer> has no BOS token (…)" when there is none to use.
 */
export async function resolveBos(tok: Tokenizer, mode: BosMode | undefined): Promise<BosSpec & { token: string | null; from: BosToken['from'] | null }> {
  const added = await postProcessorBos(tok);
  const m = mode ?? (added ? 'document' : 'none');
  if (m === 'none') return { mode: 'none', id: null, token: null, from: null };
  const found = added ?? vocabularyBos(tok);
  if (!found) throw new Error(`--bos ${m}: ${tok.path} has no BOS token (its post-processor adds none, and none of ${BOS_CANDIDATES.join(', ')} is in its vocabulary)`);
  return { mode: m, id: found.id, token: found.token, from: found.from };
}

function vocabularyBos(tok: Tokenizer): BosToken | undefined {
  for (const token of BOS_CANDIDATES) {
    const id = tok.tokenToId(token);
    if (id !== undefined) return { id, token, from: 'vocabulary' };
  }
  return undefined;
}
