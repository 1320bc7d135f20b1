/**
 * Training data for a student whose tokenizer differs from the teacher's, from a logit dataset
 * precomputed with `--spans` (manifest `spans`; lib/tokenizer/align.ts defines spans and alignment).
 *
 * Pairing. Both preps cut the same train text (same corpus, split and document order) into their
 * own token streams. A teacher window (a dataset row) starts at byte G of that text, its first
 * span. Its student window is the student prep's train stream from the first student token that
 * starts at or after G: L_s inputs and their L_s next tokens (moved back at the end of the
 * stream). The student trains on its own tokenization — CE at every position — and each student
 * position whose predicted token starts at the byte, and is of the kind, that a teacher position's
 * does gets that teacher position's soft labels (`Batch.align`).
 *
 * Refused text: up front when the student prep's windows.json has another train split than the
 * one the dataset recorded (documents, bytes), augments the text (crop, token noise) or puts a BOS
 * at every window; and for every window, byte for byte over the text the two windows share (the
 * teacher's bytes from the tokenizer.json the dataset carries), so that no position is ever paired
 * with a teacher position that read other text.
 */
import { join } from 'node:path';
import { openWindowFile, readWindowsMeta, type WindowFile, type WindowsMeta } from '../data/windows.js';
import { sha256File, SPAN_TOKENIZER_FILE, type LogitManifest, type SpanInfo } from '../shards/index.js';
import { alignPositions, kindOf, teacherKeys, tokenKey, type SpecialIds } from '../tokenizer/align.js';
import { tokenBytes, type TokenBytes } from '../tokenizer/byte-lengths.js';
import type { Batch } from './batch.js';
import type { TrainingData } from './data.js';

/** Rows of train.bin read at a time while indexing the stream. */
const INDEX_BLOCK = 4096;

/**
 * A prep's train split as one token stream (row r = stream[r·L … r·L + L]) with the byte offset of
 * every row's first token, for positional reads by byte: memory 8 bytes per window.
 */
export class TrainStream {
  /** [rows + 1]: byte offset in the train text of stream token r·L; the last entry is token rows·L's. */
  private readonly rowStart: Float64Array;
  /** Stream tokens: rows·L + 1. */
  readonly length: number;
  /** Where the text the stream covers ends (after its last token). */
  readonly end: number;

  private constructor(readonly file: WindowFile, readonly table: TokenBytes, readonly specials: SpecialIds) {
    const L = file.seqLen, len = (id: number) => table.bytes[id]?.length ?? outside(file.path, id, table.path);
    this.rowStart = new Float64Array(file.rows + 1);
    let at = 0, last = 0;
    for (let first = 0; first < file.rows; first += INDEX_BLOCK) {
      const n = Math.min(INDEX_BLOCK, file.rows - first), ids = file.read(first, n);
      for (let r = 0; r < n; r++) {
        this.rowStart[first + r] = at;
        for (let t = 0; t < L; t++) at += len(ids[r * (L + 1) + t]);
        last = ids[r * (L + 1) + L];
      }
    }
    this.rowStart[file.rows] = at;
    this.length = file.rows * L + 1;
    this.end = at + (file.rows > 0 ? len(last) : 0);
  }

  /**
   * The train stream of prep `dir` with its tokenizer's bytes per id.
   * @throws Error naming windows.json when the windows are not cut from one stream (BOS mode
   *   window) or there are none, or an id has no entry in tokenizer.json
   */
  static open(dir: string, eosId: number): TrainStream {
    const file = openWindowFile(dir, 'train');
    if (file.meta.bos.mode === 'window') throw new Error(`${join(dir, 'windows.json')}: BOS mode window puts a BOS at every window; cross-tokenizer pairing needs windows cut from one stream (bos none or document)`);
    if (file.rows === 0) throw new Error(`${join(dir, 'windows.json')}: no train windows`);
    return new TrainStream(file, tokenBytes(join(dir, 'tokenizer.json')), { eos: eosId, bos: file.meta.bos.id ?? null });
  }

