/**
 * The yardstick of `make techniques` (README "Optimisation techniques"): the share of the
 * baseline → teacher gap in log perplexity a student closes, and the report's table.
 */

/** One technique's row of runs/techniques/report.json. */
export interface TechniqueEntry {
  /** e.g. `distilled`, `token_noise`, `hidden_mse`, `qat_int8`. */
  name: string;
  /** Validation perplexity (sliding windows over the clean validation documents, kd eval). */
  val_ppl: number;
  /** {@link gapClosed} of val_ppl. */
  gap_closed: number;
  /** Bytes per training position of what the student trains from (soft labels + hidden states); 0 for CE only. */
  bytes_per_position: number;
  /** Wall seconds of what the variant ran: its own prep/precompute (when it has one), training and export. */
  seconds: number;
  /** What the variant changes, in words. */
  description?: string;
  [extra: string]: unknown;
}

/**
 * Share of the baseline → teacher gap in log perplexity that a student closes:
 * ln(ppl_baseline / ppl) / ln(ppl_baseline / ppl_teacher). 0 = the baseline, 1 = the teacher,
 * negative = worse than the baseline. The seed article's table implies 0.68; issue 12's yardstick.
 * @throws Error when a perplexity is not positive and finite, or baseline and teacher are equal.
 */
export function gapClosed(ppl: number, baseline: number, teacher: number): number {
  for (const [name, v] of [['ppl', ppl], ['baseline', baseline], ['teacher', teacher]] as const) {
    if (!(Number.isFinite(v) && v > 0)) throw new Error(`gap closed: ${name} perplexity ${v} is not a positive number`);
  }
  if (baseline === teacher) throw new Error(`gap closed: baseline and teacher perplexity are equal (${baseline}): no gap to close`);
  return Math.log(baseline / ppl) / Math.log(baseline / teacher);
}

/** The report's Markdown table, one row per entry, with the conditions above it. */
export function techniquesMarkdown(entries: TechniqueEntry[], header: string[]): string {
  const rows = entries.map((e) => {
    const extra = [e.onnx_bytes !== undefined ? `${(Number(e.onnx_bytes) / 2 ** 20).toFixed(2)} MiB ONNX` : '', e.tokens_per_s !== undefined ? `${Number(e.tokens_per_s).toFixed(0)} tokens/s` : '']
      .filter(Boolean).join(', ');
    return `| ${e.name} | ${e.val_ppl.toFixed(2)} | ${(100 * e.gap_closed).toFixed(1)} % | ${e.bytes_per_position.toFixed(1)} | ${e.seconds.toFixed(0)} | ${e.description ?? ''}${extra ? ` (${extra})` : ''} |`;
  });
  return [...header, '',
    '| technique | val PPL | gap closed | bytes/position | seconds | what it changes |',
    '|---|---:|---:|---:|---:|---|', ...rows, ''].join('\n');
}
