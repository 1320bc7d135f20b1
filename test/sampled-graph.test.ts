/**
 * Sampled mode's graph (lib/onnx/sample-graph.ts): the ONNX draws equal the JS inverse CDF
 * (lib/logits/sampling.ts) on the same uniforms, the values are z − max z at the drawn ids, and
 * the uniforms depend only on (seed, sample id).
 */
import { describe, expect, it } from 'vitest';
import { initLlamaWeights } from '../lib/model/init.js';
import { addSampledOutputs, addTopKOutputs, exportLlamaOnnx, openOnnxSession, runLogits, runSampled, runTopK } from '../lib/onnx/index.js';
import { inverseCdfDraw, sampleUniforms, sortDraws, meanUniqueIds } from '../lib/logits/sampling.js';
import { teacherConfig } from './precompute-fixture.js';

const B = 2, L = 8, n = 12;

describe('sampled graph', () => {
  const cfg = teacherConfig();
  const w = initLlamaWeights(cfg, 3);
  for (const [name, t] of w) if (name.includes('lm_head')) for (let i = 0; i < t.data.length; i++) t.data[i] *= 20; // moderately peaked
  const model = exportLlamaOnnx(cfg, w);
  const ids = Int32Array.from({ length: B * L }, (_, i) => (i * 37 + 5) % cfg.vocab_size);

  // V = 300 is not a multiple of the search's 256-id blocks: the padded block must never be drawn.
  const odd = teacherConfig({ vocab_size: 300 });
  const oddW = initLlamaWeights(odd, 5);
  for (const [name, t] of oddW) if (name.includes('lm_head')) for (let i = 0; i < t.data.length; i++) t.data[i] *= 5; // flat: draws reach the last block
  const oddModel = exportLlamaOnnx(odd, oddW);
  for (const [tg, graph] of [[1, model], [2, model], [1, oddModel]] as const) {
    it(`draws the inverse-CDF ids of p at τg = ${tg} and returns z − max z there (V = ${graph === model ? cfg.vocab_size : 300})`, async () => {
      const full = await runLogits(await openOnnxSession(graph, { device: 'cpu' }), ids.map((x) => x % 300), B, L);
      const V = full.dims[2];
      const h = await openOnnxSession(addSampledOutputs(graph, { samples: n, samplingTemperature: tg, temperatures: [1, 2] }), { device: 'cpu' });
      const u = new Float32Array(B * L * n);
      for (let b = 0; b < B; b++) u.set(sampleUniforms(7, b, L, n), b * L * n);
      const r = await runSampled(h, ids.map((x) => x % 300), B, L, u, n);
      let lastBlock = 0;
      expect(r.k).toBe(n);
      let agree = 0;
      for (let p = 0; p < B * L; p++) {
        const z = full.logits.subarray(p * V, (p + 1) * V);
        let max = -Infinity;
        for (const v of z) max = Math.max(max, v);
        const s = Float32Array.from(z, (v) => v - max);
        for (let j = 0; j < n; j++) {
          const got = r.topkIds[p * n + j];
          if (got === inverseCdfDraw(s, tg, u[p * n + j])) agree++;
          expect(got).toBeLessThan(V);
          if (got >= 256) lastBlock++;
          expect(r.topkLogits[p * n + j]).toBeCloseTo(s[got], 4);
        }
        let lz1 = 0;
        for (const v of s) lz1 += Math.exp(v);
        expect(r.logZ[p * 2]).toBeCloseTo(Math.log(lz1), 4);
      }
      // ORT's CumSum may round differently from the sequential JS sum: a draw can move to a
      // neighbour only when u lands within fp32 rounding of a cdf step.
      expect(agree).toBeGreaterThanOrEqual(B * L * n - 2);
      expect(lastBlock).toBeGreaterThan(0); // the second 256-id block is searched
    });
  }

  it('refuses a sampling temperature that is not stored, and n < 1', () => {
    expect(() => addSampledOutputs(model, { samples: 4, samplingTemperature: 3, temperatures: [1, 2], source: 't.onnx' })).toThrow(/t\.onnx: the sampling temperature 3 must be one of the stored temperatures/);
    expect(() => addSampledOutputs(model, { samples: 0, samplingTemperature: 1, temperatures: [1] })).toThrow(/samples must be an integer ≥ 1/);
  });

  it('gives the top-k graph output layout (k = n) so precompute reads both alike', async () => {
    const topk = await runTopK(await openOnnxSession(addTopKOutputs(model, { k: n, temperatures: [1, 2] }), { device: 'cpu' }), ids, B, L);
    expect(topk.k).toBe(n);
    expect(topk.numTemperatures).toBe(2);
  });
});

describe('sampling helpers', () => {
  it('uniforms depend only on seed and sample id, and are k/2^24 in [0, 1)', () => {
    const a = sampleUniforms(1, 5, 4, 3), b = sampleUniforms(1, 5, 4, 3), c = sampleUniforms(1, 6, 4, 3), d = sampleUniforms(2, 5, 4, 3);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    expect(Array.from(a)).not.toEqual(Array.from(d));
    for (const u of a) { expect(u).toBeGreaterThanOrEqual(0); expect(u).toBeLessThan(1); expect(Number.isInteger(u * 2 ** 24)).toBe(true); }
    const big = sampleUniforms(0, 2 ** 40 + 3, 1, 1);
    expect(big[0]).not.toBe(sampleUniforms(0, 3, 1, 1)[0]); // high word of the id counts
  });

  it('uniforms are uniform: mean and variance of 200k draws', () => {
    let s = 0, s2 = 0, N = 0;
    for (let id = 0; id < 1000; id++) for (const u of sampleUniforms(9, id, 20, 10)) { s += u; s2 += u * u; N++; }
    expect(s / N).toBeCloseTo(0.5, 2);
    expect(s2 / N - (s / N) ** 2).toBeCloseTo(1 / 12, 2);
  });

  it('sortDraws puts equal ids in adjacent runs, by descending value', () => {
    const ids = Uint32Array.from([5, 2, 5, 9, 2, 5]), vals = Float32Array.from([-1, -0.5, -1, -3, -0.5, -1]);
    sortDraws(ids, vals, 6);
    expect(Array.from(ids)).toEqual([2, 2, 5, 5, 5, 9]);
    expect(Array.from(vals)).toEqual([-0.5, -0.5, -1, -1, -1, -3]);
    expect(meanUniqueIds(ids, 6)).toBe(3);
    expect(meanUniqueIds(Uint32Array.from([1, 1, 2, 3]), 2)).toBe(1.5);
  });
});
