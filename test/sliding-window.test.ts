import { describe, expect, it } from 'vitest';
import { slidingWindows } from '../lib/metrics/sliding-window.js';
import { sharedCases } from './shared-cases.js';

const c = sharedCases('perplexity.json')
  .cases.find((x: { name: string }) => x.name === 'sliding_window_scores_each_token_once');

describe('sliding-window perplexity plan (shared/cases/perplexity.json)', () => {
  it('sliding_window_scores_each_token_once', () => {
    const w = slidingWindows(c.tokens, c.window, c.stride);
    expect(w.length).toBe(c.expected_windows);
    expect(w.map((x) => x.end - x.scoreFrom)).toEqual(c.expected_new_tokens_per_window);
    expect(w.reduce((n, x) => n + x.end - x.scoreFrom, 0)).toBe(c.expected_scored_tokens);
  });

  it('stride = window still scores all tokens; stride > window is refused', () => {
    const w = slidingWindows(c.tokens, c.window, c.window);
    expect(w.reduce((n, x) => n + x.end - x.scoreFrom, 0)).toBe(c.expected_scored_tokens);
    expect(() => slidingWindows(20, 10, 11)).toThrow('sliding window: stride 11 > window 10 would leave tokens unscored');
  });

  it('every target scored exactly once with the longest context, for many shapes', () => {
    for (let T = 1; T < 40; T++) for (let W = 2; W < 12; W++) for (let S = 1; S <= W; S++) {
      const seen = new Array(T).fill(0);
      for (const x of slidingWindows(T, W, S)) {
        expect(x.end - x.begin).toBeLessThanOrEqual(W);
        for (let t = x.scoreFrom; t < x.end; t++) seen[t]++;
        if (x.begin > 0) expect(x.end - x.begin).toBe(W); // later windows are full
      }
      expect(seen.slice(1).every((n) => n === 1)).toBe(true);
      expect(seen[0]).toBe(0);
    }
  });
});
