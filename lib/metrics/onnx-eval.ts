import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readWindows } from '../data/windows.js';
import { addScoringOutputs, openOnnxSession, readOnnx, runScoring } from '../onnx/index.js';
import { PerplexityAccumulator } from './perplexity.js';

/** Measurements of one ONNX model on the validation windows. */
export interface OnnxEvalResult {
  /** exp(Σ NLL / Σ scored tokens), token-weighted (DESIGN §5). */
  ppl: number;
  /** Mean NLL per scored token, nats. */
  nll: number;
  /** Bits per UTF-8 byte of the validation text. */
  bpb: number;
  scored_tokens: number;
  /** Positions through the model per second of session.run (same batch shape for every model). */
  tokens_per_s: number;
  execution_provider: string;
  /** Peak resident set of the measuring process, bytes. */
  peak_rss_bytes: number;
}

export interface OnnxEvalOptions {
  prep: string;
  batchSize: number;
  /** First N validation windows (0 = all). */
  maxWindows: number;
  threads?: number;
}

/**
 * Perplexity and throughput of an ONNX LM on the prep validation windows, in this process.
 * Every window position with a target is scored once (windows do not overlap in targets).
 * @throws Error naming the file for a missing/non-ONNX model or one without `logits`.
 */
export async function evaluateOnnx(modelPath: string, o: OnnxEvalOptions): Promise<OnnxEvalResult> {
  const windows = readWindows(o.prep, 'validation');
  const h = await openOnnxSession(addScoringOutputs(readOnnx(modelPath), modelPath), { device: 'auto', source: modelPath, threads: o.threads });
  const L = windows.seqLen, n = o.maxWindows > 0 ? Math.min(o.maxWindows, windows.rows) : windows.rows;
  const acc = new PerplexityAccumulator();
  let seconds = 0, positions = 0;
  for (let b0 = 0; b0 < n; b0 += o.batchSize) {
    const B = Math.min(o.batchSize, n - b0);
    const ids = new BigInt64Array(B * L), labels = new BigInt64Array(B * L);
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) {
      ids[b * L + t] = BigInt(windows.ids[(b0 + b) * (L + 1) + t]);
      labels[b * L + t] = BigInt(windows.ids[(b0 + b) * (L + 1) + t + 1]);
    }
    const t0 = performance.now();
    const logp = await runScoring(h, ids, labels, B, L);
    seconds += (performance.now() - t0) / 1000;
    positions += B * L;
    let nll = 0;
    for (const v of logp) nll -= v;
    acc.add(nll, B * L);
  }
  const split = windows.meta.splits.validation;
  return {
    ppl: acc.perplexity, nll: acc.meanNll, bpb: acc.bitsPerByte(split.bytes / split.tokens), scored_tokens: acc.tokens,
    tokens_per_s: positions / seconds, execution_provider: h.executionProvider, peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
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
