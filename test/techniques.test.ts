import { describe, expect, it } from 'vitest';
import { gapClosed, techniquesMarkdown } from '../lib/metrics/techniques.js';

describe('gap closed (issue 12 yardstick)', () => {
  it("reproduces the issue's 26 % for the demo student", () => {
    // ln(507.06 / 411.98) / ln(507.06 / 226.45), by hand in float64: 0.207672… / 0.806164… .
    expect(gapClosed(411.98, 507.06, 226.45)).toBeCloseTo(0.25760, 4);
  });

  it('is 0 at the baseline, 1 at the teacher, negative when worse than the baseline', () => {
    expect(gapClosed(507.06, 507.06, 226.45)).toBe(0);
    expect(gapClosed(226.45, 507.06, 226.45)).toBe(1);
    expect(gapClosed(600, 507.06, 226.45)).toBeCloseTo(Math.log(507.06 / 600) / Math.log(507.06 / 226.45), 12);
    expect(gapClosed(600, 507.06, 226.45)).toBeLessThan(0);
  });

  it('refuses perplexities that are not positive numbers and an empty gap', () => {
    expect(() => gapClosed(NaN, 507, 226)).toThrow(/ppl perplexity NaN is not a positive number/);
    expect(() => gapClosed(400, 0, 226)).toThrow(/baseline perplexity 0/);
    expect(() => gapClosed(400, 507, Infinity)).toThrow(/teacher perplexity Infinity/);
    expect(() => gapClosed(400, 300, 300)).toThrow(/no gap to close/);
  });

  it('writes one Markdown row per entry with the gap in percent', () => {
    const md = techniquesMarkdown([
      { name: 'distilled', val_ppl: 411.98, gap_closed: 0.2576, bytes_per_position: 96.8, seconds: 200 },
      { name: 'qat_int8', val_ppl: 420, gap_closed: 0.2, bytes_per_position: 96.8, seconds: 210, onnx_bytes: 2 ** 21, tokens_per_s: 1234.4 },
    ], ['# title']);
    expect(md).toContain('| distilled | 411.98 | 25.8 % | 96.8 | 200 |  |');
    expect(md).toContain('| qat_int8 | 420.00 | 20.0 % | 96.8 | 210 |  (2.00 MiB ONNX, 1234 tokens/s) |');
  });
});