  /** Stream tokens [first, first + count) and the byte offset where each starts ([count + 1]: the last entry is where the last ends). */
  tokens(first: number, count: number): { ids: Uint32Array; starts: Float64Array } {
    const L = this.file.seqLen, rows = this.file.rows;
    const r0 = Math.min(Math.floor(first / L), rows - 1), r1 = Math.min(Math.floor((first + count - 1) / L), rows - 1);
    const block = this.file.read(r0, r1 - r0 + 1), ids = new Uint32Array(count), starts = new Float64Array(count + 1);
    let at = this.rowStart[r0];
    for (let i = r0 * L; i < first; i++) at += this.table.bytes[block[i - r0 * L]].length; // tokens of row r0 before `first`
    for (let i = 0; i < count; i++) {
      const s = first + i, r = Math.min(Math.floor(s / L), rows - 1);
      ids[i] = block[(r - r0) * (L + 1) + (s - r * L)];
      starts[i] = at;
      at += this.table.bytes[ids[i]].length;
    }
    starts[count] = at;
    return { ids, starts };
  }

  /** Index of the first stream token that starts at or after byte `g` (`length` when none does). */
  locate(g: number): number {
    let lo = 0, hi = this.file.rows; // largest r with rowStart[r] < g, or 0
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.rowStart[mid] < g) lo = mid; else hi = mid - 1; }
    const L = this.file.seqLen, first = lo * L, n = Math.min(L + 1, this.length - first);
    const { starts } = this.tokens(first, n);
    for (let i = 0; i < n; i++) if (starts[i] >= g) return first + i;
    return this.length;
  }
}

function outside(path: string, id: number, tokenizer: string): never {
  throw new Error(`${path}: token id ${id} has no entry in ${tokenizer}`);
}

/** What the cross-tokenizer data needs besides the teacher's batches. */
export interface CrossTokenizerSource {
  /** The dataset directory (for the tokenizer.json it carries) and its manifest. */
  dataDir: string;
  manifest: LogitManifest;
  /** The student's prep directory and its tokenizer's EOS id. */
  studentPrep: string;
  studentEos: number;
}

/**
 * Checks that a student prep and a dataset with spans tokenize the same text, and opens the
 * student's stream and the teacher's bytes per id.
 * @throws Error (one line, naming the file) when the dataset has no spans or is sampled, its
 *   tokenizer.json is missing or not the one it records, or the student prep's train split is not
 *   the one the dataset's windows come from, or augments its text
 */
export async function openCrossTokenizer(src: CrossTokenizerSource): Promise<{ stream: TrainStream; teacher: TokenBytes; spans: SpanInfo }> {
  const manifestPath = join(src.dataDir, 'manifest.json'), m = src.manifest, spans = m.spans;
  const windows = join(src.studentPrep, 'windows.json');
  if (!spans) throw new Error(`${manifestPath}: the logits were computed with another tokenizer than ${join(src.studentPrep, 'tokenizer.json')} and store no byte spans; precompute them with kd precompute --spans to distill a student with another tokenizer (kd train --loss uld)`);
  if (m.mode === 'sampled') throw new Error(`${manifestPath}: cross-tokenizer distillation (ULD) needs the teacher's top-k; this dataset is sampled`);
  const tokPath = join(src.dataDir, SPAN_TOKENIZER_FILE);
  const sha = await sha256File(tokPath).catch(() => { throw new Error(`${tokPath}: not found (the tokenizer.json a dataset with byte spans carries)`); });
  if (sha !== m.tokenizer.sha256) throw new Error(`${tokPath}: sha256 ${sha.slice(0, 12)}… is not the dataset's tokenizer.sha256 ${m.tokenizer.sha256.slice(0, 12)}… (replaced after precompute?)`);
  checkSameTrainText(readWindowsMeta(src.studentPrep), spans, windows, manifestPath); // before the stream is indexed
  return { stream: TrainStream.open(src.studentPrep, src.studentEos), teacher: tokenBytes(tokPath), spans };
}

/** @throws Error when the student prep's train split cannot be the text the dataset's windows cover. */
function checkSameTrainText(meta: WindowsMeta, spans: SpanInfo, windows: string, manifestPath: string): void {
  const t = meta.splits.train, aug = meta.augmentation;
  if (aug?.crop || aug?.token_noise) throw new Error(`${windows}: the student prep ${aug.crop ? 'crops documents' : 'adds token noise'}; cross-tokenizer pairing needs the plain text (make the student prep without --crop-rate and --token-noise)`);
  if (t.documents !== spans.train_documents || t.bytes !== spans.train_bytes) {
    throw new Error(`${windows}: train split of ${t.documents} documents, ${t.bytes} bytes, but the teacher windows in ${manifestPath} come from one of ${spans.train_documents} documents, ${spans.train_bytes} bytes: the two preps must read the same corpus with the same --seed, --val-fraction and --max-documents`);
  }
}

/** Counts of student positions seen and aligned with a teacher position, over the batches built so far. */
export interface AlignStats { positions: number; aligned: number }

