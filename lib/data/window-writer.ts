/**
 * Writes one split's windows as documents arrive (lib/data/windows.ts describes the files): token
 * ids go through a small buffer to `<split>.bin.tmp` (and `<split>.stream.bin.tmp`), hashed as
 * they are written, and are renamed only by `commit`. Memory: one window plus a 1 MiB buffer per
 * file, and the document list of a split whose unpacked stream is written (validation).
 *
 * BOS modes (DESIGN §3.1), with EOS after every document in all of them:
 * - `none` — stream `doc₁ EOS doc₂ EOS …`; row r = stream[r·L … r·L + L] (L + 1 ids, stride L,
 *   consecutive rows share one token).
 * - `document` — as the tokenizer's post-processor does it: stream `BOS doc₁ EOS BOS doc₂ EOS …`,
 *   packed as `none`. The BOS is part of the text: the target after an EOS is the next BOS.
 * - `window` — stream as `none`; row r = [BOS, stream[r·L … r·L + L − 1]]: every window's first
 *   input is BOS, followed by L real tokens, so its targets are exactly those L tokens (the
 *   inserted BOS is never a target) and every stream token is a target exactly once.
 */
import { join } from 'node:path';
import { DurableFile, writeFileAtomic } from '../util/fs.js';
import type { SplitMeta } from './windows.js';

export type BosMode = 'document' | 'window' | 'none';
export const BOS_MODES: BosMode[] = ['document', 'window', 'none'];

/** How BOS is placed (see the module comment) and its id (null for `none`). */
export interface BosSpec { mode: BosMode; id: number | null }

export type TokenDtype = 'uint16' | 'uint32';

/** What a committed split adds to windows.json: its SplitMeta entry. */
export type WrittenSplit = SplitMeta;

export interface SplitWriterOptions {
  dir: string;
  split: string;
  seqLen: number;
  dtype: TokenDtype;
  vocabSize: number;
  eosId: number;
  bos: BosSpec;
  /** Also write the unpacked stream and its document list (`<split>.stream.bin`, `<split>.docs.json`). */
  stream: boolean;
}

/** Ids per output buffer (1 MiB of uint32). */
const BUFFER_IDS = 1 << 18;

/** Buffered, hashed writing of token ids to one durable file. */
class IdFile {
  readonly file: DurableFile;
  private readonly buf: Uint16Array | Uint32Array;
  private n = 0;
  constructor(path: string, dtype: TokenDtype, minIds: number) {
    const size = Math.max(BUFFER_IDS, minIds);
    this.buf = dtype === 'uint16' ? new Uint16Array(size) : new Uint32Array(size);
    this.file = new DurableFile(path);
  }
  push(id: number): void {
    this.buf[this.n++] = id;
    if (this.n === this.buf.length) this.flush();
  }
  flush(): void {
    if (this.n > 0) this.file.write(new Uint8Array(this.buf.buffer, 0, this.n * this.buf.BYTES_PER_ELEMENT));
    this.n = 0;
  }
}

/** One split being written; `addDocument` for each document in order, then `commit` (or `abort`). */
export class SplitWriter {
  private readonly rowsOut: IdFile;
  private readonly streamOut: IdFile | undefined;
  private readonly pending: Uint32Array; // stream tokens not yet in a row
  private np = 0;
  private readonly docs: { id: string; offset: number; tokens: number; bytes: number }[] = [];
  rows = 0;
  documents = 0;
  tokens = 0;
  bytes = 0;

  /** @throws Error naming the file when a temporary file cannot be created; when the BOS mode needs an id and has none. */
  constructor(private readonly o: SplitWriterOptions) {
    if (o.bos.mode !== 'none' && o.bos.id === null) throw new Error(`${o.dir}: --bos ${o.bos.mode} needs a BOS id`);
    const L = o.seqLen;
    this.pending = new Uint32Array(o.bos.mode === 'window' ? L : L + 1);
    this.rowsOut = new IdFile(join(o.dir, `${o.split}.bin`), o.dtype, L + 1);
    try {
      this.streamOut = o.stream ? new IdFile(join(o.dir, `${o.split}.stream.bin`), o.dtype, 1) : undefined;
    } catch (e) {
      this.rowsOut.file.abort();
      throw e;
    }
  }

  /**
   * Appends a document: [BOS] ids EOS to the stream, windows as they fill.
   * @param bytes UTF-8 bytes of its text (for bits per byte).
   * @throws Error naming the split when an id is ≥ vocab_size.
   */
  addDocument(id: string, ids: ArrayLike<number>, bytes: number): void {
    const start = this.tokens;
    if (this.o.bos.mode === 'document') this.push(this.o.bos.id!);
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] >= this.o.vocabSize) throw new Error(`${this.o.dir}: ${this.o.split} split has token id ${ids[i]} ≥ vocab_size ${this.o.vocabSize}`);
      this.push(ids[i]);
    }
    if (this.streamOut) this.docs.push({ id, offset: start, tokens: this.tokens - start, bytes });
    this.push(this.o.eosId);
    this.documents++;
    this.bytes += bytes;
  }

  private push(token: number): void {
    this.tokens++;
    this.streamOut?.push(token);
    const p = this.pending;
    p[this.np++] = token;
    if (this.np < p.length) return;
    if (this.o.bos.mode === 'window') {
      this.rowsOut.push(this.o.bos.id!);
      for (let j = 0; j < p.length; j++) this.rowsOut.push(p[j]);
      this.np = 0;
    } else {
      for (let j = 0; j < p.length; j++) this.rowsOut.push(p[j]);
      p[0] = p[p.length - 1]; // consecutive windows share one token
      this.np = 1;
    }
    this.rows++;
  }

  /** @throws Error when the split holds no complete window. */
  checkNotEmpty(): void {
    if (this.rows > 0) return;
    const what = this.o.bos.mode === 'window' ? `seq_len = ${this.o.seqLen}` : `seq_len + 1 = ${this.o.seqLen + 1}`;
    throw new Error(`${this.o.dir}: ${this.o.split} split too small for one window (${this.tokens} tokens < ${what})`);
  }

  /** Renames the files into place (the partial tail is dropped). @returns the split's windows.json entry */
  commit(): WrittenSplit {
    this.checkNotEmpty();
    this.rowsOut.flush();
    const file = `${this.o.split}.bin`;
    const out: WrittenSplit = { file, rows: this.rows, documents: this.documents, tokens: this.tokens, bytes: this.bytes, sha256: this.rowsOut.file.commit().sha256 };
    if (this.streamOut) {
      this.streamOut.flush();
      const sha256 = this.streamOut.file.commit().sha256;
      const docsFile = `${this.o.split}.docs.json`;
      writeFileAtomic(join(this.o.dir, docsFile), JSON.stringify(this.docs) + '\n');
      out.stream = { file: `${this.o.split}.stream.bin`, docs_file: docsFile, sha256 };
    }
    return out;
  }

  /** Drops the temporary files. */
  abort(): void {
    this.rowsOut.file.abort();
    this.streamOut?.file.abort();
  }
}
