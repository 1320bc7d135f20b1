/**
 * Token-weighted perplexity: exp(Σ NLL / Σ scored tokens) over all batches (DESIGN §5) — not the mean
 * of per-batch perplexities nor exp of the mean of per-batch means.
 */
export class PerplexityAccumulator {
  nll = 0;
  tokens = 0;

  /** Adds a batch: `nllSum` nats over `tokens` scored tokens. */
  add(nllSum: number, tokens: number): void {
    this.nll += nllSum;
    this.tokens += tokens;
  }

  /** Mean NLL per scored token (nats); NaN when nothing was scored. */
  get meanNll(): number {
    return this.tokens === 0 ? NaN : this.nll / this.tokens;
  }

  get perplexity(): number {
    return Math.exp(this.meanNll);
  }

  /**
   * Bits per byte: total NLL in bits over the UTF-8 bytes of the scored text, so models with different
   * tokenizers compare. @param bytesPerToken bytes of text per token of the evaluated split.
   */
  bitsPerByte(bytesPerToken: number): number {
    return this.meanNll / Math.LN2 / bytesPerToken;
  }
}
