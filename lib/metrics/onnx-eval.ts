import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readStream, readWindows } from '../data/windows.js';
import { addScoringOutputs, Device, openDerivedSession, OnnxSession, readOnnx, runScoring } from '../onnx/index.js';
import { tokenByteLengths } from '../tokenizer/byte-lengths.js';
import { PerplexityAccumulator } from './perplexity.js';
import { slidingWindows } from './sliding-window.js';

/** Measurements of one ONNX model on the validation windows. */
export interface OnnxEvalResult {
  /** exp(Σ NLL / Σ scored tokens), token-weighted (DESIGN §5). */
  ppl: number;
  /** Mean NLL per scored token, nats. */
  nll: number;
  /** Bits per UTF-8 byte of the scored tokens' text (end-of-document tokens are 0 bytes). */
  bpb: number;
  scored_tokens: number;
  /** UTF-8 bytes of the scored tokens' text: the denominator of bpb. */
  scored_bytes: number;
  /** Positions through the model per second of session.run (same batch shape for every model). */
  tokens_per_s: number;
  execution_provider: string;
  /** Peak resident set of the measuring process, bytes. */
  peak_rss_bytes: number;
}

export interface OnnxEvalOptions {
  prep: string;
  batchSize: number;
  /** First N validation windows (0 = all); with `stride`, first N documents. */
  maxWindows: number;
  /**
   * 0: score the packed validation windows (every target once, context restarts at each window).
   * S > 0: score each validation document by sliding windows of seq_len tokens with stride S.
   */
  stride?: number;
  threads?: number;
  /** ONNX Runtime device (default auto: CUDA when its provider loads, else CPU with a message). */
  device?: Device;
}

/** One batch to score: ids [B, L] and labels [B, L] (−100 = not scored). */
interface ScoringBatch { B: number; L: number; ids: BigInt64Array; labels: BigInt64Array }

/**
 * Perplexity and throughput of an ONNX LM on the prep validation windows, in this process.
 * Every window position with a target is scored once (windows do not overlap in targets).
 * @throws Error naming the file for a missing/non-ONNX model or one without `logits`.
 */
export async function evaluateOnnx(modelPath: string, o: OnnxEvalOptions): Promise<OnnxEvalResult> {
  const windows = readWindows(o.prep, 'validation');
  const h = await openScoringSession(modelPath, o);
  const byteLength = tokenByteLengths(join(o.prep, 'tokenizer.json'));
  const acc = new PerplexityAccumulator();
  let seconds = 0, positions = 0;
  const batches = o.stride ? slidingBatches(o, windows.seqLen) : packedBatches(o, windows);
  for (const { B, L, ids, labels } of batches) {
    const t0 = performance.now();
    const logp = await runScoring(h, ids, labels, B, L);
    seconds += (performance.now() - t0) / 1000;
    positions += B * L;
    let nll = 0, scored = 0, bytes = 0;
    for (let i = 0; i < logp.length; i++) {
      if (labels[i] !== -100n) { nll -= logp[i]; scored++; bytes += byteLength[Number(labels[i])] ?? 0; }
    }
    acc.add(nll, scored, bytes);
  }
  return {
    ppl: acc.perplexity, nll: acc.meanNll, bpb: acc.bitsPerByte, scored_tokens: acc.tokens, scored_bytes: acc.bytes,
    tokens_per_s: positions / seconds, execution_provider: h.executionProvider, peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** The model with a `token_logprobs` output (external data kept working, see openDerivedSession). */
function openScoringSession(modelPath: string, o: OnnxEvalOptions): Promise<OnnxSession> {
  return openDerivedSession(modelPath, addScoringOutputs(readOnnx(modelPath), modelPath), { device: o.device ?? 'auto', threads: o.threads });
}

/** The packed validation windows in batches: inputs row[0:L], labels row[1:L+1]. */
function* packedBatches(o: OnnxEvalOptions, w: ReturnType<typeof readWindows>): Generator<ScoringBatch> {
  const L = w.seqLen, n = o.maxWindows > 0 ? Math.min(o.maxWindows, w.rows) : w.rows;
  for (let b0 = 0; b0 < n; b0 += o.batchSize) {
    const B = Math.min(o.batchSize, n - b0);
    const ids = new BigInt64Array(B * L), labels = new BigInt64Array(B * L);
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) {
      ids[b * L + t] = BigInt(w.ids[(b0 + b) * (L + 1) + t]);
      labels[b * L + t] = BigInt(w.ids[(b0 + b) * (L + 1) + t + 1]);
    }
    yield { B, L, ids, labels };
  }
}

/**
 * Each validation document (its tokens and the EOS after it) by sliding windows of W = seq_len + 1
 * tokens (W − 1 predictions, the training context), stride S; windows are right-padded to a common
 * length with unscored positions, which a causal model cannot see.
 */
function* slidingBatches(o: OnnxEvalOptions, seqLen: number): Generator<ScoringBatch> {
  const { ids: stream, docs } = readStream(o.prep, 'validation');
  const W = seqLen + 1, L = seqLen;
  const pending: { doc: ArrayLike<number>; begin: number; end: number; scoreFrom: number }[] = [];
  const flush = (): ScoringBatch => {
    const B = pending.length, ids = new BigInt64Array(B * L), labels = new BigInt64Array(B * L).fill(-100n);
    pending.forEach(({ doc, begin, end, scoreFrom }, b) => {
      for (let t = begin; t < end - 1; t++) {
        ids[b * L + t - begin] = BigInt(doc[t]);
        if (t + 1 >= scoreFrom) labels[b * L + t - begin] = BigInt(doc[t + 1]);
      }
    });
    pending.length = 0;
    return { B, L, ids, labels };
  };
  const n = o.maxWindows > 0 ? Math.min(o.maxWindows, docs.length) : docs.length;
  for (const d of docs.slice(0, n)) {
    const doc = stream.subarray(d.offset, d.offset + d.tokens + 1); // + EOS
    for (const win of slidingWindows(doc.length, W, o.stride!)) {
      pending.push({ doc, ...win });
      if (pending.length === o.batchSize) yield flush();
    }
  }
  if (pending.length) yield flush();
}

const WORKER = fileURLToPath(new URL('./onnx-eval-worker.ts', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url));

/** {@link evaluateOnnx} in a fresh child process, so that peak RSS is this model's alone. */
export async function evaluateOnnxIsolated(modelPath: string, o: OnnxEvalOptions): Promise<OnnxEvalResult> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [TSX, WORKER, modelPath, JSON.stringify(o)], { maxBuffer: 1 << 20 });
    return JSON.parse(stdout.trim().split('\n').pop()!) as OnnxEvalResult;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error((err.stderr ?? '').trim().split('\n').pop() || err.message);
  }
}
