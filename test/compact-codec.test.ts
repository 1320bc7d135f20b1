/**
 * The compact slot codec (lib/shards/compact.ts), its KL error (lib/logits/codec-error.ts) and the
 * `compact` shard layout through writeShard / readShard / readShardBlock and manifest validation.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addKlError, emptyKlTotals } from '../lib/logits/codec-error.js';
import { decodeHalf } from '../lib/logits/fp16.js';
import { readShardBlock } from '../lib/shards/reader.js';
import { compactValues, decodeCompactSlots, encodeCompactSlots } from '../lib/shards/compact.js';
import { readShard, writeShard, type ShardLayout } from '../lib/shards/index.js';
import { validateManifest } from '../lib/shards/manifest-validate.js';
import { makeRows } from './shard-rows.js';

const STEP = 1 / 16;

function decode(ids: Uint8Array, codes: Uint8Array, k: number, step = STEP, wide = false) {
  const outIds = wide ? new Uint32Array(codes.length) : new Uint16Array(codes.length), half = new Uint16Array(codes.length);
  decodeCompactSlots({ ids, codes }, k, step, outIds, half);
  return { ids: Array.from(outIds), values: Array.from(decodeHalf(half)) };
}

describe('compact slot codec', () => {
  it('stores ids as varint gaps in id order and values as 8-bit codes, by hand', () => {
    // codes: 0.1/δ = 1.6 → 2, 0.3/δ = 4.8 → 5, 20/δ = 320 → clamped to 255
    const enc = encodeCompactSlots(Uint32Array.of(7, 3, 300, 5), Float32Array.of(0, -0.1, -0.3, -20), 4, STEP);
    expect(Array.from(enc.ids)).toEqual([3, 2, 2, 165, 2]); // 3, +2 = 5, +2 = 7, +293 = 300 (293 = 37 + 2·128)
    expect(Array.from(enc.codes)).toEqual([2, 255, 0, 5]); // ids 3, 5, 7, 300
    expect(decode(enc.ids, enc.codes, 4)).toEqual({ ids: [7, 3, 300, 5], values: [0, -0.125, -0.3125, -15.9375] });
  });

  it('keeps repeated draws adjacent and orders equal codes by id', () => {
    const sampled = encodeCompactSlots(Uint32Array.of(9, 9, 9, 2), Float32Array.of(0, 0, 0, -1), 4, STEP);
    expect(Array.from(sampled.ids)).toEqual([2, 7, 0, 0]);
    expect(decode(sampled.ids, sampled.codes, 4)).toEqual({ ids: [9, 9, 9, 2], values: [0, 0, 0, -1] });
    const tie = encodeCompactSlots(Uint32Array.of(8, 4), Float32Array.of(0, -0.01), 2, STEP);
    expect(decode(tie.ids, tie.codes, 2)).toEqual({ ids: [4, 8], values: [0, 0] });
  });

  it('decodes random rows to the sorted (code, id) pairs, wide ids included', () => {
    for (const [layout, vocab] of [[{ seqLen: 16, k: 8 }, 4096], [{ seqLen: 5, k: 3 }, 2 ** 31]] as const) {
      const [row] = makeRows(1, { ...layout, numTemps: 1, idDtype: 'uint32', valueDtype: 'float32' }, vocab, 3);
      const enc = encodeCompactSlots(row.topk_ids, row.topk_logits, layout.k, STEP);
      const got = decode(enc.ids, enc.codes, layout.k, STEP, true);
      for (let t = 0; t < layout.seqLen; t++) {
        const pairs = Array.from({ length: layout.k }, (_, j) => {
          const s = t * layout.k + j;
          return [Math.min(255, Math.round(-row.topk_logits[s] / STEP)), row.topk_ids[s]];
        }).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        expect(got.ids.slice(t * layout.k, (t + 1) * layout.k)).toEqual(pairs.map((p) => p[1]));
        expect(got.values.slice(t * layout.k, (t + 1) * layout.k)).toEqual(pairs.map((p) => -p[0] * STEP || 0));
      }
    }
  });

  it('refuses gaps that end early, trail, or overflow the id width', () => {
    const enc = encodeCompactSlots(Uint32Array.of(1, 70000), Float32Array.of(0, -1), 2, STEP);
    expect(() => decode(enc.ids.subarray(0, 2), enc.codes, 2, STEP, true)).toThrow(/ends inside position 0/);
    expect(() => decode(Uint8Array.from([...enc.ids, 0]), enc.codes, 2, STEP, true)).toThrow(/1 bytes after the 2 ids/);
    expect(() => decode(enc.ids, enc.codes, 2)).toThrow(/id 70000 at position 0 does not fit uint16/);
  });
});

describe('codec KL error', () => {
  it('equals KL of the normalised k + 1 buckets, computed in float64 by hand', () => {
    // One position, k = 3, τ = 2; the tail is what Σ leaves.
    const exact = [0, -0.7, -1.9], decoded = [0, -0.75, -1.875], lz = Math.fround(1.4), tau = 2; // log Z as stored, fp32
    const buckets = (v: number[]) => {
      const p = v.map((x) => Math.exp(x / tau - lz));
      const all = [...p, Math.max(1 - p.reduce((s, x) => s + x, 0), 1e-6)];
      const z = all.reduce((s, x) => s + x, 0);
      return all.map((x) => x / z);
    };
    const P = buckets(exact), Q = buckets(decoded);
    const want = P.reduce((s, p, i) => s + p * Math.log(p / Q[i]), 0);
    const totals = emptyKlTotals();
    addKlError(totals, [5, 6, 7], exact, decoded, Float32Array.of(9, lz), 3, 1, tau);
    expect(totals.positions).toBe(1);
    expect(totals.sum).toBeCloseTo(want, 12);
    expect(totals.max).toBeCloseTo(want, 12);
    expect(want).toBeGreaterThan(1e-5);
  });

  it('counts a repeated draw once and is 0 when nothing changed', () => {
    const same = emptyKlTotals();
    addKlError(same, [4, 4, 2], [0, 0, -1], [0, 0, -1], Float32Array.of(0.5), 3, 0, 1);
    expect(same.sum).toBe(0);
    // Repeats counted once: the same as the two distinct slots alone.
    const rep = emptyKlTotals(), single = emptyKlTotals();
    addKlError(rep, [4, 4, 2], [0, 0, -1], [0, 0, -1.0625], Float32Array.of(0.5), 3, 0, 1);
    addKlError(single, [4, 2], [0, -1], [0, -1.0625], Float32Array.of(0.5), 2, 0, 1);
    expect(rep.sum).toBeCloseTo(single.sum, 15);
    expect(rep.sum).toBeGreaterThan(0);
  });
});

describe('compact shard layout', () => {
  const layout: ShardLayout = { seqLen: 16, k: 8, numTemps: 3, idDtype: 'uint16', valueDtype: 'float16', layout: 'compact', valueStep: STEP };

  it('round-trips through writeShard, readShard and readShardBlock; reports the KL error it wrote', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kd-compact-'));
    const rows = makeRows(6, { ...layout, idDtype: 'uint32', valueDtype: 'float32', layout: undefined, valueStep: undefined }, 4096, 11);
    const path = join(dir, 'shard-00000.parquet');
    const res = await writeShard(path, rows, { ...layout, errorTemperature: 1 });
    const back = await readShard(path, layout);
    const block = await readShardBlock(path, layout);
    const want = emptyKlTotals();
    rows.forEach((r, i) => {
      const enc = encodeCompactSlots(r.topk_ids, r.topk_logits, layout.k, STEP);
      const d = decode(enc.ids, enc.codes, layout.k);
      expect(Array.from(back[i].topk_ids)).toEqual(d.ids);
      expect(Array.from(back[i].topk_logits)).toEqual(d.values);
      expect(Array.from(back[i].input_ids)).toEqual(Array.from(r.input_ids));
      expect(Array.from(back[i].target_ids)).toEqual(Array.from(r.target_ids));
      expect(Array.from(back[i].log_z)).toEqual(Array.from(r.log_z));
      const n = layout.seqLen * layout.k;
      expect(Array.from(block.topkIds.subarray(i * n, (i + 1) * n))).toEqual(d.ids);
      expect(Array.from(decodeHalf(block.topkLogits.subarray(i * n, (i + 1) * n) as Uint16Array))).toEqual(d.values);
      addKlError(want, r.topk_ids, r.topk_logits, compactValues(r.topk_logits, STEP), r.log_z, layout.k, 0, 1);
    });
    expect(res.klError).toEqual(want);
    expect(want.positions).toBe(6 * 16);
    await expect(readShard(path, { ...layout, valueStep: 1 / 8 })).rejects.toThrow(/shard does not match manifest \(value_step=0.0625 expected 0.125\)/);
  });

  it('refuses a value step that is not 2^-m, m = 0..5', async () => {
    const rows = makeRows(1, { ...layout, layout: undefined, valueStep: undefined }, 4096, 1);
    await expect(writeShard('/tmp/kd-never.parquet', rows, { ...layout, valueStep: 0.1 })).rejects.toThrow(/value_step must be a power of two 2\^-m, m = 0..5/);
    await expect(writeShard('/tmp/kd-never.parquet', rows, { ...layout, valueStep: 2 ** -6 })).rejects.toThrow(/got 0.015625/);
    await expect(writeShard('/tmp/kd-never.parquet', rows, { ...layout, layout: 'packed-le-split' })).rejects.toThrow(/valueStep is for layout compact/);
  });
});

describe('compact manifest', () => {
  const base = () => ({
    format: 'kd-logits', version: 1,
    teacher: { path: 't.onnx', sha256: 'a', dtype: 'fp32', execution_provider: 'cpu', input_names: ['input_ids'], output_names: ['logits'] },
    tokenizer: { sha256: 'b', vocab_size: 4096, real_vocab_size: 4096 }, windows: { source: 'w', sha256: 'c' },
    seq_len: 16, k: 8, mode: 'topk', temperatures: [1],
    encoding: { ids: 'uint16', values: 'float16', layout: 'compact', value_step: STEP } as Record<string, unknown>,
    shards: [{ file: 'shard-00000.parquet', rows: 2, first_sample_id: '0', bytes: 10, sha256: 'd', kl_error: { mean: 1e-4, max: 2e-3 } as unknown }],
    totals: { rows: 2, positions: 32, bytes: 10 }, tool_version: '0', created_at: 'x',
  });
  it('needs a valid value_step with layout compact, and kl_error only there', () => {
    expect(validateManifest(base(), 'm.json').encoding.value_step).toBe(STEP);
    const noStep = base();
    delete noStep.encoding.value_step;
    expect(() => validateManifest(noStep, 'm.json')).toThrow("m.json: field 'encoding.value_step': value_step must be a power of two");
    const packed = base();
    packed.encoding = { ids: 'uint16', values: 'float16', layout: 'packed-le-split' };
    expect(() => validateManifest(packed, 'm.json')).toThrow('m.json: shards[0].kl_error must be {mean, max} ≥ 0 of a compact dataset');
    const badKl = base();
    badKl.shards[0].kl_error = { mean: 'x' };
    expect(() => validateManifest(badKl, 'm.json')).toThrow(/kl_error must be/);
  });
});