/**
 * Student batches paired with the teacher's (module comment): `teacherData` yields the dataset's
 * rows with `teacher.spans`; each batch comes back with the student's ids, targets and `align`.
 * @throws Error, from batchAt, naming the byte offset and both texts when a window's text differs
 */
export function crossTokenizerData(teacherData: TrainingData, opened: { stream: TrainStream; teacher: TokenBytes; spans: SpanInfo }, studentPrep: string): TrainingData & { stats(): AlignStats } {
  const { stream, teacher, spans } = opened, Ls = stream.file.seqLen;
  const tSpecials: SpecialIds = { eos: spans.eos_id, bos: spans.bos_id };
  const stats: AlignStats = { positions: 0, aligned: 0 };
  const pair = (t: Batch): Batch => {
    const T = t.teacher, Lt = t.L;
    if (!T?.spans) throw new Error('cross-tokenizer batch: the teacher rows carry no byte spans');
    const B = t.B, inputIds = new Int32Array(B * Ls), targets = new Int32Array(B * Ls), align = new Int32Array(B * Ls);
    for (let b = 0; b < B; b++) {
      const sp = T.spans.subarray(b * Lt * 2, (b + 1) * Lt * 2), tgt = t.targets.subarray(b * Lt, (b + 1) * Lt);
      const first = Math.max(0, Math.min(stream.locate(sp[0]), stream.length - 1 - Ls));
      const s = stream.tokens(first, Ls + 1);
      checkWindowText(t.inputIds.subarray(b * Lt, (b + 1) * Lt), tgt[Lt - 1], sp[0], teacher, s, stream, studentPrep);
      const keys = new Float64Array(Ls);
      for (let j = 0; j < Ls; j++) keys[j] = tokenKey(s.starts[j + 1], kindOf(s.ids[j + 1], stream.specials));
      const a = alignPositions(teacherKeys(sp, tgt, tSpecials), keys);
      for (let j = 0; j < Ls; j++) {
        inputIds[b * Ls + j] = s.ids[j];
        targets[b * Ls + j] = s.ids[j + 1];
        align[b * Ls + j] = a[j] < 0 ? -1 : b * Lt + a[j];
        if (a[j] >= 0) stats.aligned++;
      }
      stats.positions += Ls;
    }
    return { B, L: Ls, inputIds, targets, teacher: T, align };
  };
  return {
    rows: teacherData.rows, seqLen: Ls,
    order: { ...teacherData.order, student_windows_sha256: stream.file.meta.splits.train.sha256 },
    batchAt: async (seed, epoch, start, count) => pair(await teacherData.batchAt(seed, epoch, start, count)),
    close: () => teacherData.close(),
    stats: () => ({ ...stats }),
  };
}

const LOOSE_UTF8 = new TextDecoder('utf-8');

/**
 * Compares the text a teacher window and its student window share, byte for byte.
 * @param inputs the teacher window's L_t input ids, `lastTarget` its last next token, `g` its first byte
 * @throws Error naming the byte offset, both texts there and the fix
 */
function checkWindowText(inputs: ArrayLike<number>, lastTarget: number, g: number, teacher: TokenBytes, s: { ids: Uint32Array; starts: Float64Array }, stream: TrainStream, studentPrep: string): void {
  const tText = concatBytes([...Array.from(inputs), lastTarget], teacher), sText = concatBytes(Array.from(s.ids), stream.table);
  const s0 = s.starts[0], from = Math.max(g, s0), to = Math.min(g + tText.length, s0 + sText.length);
  for (let x = from; x < to; x++) {
    if (tText[x - g] === sText[x - s0]) continue;
    const near = (b: Uint8Array, o: number) => JSON.stringify(LOOSE_UTF8.decode(b.subarray(Math.max(0, x - o - 12), x - o + 12)));
    throw new Error(`${join(studentPrep, 'train.bin')}: cannot pair with the teacher window at byte ${g} of the train text: the texts differ at byte ${x} (teacher ${near(tText, g)}, student ${near(sText, s0)}); make both preps from the same corpus with the same --seed, --val-fraction and --max-documents and no augmentation`);
  }
}

/** The bytes `ids` stand for, concatenated. */
function concatBytes(ids: number[], table: TokenBytes): Uint8Array {
  let n = 0;
  for (const id of ids) n += table.bytes[id]?.length ?? 0;
  const out = new Uint8Array(n);
  let at = 0;
  for (const id of ids) { const b = table.bytes[id]; if (b) { out.set(b, at); at += b.length; } }
  return out;
}
