/**
 * Sliding-window perplexity plan (DESIGN §5; the strided evaluation of HF's "Perplexity of
 * fixed-length models"): a document of T tokens is read in windows of at most W tokens whose starts
 * advance by S ≤ W; each window scores only the targets the previous windows did not, so every
 * token after the first is scored exactly once, with the longest context the window allows.
 */
export interface ScoringWindow {
  /** First input position of the window. */
  begin: number;
  /** One past the last token of the window (inputs are [begin, end − 1], targets [begin + 1, end − 1]). */
  end: number;
  /** First target position scored by this window; targets before it were scored by earlier windows. */
  scoreFrom: number;
}

/**
 * Windows over a document of `tokens` tokens.
 * @param window W ≥ 2 tokens per window (inputs and targets share it: W − 1 predictions at most)
 * @param stride S, 1 ≤ S ≤ W
 * @throws Error when stride > window (tokens would be skipped) or the sizes are not positive.
 */
export function slidingWindows(tokens: number, window: number, stride: number): ScoringWindow[] {
  if (!Number.isInteger(window) || window < 2) throw new Error(`sliding window: window must be an integer ≥ 2, got ${window}`);
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`sliding window: stride must be an integer ≥ 1, got ${stride}`);
  if (stride > window) throw new Error(`sliding window: stride ${stride} > window ${window} would leave tokens unscored`);
  const out: ScoringWindow[] = [];
  let scored = 1; // token 0 has no context and is never a target
  for (let start = 0; scored < tokens; start += stride) {
    const end = Math.min(start + window, tokens);
    const begin = Math.max(0, end - window); // the last window ends at the document's end, full length
    if (end > scored) out.push({ begin, end, scoreFrom: scored });
    scored = Math.max(scored, end);
  }
  return out;
}
