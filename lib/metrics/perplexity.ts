/**
 * Token-weighted perplexity: exp(Σ NLL / Σ scored tokens) over all batches (DESIGN §5) — not the mean
 * of per-batch perplexities nor exp of the mean of per-batch means.
 */
export class PerplexityAccumulator {
  nll = 0;
  tokens = 0;
  /** UTF-8 bytes of the scored tokens' text (see lib/tokenizer/byte-lengths.ts). */
  bytes = 0;

  /** Adds a batch: `nllSum` nats over `tokens` scored tokens whose text is `bytes` UTF-8 bytes. */
  add(nllSum: number, tokens: number, bytes = 0): void {
    this.nll += nllSum;
    this.tokens += tokens;
    this.bytes += bytes;
  }

  /** Mean NLL per scored token (nats); NaN when nothing was scored. */
  get meanNll(): number {
    return this.tokens === 0 ? NaN : this.nll / this.tokens;
  }

  get perplexity(): number {
    return Math.exp(this.meanNll);
  }

  /**
   * Bits per byte: total NLL in bits over the UTF-8 bytes of the scored tokens — not of the whole
   * split: end-of-document tokens (0 bytes) and unscored text count nothing — so models with
   * different tokenizers compare. NaN when no bytes were added.
   */
  get bitsPerByte(): number {
    return this.bytes === 0 ? NaN : this.nll / Math.LN2 / this.bytes;
  }
}
