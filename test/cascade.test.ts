import { describe, expect, it } from 'vitest';
import { cascadeCurve, forwardFlopsPerToken, positionScores } from '../lib/metrics/cascade.js';

describe('cascade (lib/metrics/cascade.ts)', () => {
  // Four positions, by hand: the student is confident at 0 and 2 (max_prob ≥ 0.5, entropy ≤ 1).
  const student = { nll: Float64Array.from([0.1, 2.0, 0.5, 3.0]), maxProb: Float64Array.from([0.9, 0.2, 0.6, 0.1]), entropy: Float64Array.from([0.3, 2.5, 1.0, 3.2]) };
  const teacher = { nll: Float64Array.from([0.3, 1.0, 0.4, 1.5]) };
  const flops = { student: 10, teacher: 100 };

  it('scores the mixture of per-position choices: PPL, routed share and compute', () => {
    const [all, half, none] = cascadeCurve(student, teacher, 'max_prob', [0, 0.5, 1.01], flops);
    expect(all.ppl).toBeCloseTo(Math.exp((0.1 + 2.0 + 0.5 + 3.0) / 4), 12); // the student everywhere
    expect(all.teacher_share).toBe(0);
    expect(all.flops_per_token).toBe(10);
    expect(half.ppl).toBeCloseTo(Math.exp((0.1 + 1.0 + 0.5 + 1.5) / 4), 12); // student at 0, 2; teacher at 1, 3
    expect(half.teacher_share).toBe(0.5);
    expect(half.flops_per_token).toBe(60);
    expect(none.ppl).toBeCloseTo(Math.exp((0.3 + 1.0 + 0.4 + 1.5) / 4), 12); // the teacher everywhere
    expect(none.teacher_share).toBe(1);
    const [byEntropy] = cascadeCurve(student, teacher, 'entropy', [1.0], flops);
    expect(byEntropy.ppl).toBeCloseTo(half.ppl, 12);
    expect(byEntropy.teacher_share).toBe(0.5);
  });

  it('refuses empty or mismatched scores', () => {
    expect(() => cascadeCurve(student, { nll: new Float64Array(3) }, 'max_prob', [0.5], flops)).toThrow(/4 student positions but 3 teacher positions/);
    const empty = { nll: new Float64Array(0), maxProb: new Float64Array(0), entropy: new Float64Array(0) };
    expect(() => cascadeCurve(empty, empty, 'entropy', [1], flops)).toThrow(/no scored positions/);
  });

  it('computes NLL, max probability and entropy over the real vocab, skipping unscored positions', () => {
    // Row 0: p = [1/6, 2/6, 3/6] (the 4th column is padding); row 1 unscored.
    const logits = Float32Array.from([0, Math.log(2), Math.log(3), 50, 9, 9, 9, 9]);
    const s = positionScores(logits, 4, [1, -100], 3);
    expect(s.nll).toHaveLength(1);
    expect(s.nll[0]).toBeCloseTo(Math.log(3), 6);
    expect(s.maxProb[0]).toBeCloseTo(0.5, 6);
    expect(s.entropy[0]).toBeCloseTo(Math.log(6) / 6 + Math.log(3) / 3 + Math.log(2) / 2, 6);
  });

  it('counts 2 × the matmul weights per token (the demo teacher: 7,995,392)', () => {
    expect(forwardFlopsPerToken({ hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 4096 })).toBe(7_995_392);
  });
});
