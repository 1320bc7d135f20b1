/**
 * fp16 and int4 (com.microsoft.MatMulNBits) exports: the 4-bit layout against hand-computed
 * blocks and against ORT's own kernel, and the exported models against fp32.
 */
import ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { NamedTensors } from '../lib/model/tensors.js';
import {
  dequantizeInt4, exportLlamaOnnx, ioNamesOf, openOnnxSession, pack4, quantizeInt4, runLogits, teacherDtypeOf, unpack4, writeOnnx,
} from '../lib/onnx/index.js';
import { quantizeBlock } from '../lib/onnx/int4.js';
import { cpuPlacement } from '../lib/onnx/placement.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DT, encodeModel, floatTensor, uint8Tensor, valueInfo, attr } from '../lib/onnx/proto.js';
import { LogitComparison } from '../lib/metrics/compare.js';
import { mulberry32 } from '../lib/util/random.js';
import { maxAbsDiff, randomIds, testWeights, tinyConfig } from './fixtures/llama.js';
import { markovStream, trainTiny } from './fixtures/trained.js';

describe('4-bit packing (MatMulNBits layout)', () => {
  it('pack4 puts the first code in the low nibble; unpack4 inverts it', () => {
    expect([...pack4([1, 2, 15, 0, 7])]).toEqual([0x21, 0x0f, 0x07]);
    expect([...unpack4(Uint8Array.of(0x21, 0x0f, 0x07), 5)]).toEqual([1, 2, 15, 0, 7]);
    expect(() => pack4([16])).toThrow('pack4: code 16 at 0 is not in [0, 15]');
  });

  it('symmetric block: scale = (value of largest magnitude) / −8, codes round(v/scale) + 8', () => {
    const v = [-4, 2, 1, 0, 0.5, 0.24, 3.9, -0.26, 0, 0, 0, 0, 0, 0, 0, 0];
    const q = quantizeBlock(v, true);
    expect(q.scale).toBe(0.5); // −4 / −8
    expect(q.zeroPoint).toBe(8);
    // v·(1/scale) = v·2 → +8 → round half away from zero → clamp to [0, 15]
    expect([...q.codes]).toEqual([0, 12, 10, 8, 9, 8, 15, 7, 8, 8, 8, 8, 8, 8, 8, 8]);
  });

  it('asymmetric block: range includes 0, scale = range/15, zero point = round(−min/scale)', () => {
    const v = [-1, 2, 0.3, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    const q = quantizeBlock(v, false);
    expect(q.scale).toBe(Math.fround(0.2));
    expect(q.zeroPoint).toBe(5);
    expect([...q.codes]).toEqual([0, 15, 7, 5, ...Array(12).fill(10)]);
  });

  it('quantizeInt4 lays out B [N, k_blocks, block/2], scales [N, k_blocks], zero points [N, ceil(k_blocks/2)]', () => {
    const N = 2, K = 40, bs = 16, w = new Float32Array(N * K);
    w[1 * K + 33] = 4; // row 1, block 2, position 1 in the block → high nibble of byte 0 of that blob
    w[1 * K + 34] = -2;
    const sym = quantizeInt4(w, N, K, bs, true);
    expect([sym.kBlocks, sym.packed.length, sym.scales.length, sym.zeroPoints]).toEqual([3, N * 3 * 8, N * 3, undefined]);
    const blob = (1 * 3 + 2) * 8;
    expect(sym.scales[1 * 3 + 2]).toBe(-0.5); // 4 / −8
    expect(sym.packed[blob]).toBe(8 | (0 << 4)); // codes 8 (0) and 0 (4 = −8·−0.5)
    expect(sym.packed[blob + 1]).toBe(12 | (8 << 4)); // −2 → 12, then a padded 0 → 8
    expect(sym.packed[0]).toBe(0x88); // all-zero blocks: scale 0, code 8
    const asym = quantizeInt4(w, N, K, bs, false);
    expect(asym.zeroPoints!.length).toBe(N * 2);
    expect(unpack4(asym.zeroPoints!.subarray(2, 4), 3)[2]).toBe(5); // min −2, max 4: scale 0.4, zp 5
    expect(maxAbsDiff(dequantizeInt4(asym), w)).toBeLessThan(1e-6); // 4, −2, 0 are all on the grid
  });

  /** A one-node MatMulNBits model; returns ORT's Y [M, N] for A [M, K]. */
  async function ortMatMulNBits(a: Float32Array, M: number, w: ReturnType<typeof quantizeInt4>): Promise<Float32Array> {
    const inputs = ['A', 'B', 'scales', ...(w.zeroPoints ? ['zero_points'] : [])];
    const bytes = encodeModel({
      irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
      graph: {
        name: 'nbits',
        node: [{ opType: 'MatMulNBits', domain: 'com.microsoft', input: inputs, output: ['Y'],
          attribute: [attr.int('K', w.k), attr.int('N', w.n), attr.int('bits', 4), attr.int('block_size', w.blockSize)] }],
        initializer: [uint8Tensor('B', [w.n, w.kBlocks, w.blockSize / 2], w.packed), floatTensor('scales', [w.n, w.kBlocks], w.scales),
          ...(w.zeroPoints ? [uint8Tensor('zero_points', [w.n, Math.ceil(w.kBlocks / 2)], w.zeroPoints)] : [])],
        input: [valueInfo('A', DT.FLOAT, [M, w.k])], output: [valueInfo('Y', DT.FLOAT, [M, w.n])],
      },
    });
    const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
    return (await s.run({ A: new ort.Tensor('float32', a, [M, w.k]) })).Y.data as Float32Array;
  }

  it.each([[16, true], [32, true], [32, false], [64, false]] as const)('ORT MatMulNBits (block %i, symmetric %s) computes A · dequant(W)ᵀ', async (bs, sym) => {
    const M = 3, N = 5, K = 96 + 8, u = mulberry32(bs + (sym ? 1 : 0));
    const w = Float32Array.from({ length: N * K }, () => u() * 2 - 0.7), a = Float32Array.from({ length: M * K }, () => u() - 0.5);
    const q = quantizeInt4(w, N, K, bs, sym), deq = dequantizeInt4(q);
    const want = new Float64Array(M * N);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[m * N + n] += a[m * K + k] * deq[n * K + k];
    expect(maxAbsDiff(await ortMatMulNBits(a, M, q), want)).toBeLessThan(1e-4);
    expect(maxAbsDiff(deq, w)).toBeGreaterThan(1e-3); // the quantization did move the weights
  });
});

/** The weights an int4 export effectively runs: each linear weight quantized and dequantized. */
function dequantizedCopy(w: NamedTensors, bs: number, sym: boolean): NamedTensors {
  return new Map([...w].map(([name, t]) => [name, /(proj)\.weight$/.test(name)
    ? { shape: t.shape, data: dequantizeInt4(quantizeInt4(t.data, t.shape[0], t.shape[1], bs, sym)) } : t]));
}

describe('int4 and fp16 exports', () => {
  it.each([true, false])('int4 (symmetric %s) = fp32 export of the dequantized weights; embedding and head stay fp32', async (sym) => {
    const cfg = tinyConfig(false), w = testWeights(cfg, 31), ids = randomIds(2 * 6, cfg.vocab_size, 32);
    const bytes = exportLlamaOnnx(cfg, w, { dtype: 'int4', symmetric: sym, blockSize: 16 });
    expect(teacherDtypeOf(bytes)).toBe('int4');
    expect(teacherDtypeOf(exportLlamaOnnx(cfg, w))).toBe('fp32');
    expect(ioNamesOf(bytes).inputs).toEqual(['input_ids', 'attention_mask', 'position_ids']);
    const got = await runLogits(await openOnnxSession(bytes, { device: 'cpu' }), ids, 2, 6);
    const want = await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, dequantizedCopy(w, 16, sym)), { device: 'cpu' }), ids, 2, 6);
    expect(maxAbsDiff(got.logits, want.logits)).toBeLessThan(1e-4);
  });

  it('fp16 export declares fp16 logits and past, fp32 ids', async () => {
    const cfg = tinyConfig(true), bytes = exportLlamaOnnx(cfg, testWeights(cfg, 3), { dtype: 'fp16', io: 'optimum-kv' });
    const h = await openOnnxSession(bytes, { device: 'cpu' });
    const type = (name: string) => h.session.inputMetadata.concat(h.session.outputMetadata).find((m) => m.name === name);
    expect([type('input_ids'), type('past_key_values.0.key'), type('logits'), type('present.1.value')].map((m) => m && 'type' in m && m.type))
      .toEqual(['int64', 'float16', 'float16', 'float16']);
    const { logits } = await runLogits(h, randomIds(6, cfg.vocab_size, 1), 1, 6);
    expect(logits.every(Number.isFinite)).toBe(true);
  });

  describe('on a trained-ish model (60 Adam steps on a peaked Markov chain)', () => {
    const cfg = tinyConfig(true, { hidden_size: 64, intermediate_size: 128 }), B = 4, L = 32;
    const ids = markovStream(cfg.vocab_size, 4000, 1).subarray(1000, 1000 + B * L);
    let weights: NamedTensors, fp32: Float32Array;
    beforeAll(async () => {
      weights = await trainTiny(cfg, 60);
      fp32 = (await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, weights), { device: 'cpu' }), ids, B, L)).logits;
    });
    const compare = async (opts: Parameters<typeof exportLlamaOnnx>[2]) => {
      const got = (await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, weights, opts), { device: 'cpu' }), ids, B, L)).logits;
      const c = new LogitComparison(cfg.vocab_size);
      c.add(fp32, got, B * L);
      return { maxDiff: maxAbsDiff(got, fp32), ...c.result() };
    };

    it('fp16: |Δlogit| < 0.03, top-1 agreement 100%, KL < 1e-4', async () => {
      const r = await compare({ dtype: 'fp16' });
      expect(r.maxDiff).toBeLessThan(0.03);
      expect(r.top1_agreement).toBe(1);
      expect(r.mean_kl).toBeLessThan(1e-4);
    });

    it.each([true, false])('int4 block 32 (symmetric %s): top-1 agreement ≥ 97%, KL < 0.02 nats', async (symmetric) => {
      const r = await compare({ dtype: 'int4', symmetric });
      expect(r.top1_agreement).toBeGreaterThanOrEqual(0.97);
      expect(r.mean_kl).toBeLessThan(0.02);
      expect(r.maxDiff).toBeGreaterThan(1e-3); // really quantized
    });
  });

  it('what the CPU provider runs: int4 MatMulNBits in fp32; fp16 wrapped in Casts on x86-64', async () => {
    const cfg = tinyConfig(true), w = testWeights(cfg, 2), dir = mkdtempSync(join(tmpdir(), 'kd-placement-'));
    const path = (d: 'fp32' | 'fp16' | 'int4') => {
      writeOnnx(join(dir, `${d}.onnx`), exportLlamaOnnx(cfg, w, { dtype: d }));
      return join(dir, `${d}.onnx`);
    };
    const fp32 = await cpuPlacement(path('fp32'));
    expect(fp32.insertedCasts).toBe(0);
    const int4 = await cpuPlacement(path('int4'));
    expect(int4.floatInputs['com.microsoft.MatMulNBits']).toEqual(['f32,f32']);
    expect(int4.weights.u8).toBe(2 * 7 * 2); // codes and zero points of 7 linears per layer; the embedding (tied head) stays f32
    const fp16 = await cpuPlacement(path('fp16'));
    if (process.arch === 'x64') { // no fp16 GEMM in MLAS on x86-64: ORT computes in fp32 between inserted Casts
      expect(fp16.insertedCasts).toBeGreaterThan(0);
      expect(fp16.floatInputs.MatMul).toEqual(['f32,f32']);
      expect(fp16.floatInputs.Softmax).toEqual(['f32']);
    }
  });
});

