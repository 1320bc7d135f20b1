// Unit tests of the augmentation primitives (not yet wired into prep/precompute/train).
import { describe, expect, it } from 'vitest';
import { cropSpan } from '../lib/data/augment/crop.js';
import { TokenNoise } from '../lib/data/augment/token-noise.js';
import { keepProbabilities, parseCorpusList } from '../lib/data/augment/mix.js';

describe('augmentation primitives', () => {
  it('token noise: realized rate within binomial error, seeded, specials kept', () => {
    const spec = { rate: 0.1, distribution: 'uniform' as const, seed: 7, protected_ids: [0, 1] };
    const noise = new TokenNoise(spec, 50);
    const n = 20000, clean = Array.from({ length: n }, (_, t) => 2 + (t % 40));
    clean[5] = 0; clean[9] = 1;
    const a = clean.slice(), b = clean.slice(), c = clean.slice();
    const r = noise.apply(3, a);
    noise.apply(3, b);
    new TokenNoise({ ...spec, seed: 8 }, 50).apply(3, c);
    expect(Math.abs(r / n - 0.1)).toBeLessThan(4 * Math.sqrt(0.09 / n));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a[5]).toBe(0); expect(a[9]).toBe(1);
    expect(a.every((x, t) => x === clean[t] || (x !== 0 && x !== 1))).toBe(true);
  });
  it('crop lengths in range', () => {
    const spec = { rate: 1, min_tokens: 10, max_tokens: 20, start: 'random' as const, seed: 1 };
    for (let i = 0; i < 200; i++) {
      const [s, e] = cropSpan(spec, i, 100);
      expect(e - s).toBeGreaterThanOrEqual(10); expect(e - s).toBeLessThanOrEqual(20);
      expect(s).toBeGreaterThanOrEqual(0); expect(e).toBeLessThanOrEqual(100);
    }
  });
  it('mix: weights parsed, bad weights refused, keep probabilities', () => {
    expect(parseCorpusList(['a.jsonl:0.7', 'b/:0.3'])).toEqual([{ source: 'a.jsonl', weight: 0.7 }, { source: 'b/', weight: 0.3 }]);
    expect(() => parseCorpusList(['a.jsonl:-1'])).toThrow(/weight must be a positive number/);
    expect(() => parseCorpusList(['a.jsonl:abc'])).toThrow(/--corpus 'a.jsonl:abc'/);
    expect(() => parseCorpusList(['a.jsonl:0'])).toThrow(/positive/);
    const q = keepProbabilities([{ source: 'a', weight: 0.7 }, { source: 'b', weight: 0.3 }], [700, 600]);
    expect(q[0]).toBeCloseTo(1); expect(q[1]).toBeCloseTo(0.5);
  });
});
