/**
 * A Hugging Face `tokenizer.json` loaded through the `tokenizers` Node binding (the HF Rust
 * implementation), so ids match what Python/Rust `tokenizers` and `transformers` produce.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import tokenizers from 'tokenizers';
import type { Tokenizer as HfTokenizer } from 'tokenizers';

/** Token names tried, in order, when no EOS token is named explicitly. */
export const EOS_CANDIDATES = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>'];

/** Documents per `encodeBatch` call of the binding; bounds the memory of one call. */
const BATCH = 64;

/**
 * A loaded tokenizer. Encoding never adds special tokens (no BOS/EOS from a post-processor):
 * document boundaries are the window packer's business (DESIGN §3.1).
 */
export class Tokenizer {
  /** Number of ids the tokenizer can emit: largest id (model vocab or added token) + 1. */
  readonly vocabSize: number;
  /** Id of the end-of-text token, put after every packed document. */
  readonly eosId: number;
  /**
   * Whether the normalizer prepends "▁" to every input (Llama-2's `Prepend`): text encoded in
   * pieces must then drop the space that starts each later piece (see lib/data/chunks.ts).
   */
  readonly prependsToEveryInput: boolean;

  private constructor(
    /** Path of the loaded tokenizer.json. */
    readonly path: string,
    /** sha256 (hex) of the tokenizer.json file bytes. */
    readonly sha256: string,
    private readonly hf: HfTokenizer,
    eosToken: string | undefined,
    json: { normalizer?: unknown },
  ) {
    const ids = Object.values(hf.getVocab(true));
    this.vocabSize = ids.reduce((m, id) => Math.max(m, id), -1) + 1;
    this.eosId = findEos(hf, path, eosToken);
    this.prependsToEveryInput = hasPrepend(json.normalizer);
  }

  /**
   * Loads a tokenizer.json.
   * @param eosToken the EOS token's text (default: the first of `EOS_CANDIDATES` present).
   * @throws Error `"<path>: tokenizer.json not found"`, or naming the file when it does not
   *   parse or has no EOS token.
   */
  static load(path: string, eosToken?: string): Tokenizer {
    if (!existsSync(path)) throw new Error(`${path}: tokenizer.json not found`);
    const bytes = readFileSync(path);
    let hf: HfTokenizer;
    try {
      hf = tokenizers.Tokenizer.fromString(bytes.toString('utf8'));
    } catch (e) {
      throw new Error(`${path}: not a valid tokenizer.json (${firstLine(e)})`);
    }
    return new Tokenizer(path, createHash('sha256').update(bytes).digest('hex'), hf, eosToken, JSON.parse(bytes.toString('utf8')) as { normalizer?: unknown });
  }

  /** Token ids of `text`, without special tokens added. */
  async encode(text: string): Promise<number[]> {
    const enc = await this.hf.encode(text, null, { addSpecialTokens: false });
    return enc.getIds();
  }

  /** Token ids of `text` as the tokenizer's post-processor makes them (BOS/EOS/CLS … added). */
  async encodeWithSpecialTokens(text: string): Promise<number[]> {
    return (await this.hf.encode(text, null, { addSpecialTokens: true })).getIds();
  }

  /** The id of a token string, or undefined when it is not in the vocabulary (added tokens included). */
  tokenToId(token: string): number | undefined {
    return this.hf.tokenToId(token) ?? undefined;
  }

  /** Token ids of each text (the binding encodes a batch in parallel threads). */
  async encodeBatch(texts: string[]): Promise<number[][]> {
    const out: number[][] = [];
    for (let i = 0; i < texts.length; i += BATCH) {
      const encs = await this.hf.encodeBatch(texts.slice(i, i + BATCH), { addSpecialTokens: false });
      for (const enc of encs) out.push(enc.getIds());
    }
    return out;
  }

  /** Text of `ids`; special tokens are kept unless `skipSpecial`. */
  async decode(ids: ArrayLike<number>, skipSpecial = false): Promise<string> {
    return this.hf.decode(Array.from(ids), skipSpecial);
  }

  /** The token string of one id (byte-level form, e.g. `Ġthe`), or null if the id is unused. */
  idToToken(id: number): string | null {
    return this.hf.idToToken(id);
  }
}

/** Whether a normalizer (or one inside a Sequence) is `Prepend`. */
function hasPrepend(n: unknown): boolean {
  if (n === null || typeof n !== 'object') return false;
  const o = n as { type?: string; normalizers?: unknown[] };
  return o.type === 'Prepend' || (Array.isArray(o.normalizers) && o.normalizers.some(hasPrepend));
}

/** JSON text with object keys sorted at every level (whitespace and key order do not matter). */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * Whether two tokenizer.json files define the same tokenizer: the same bytes, or the same JSON
 * content (a copy re-saved with other whitespace or key order). False when either does not parse.
 */
export function sameTokenizerFiles(a: string, b: string): boolean {
  const x = readFileSync(a), y = readFileSync(b);
  if (x.equals(y)) return true;
  try {
    return canonicalJson(JSON.parse(x.toString('utf8'))) === canonicalJson(JSON.parse(y.toString('utf8')));
  } catch {
    return false;
  }
}

/** Loads a tokenizer.json; see `Tokenizer.load`. */
export function loadTokenizer(path: string, eosToken?: string): Tokenizer {
  return Tokenizer.load(path, eosToken);
}

function findEos(hf: HfTokenizer, path: string, eosToken?: string): number {
  const names = eosToken === undefined ? EOS_CANDIDATES : [eosToken];
  for (const name of names) {
    const id = hf.tokenToId(name);
    if (id !== null && id !== undefined) return id;
  }
  throw new Error(`${path}: no EOS token (looked for ${names.join(', ')})`);
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}
