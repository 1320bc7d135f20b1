import { describe, expect, it } from 'vitest';
import { ensembleRows, type EnsembleMember } from '../lib/losses/ensemble.js';
import { mulberry32 } from '../lib/util/random.js';

/** A teacher's full logits z [N, V] (float64) and its stored top-k member at τ. */
function teacher(seed: number, N: number, V: number, k: number, tau: number, scale = 3) {
  const rand = mulberry32(seed);
  const z = Array.from({ length: N }, () => Array.from({ length: V }, () => scale * (rand() * 2 - 1)));
  const ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N);
  const full = z.map((row, t) => {
    const max = Math.max(...row);
    const lse = Math.log(row.reduce((s, v) => s + Math.exp((v - max) / tau), 0));
    logZ[t] = lse;
    const order = row.map((_, j) => j).sort((a, b) => row[b] - row[a]).slice(0, k);
    order.forEach((j, c) => { ids[t * k + c] = j; logits[t * k + c] = row[j] - max; });
    return row.map((v) => Math.exp((v - max) / tau - lse)); // p_τ over the vocab, float64
  });
  return { member: { k, ids, logits, logZ } as EnsembleMember, full };
}

/** p̃ per bucket of one merged row: its K ids and the tail. */
function buckets(rows: ReturnType<typeof ensembleRows>, t: number, tau: number) {
  const p = Array.from(rows.logits.subarray(t * rows.K, (t + 1) * rows.K), (l) => Math.exp(l / tau - rows.logZ[t]));
  return { ids: Array.from(rows.ids.subarray(t * rows.K, (t + 1) * rows.K)), p, tail: 1 - p.reduce((s, v) => s + v, 0) };
}

describe('ensemble estimator (lib/losses/ensemble.ts)', () => {
  const N = 6, V = 24, tau = 2, w = [0.3, 0.7];

  it('equals the float64 full-vocab mixture when every k = V', () => {
    const a = teacher(1, N, V, V, tau), b = teacher(2, N, V, V, tau);
    const rows = ensembleRows([a.member, b.member], w, N, tau, V);
    expect(rows.K).toBe(V);
    for (let t = 0; t < N; t++) {
      const { ids, p, tail } = buckets(rows, t, tau);
      expect(new Set(ids).size).toBe(V);
      ids.forEach((j, c) => expect(p[c]).toBeCloseTo(w[0] * a.full[t][j] + w[1] * b.full[t][j], 6));
      expect(Math.abs(tail)).toBeLessThan(1e-5);
      for (let c = 1; c < V; c++) expect(p[c]).toBeLessThanOrEqual(p[c - 1] * (1 + 1e-6)); // sorted, column 0 is 0
      expect(rows.logits[t * V]).toBe(0);
    }
  });

  it('stays within the documented bound TV ≤ Σ w_i·tail_i when k < V, and sums to 1', () => {
    const k = 4, a = teacher(3, N, V, k, tau), b = teacher(4, N, V, k, tau);
    const rows = ensembleRows([a.member, b.member], w, N, tau, V);
    expect(rows.K).toBe(2 * k);
    let worst = 0;
    for (let t = 0; t < N; t++) {
      const { ids, p, tail } = buckets(rows, t, tau);
      expect(new Set(ids).size).toBe(2 * k);
      const truth = ids.map((j) => w[0] * a.full[t][j] + w[1] * b.full[t][j]);
      const trueTail = 1 - truth.reduce((s, v) => s + v, 0);
      const tv = 0.5 * (p.reduce((s, v, c) => s + Math.abs(v - truth[c]), 0) + Math.abs(tail - trueTail));
      const tails = [a, b].map((x) => 1 - Array.from({ length: k }, (_, c) => x.full[t][x.member.ids[t * k + c]]).reduce((s, v) => s + v, 0));
      const bound = w[0] * tails[0] + w[1] * tails[1];
      expect(tv).toBeLessThanOrEqual(bound + 1e-6);
      expect(tail).toBeGreaterThan(0);
      worst = Math.max(worst, tv / bound);
      // Ids in both top-k sets are exact; an id in only one gets the other's uniform share.
      ids.forEach((j, c) => {
        const inA = a.member.ids.subarray(t * k, (t + 1) * k).includes(j), inB = b.member.ids.subarray(t * k, (t + 1) * k).includes(j);
        const pa = inA ? a.full[t][j] : tails[0] / (V - k), pb = inB ? b.full[t][j] : tails[1] / (V - k);
        expect(p[c]).toBeCloseTo(w[0] * pa + w[1] * pb, 6);
      });
    }
    expect(worst).toBeGreaterThan(0); // the estimate is not the truth for k < V
  });

  it('with one teacher of weight 1 is that teacher, re-normalised to its column 0', () => {
    const a = teacher(5, N, V, 5, tau);
    const rows = ensembleRows([a.member], [1], N, tau, V);
    for (let t = 0; t < N; t++) {
      const { ids, p } = buckets(rows, t, tau);
      ids.forEach((j, c) => expect(p[c]).toBeCloseTo(a.full[t][j], 6));
    }
  });

  it('refuses bad weights and ids outside the vocab', () => {
    const a = teacher(6, 1, V, 3, tau);
    expect(() => ensembleRows([a.member, a.member], [0.5, 0.6], 1, tau, V)).toThrow(/sum to 1.1, not 1/);
    expect(() => ensembleRows([a.member], [0.5, 0.5], 1, tau, V)).toThrow(/2 weights for 1 teachers/);
    expect(() => ensembleRows([a.member, a.member], [-0.5, 1.5], 1, tau, V)).toThrow(/must be finite and ≥ 0/);
    const bad = { ...a.member, ids: Int32Array.from([0, 1, V]) };
    expect(() => ensembleRows([bad], [1], 1, tau, V)).toThrow(/id 24 at position 0 is outside the vocab/);
  });
});
