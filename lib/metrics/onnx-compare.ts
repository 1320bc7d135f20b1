/**
 * `kd teacher compare A.onnx B.onnx`: two ONNX LMs (e.g. one teacher at fp32 and at int4) on the
 * same prep validation windows, batch by batch, with full logits: top-1 agreement, mean
 * KL(A‖B) and the perplexity of each (see `compare.ts` for the formulas).
 */
import { readWindows } from '../data/windows.js';
import { Device, openOnnxSession, OnnxSession, runLogits, TOPK_OUTPUTS } from '../onnx/index.js';
import { ComparisonResult, LogitComparison } from './compare.js';

export interface OnnxCompareOptions {
  /** Prep output directory (validation windows). */
  prep: string;
  /** Windows per forward. */
  batchSize: number;
  /** First N validation windows (0 = all). */
  maxWindows: number;
  device: Device;
  threads?: number;
  /** Called after each batch with windows done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** One side of the comparison. */
export interface ComparedModel {
  path: string;
  /** Execution provider that ran it. */
  execution_provider: string;
  /** Element type of its logits output. */
  logits_type: string;
  ppl: number;
  /** Positions per second of its forward passes (full logits to JS included; same batch shape for A and B). */
  tokens_per_s: number;
}

export interface OnnxCompareResult extends ComparisonResult {
  a: ComparedModel;
  b: ComparedModel;
  windows: number;
  seq_len: number;
  vocab_size: number;
  seconds: number;
}

/**
 * @throws Error naming the file when the model has no `logits` output: a top-k graph written for
 *   precompute (outputs topk_ids, topk_logits, log_z), or a model that is not a language model.
 */
function requireLogits(h: OnnxSession, path: string): void {
  if (h.outputNames.includes('logits')) return;
  const outputs = h.outputNames.join(', ') || 'none';
  const why = TOPK_OUTPUTS.every((n) => h.outputNames.includes(n))
    ? 'it is a top-k graph made for precompute, which keeps only the top-k of the logits; compare the exported models it was made from'
    : 'teacher compare needs two language models with a [batch, sequence, vocabulary] logits output';
  throw new Error(`${path}: ONNX model has no 'logits' output (outputs: ${outputs}): ${why}`);
}

const logitsType = (h: OnnxSession): string => {
  const m = h.session.outputMetadata.find((o) => o.name === 'logits');
  return m && 'type' in m ? m.type : '?';
};

/**
 * Compares two ONNX LMs on the first `maxWindows` validation windows of `prep`. Models are opened by
 * path (so external data works) and fed from their declared inputs (Optimum, merged, genai IO).
 * The vocabulary for KL and perplexity is the tokenizer's (windows.json `vocab_size`), so padded
 * logit columns get no mass.
 * @throws Error naming the file for a missing/non-ONNX model or one without `logits` (see
 *   requireLogits); naming both
 *   files when their vocabularies differ.
 */
export async function compareOnnx(pathA: string, pathB: string, o: OnnxCompareOptions): Promise<OnnxCompareResult> {
  const windows = readWindows(o.prep, 'validation');
  const L = windows.seqLen, n = o.maxWindows > 0 ? Math.min(o.maxWindows, windows.rows) : windows.rows;
  if (n === 0) throw new Error(`${o.prep}: the validation split has no windows`);
  const open = (p: string) => openOnnxSession(p, { device: o.device, threads: o.threads });
  const ha = await open(pathA);
  requireLogits(ha, pathA);
  const hb = await open(pathB);
  requireLogits(hb, pathB);
  let cmp: LogitComparison | undefined, secA = 0, secB = 0;
  const t0 = performance.now();
  o.onProgress?.(0, n);
  for (let b0 = 0; b0 < n; b0 += o.batchSize) {
    const B = Math.min(o.batchSize, n - b0);
    const ids = new BigInt64Array(B * L), targets = new Int32Array(B * L);
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) {
      ids[b * L + t] = BigInt(windows.ids[(b0 + b) * (L + 1) + t]);
      targets[b * L + t] = windows.ids[(b0 + b) * (L + 1) + t + 1];
    }
    const ta = performance.now(), ra = await runLogits(ha, ids, B, L);
    const tb = performance.now(), rb = await runLogits(hb, ids, B, L);
    secA += (tb - ta) / 1000;
    secB += (performance.now() - tb) / 1000;
    const va = ra.dims[2], vb = rb.dims[2];
    if (va !== vb) throw new Error(`${pathA} has ${va} logits per position but ${pathB} has ${vb}: not the same vocabulary`);
    if (windows.meta.vocab_size > va) throw new Error(`${pathA}: ${va} logits per position, fewer than the tokenizer's ${windows.meta.vocab_size} ids`);
    cmp ??= new LogitComparison(va, windows.meta.vocab_size);
    cmp.add(ra.logits, rb.logits, B * L, targets);
    o.onProgress?.(b0 + B, n);
  }
  const r = cmp!.result();
  const side = (h: OnnxSession, path: string, ppl: number, sec: number): ComparedModel =>
    ({ path, execution_provider: h.executionProvider, logits_type: logitsType(h), ppl, tokens_per_s: (n * L) / sec });
  return {
    ...r, a: side(ha, pathA, r.ppl_a, secA), b: side(hb, pathB, r.ppl_b, secB),
    windows: n, seq_len: L, vocab_size: cmp!.width, seconds: (performance.now() - t0) / 1000,
  };
}

/** The one-screen summary of {@link compareOnnx}. */
export function formatComparison(r: OnnxCompareResult): string {
  return [
    `teacher compare: ${r.windows} validation windows × ${r.seq_len} = ${r.positions.toLocaleString('en-US')} positions, vocab ${r.vocab_size}, ${r.seconds.toFixed(1)} s`,
    ...(['a', 'b'] as const).map((k) => `  ${k.toUpperCase()} ${r[k].path} (${r[k].logits_type} logits, ${r[k].execution_provider}): ppl ${r[k].ppl.toFixed(3)}, ${r[k].tokens_per_s.toFixed(0)} tokens/s`),
    `  top-1 agreement ${(100 * r.top1_agreement).toFixed(2)}%, KL(A‖B) mean ${r.mean_kl.toExponential(3)} nats, max ${r.max_kl.toExponential(3)} nats`,
    '',
  ].join('\n');
}
