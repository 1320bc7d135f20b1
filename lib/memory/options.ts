/**
 * Knobs that trade compute for memory in one training step. The memory plan
 * (lib/memory/plan.ts) chooses them; the model (lib/model/llama.ts,
 * lib/model/recompute.ts, lib/model/attention.ts) and the chunked head+loss
 * (lib/losses/chunked.ts) obey them. Every setting gives the same loss and
 * gradients (up to float rounding); only peak memory and speed change.
 */
export interface MemoryOptions {
  /**
   * Recompute each decoder layer in the backward pass, keeping only its input
   * [B·L, d] (plus the layer's weights) between forward and backward.
   */
  recompute: boolean;
  /**
   * Query positions per attention block. Attention scores exist as
   * [B·KV, G·min(attentionQueryBlock, L), L] at most (G = heads per KV head),
   * i.e. all heads of one block of queries against all L keys. Values ≥ L (or
   * Infinity) mean one block: today's unblocked attention.
   */
  attentionQueryBlock: number;
  /**
   * Positions per LM-head/loss chunk: logits exist as [min(lossChunk, N), V] at
   * most. Values ≥ N (or Infinity) mean one chunk: today's unchunked loss.
   */
  lossChunk: number;
}

/** Today's behaviour: no recomputation, one attention block, one loss chunk. */
export const UNCHUNKED: MemoryOptions = Object.freeze({
  recompute: false,
  attentionQueryBlock: Number.POSITIVE_INFINITY,
  lossChunk: Number.POSITIVE_INFINITY,
});

/**
 * Checks memory options: block and chunk sizes are positive integers or
 * Infinity.
 *
 * @throws Error `<source>: <field> must be a positive integer, got <v>`.
 */
export function validateMemoryOptions(opts: MemoryOptions, source = 'memory options'): MemoryOptions {
  for (const key of ['attentionQueryBlock', 'lossChunk'] as const) {
    const v = opts[key];
    if (!(v === Number.POSITIVE_INFINITY || (Number.isInteger(v) && v > 0))) {
      throw new Error(`${source}: ${key} must be a positive integer, got ${v}`);
    }
  }
  return opts;
}
