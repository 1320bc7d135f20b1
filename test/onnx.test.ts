import { mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import { countParameters, LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { mulberry32 } from '../lib/util/random.js';
import { NamedTensors } from '../lib/model/tensors.js';
import { GraphBuilder } from '../lib/onnx/graph-builder.js';
import {
  addScoringOutputs, addTopKOutputs, exportLlamaOnnx, ioNamesOf, openOnnxSession, positionIdsFromMask,
  externalDataFiles, readOnnx, parameterCountOf, runLogits, runScoring, runTopK, vocabSizeOf, writeDerivedOnnx, writeOnnx,
} from '../lib/onnx/index.js';
import { attr, decodeModel, DT, encodeModel, floatTensor, onnx, valueInfo } from '../lib/onnx/proto.js';

const tiny = (tie: boolean): LlamaConfig => resolveLlamaConfig({
  vocab_size: 97, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: tie,
});

/**
 * initLlamaWeights scaled up so activations are O(1): with std 0.02 the attention branch moves
 * the logits by < 1e-3, and a wrong head mapping could hide under the 1e-4 tolerance.
 */
function testWeights(cfg: LlamaConfig, seed: number): NamedTensors {
  const w = initLlamaWeights(cfg, seed), u = mulberry32(seed + 1);
  for (const [name, t] of w) {
    for (let i = 0; i < t.data.length; i++) {
      t.data[i] = name.endsWith('norm.weight') ? 1 + 0.4 * (u() - 0.5) : t.data[i] * (name.includes('embed') ? 25 : 10);
    }
  }
  return w;
}

/** Plain float64 HF LlamaForCausalLM forward of one unpadded sequence → logits [L·V]. */
function referenceLogits(cfg: LlamaConfig, w: NamedTensors, ids: number[]): Float64Array {
  const D = cfg.hidden_size, H = cfg.num_attention_heads, KV = cfg.num_key_value_heads, hd = D / H, V = cfg.vocab_size;
  const W = (n: string) => w.get(n)!.data;
  const linear = (m: Float32Array, x: Float64Array, out: number) => {
    const y = new Float64Array(out), inn = x.length;
    for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) y[o] += m[o * inn + i] * x[i];
    return y;
  };
  const rms = (x: Float64Array, g: Float32Array) => {
    const r = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + cfg.rms_norm_eps);
    return x.map((v, i) => v * r * g[i]);
  };
  const rope = (x: Float64Array, pos: number) => {
    const y = new Float64Array(x.length), half = hd / 2;
    for (let h0 = 0; h0 < x.length; h0 += hd) {
      for (let i = 0; i < half; i++) {
        const a = pos * cfg.rope_theta ** (-(2 * i) / hd), c = Math.cos(a), s = Math.sin(a);
        const x1 = x[h0 + i], x2 = x[h0 + i + half];
        y[h0 + i] = x1 * c - x2 * s;
        y[h0 + i + half] = x2 * c + x1 * s;
      }
    }
    return y;
  };
  const embed = W('model.embed_tokens.weight');
  let h = ids.map((id) => Float64Array.from(embed.subarray(id * D, (id + 1) * D)));
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const xs = h.map((x) => rms(x, W(`${p}.input_layernorm.weight`)));
    const q = xs.map((x, t) => rope(linear(W(`${p}.self_attn.q_proj.weight`), x, D), t));
    const k = xs.map((x, t) => rope(linear(W(`${p}.self_attn.k_proj.weight`), x, KV * hd), t));
    const v = xs.map((x) => linear(W(`${p}.self_attn.v_proj.weight`), x, KV * hd));
    h = h.map((hid, t) => {
      const ctx = new Float64Array(D);
      for (let head = 0; head < H; head++) {
        const kvh = Math.floor(head / (H / KV));
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[t][head * hd + i] * k[s][kvh * hd + i];
          return dot / Math.sqrt(hd);
        });
        const m = Math.max(...scores), e = scores.map((x) => Math.exp(x - m)), z = e.reduce((a, b) => a + b);
        for (let s = 0; s <= t; s++) for (let i = 0; i < hd; i++) ctx[head * hd + i] += (e[s] / z) * v[s][kvh * hd + i];
      }
      const o = linear(W(`${p}.self_attn.o_proj.weight`), ctx, D);
      return hid.map((x, i) => x + o[i]);
    });
    h = h.map((hid) => {
      const x = rms(hid, W(`${p}.post_attention_layernorm.weight`));
      const g = linear(W(`${p}.mlp.gate_proj.weight`), x, cfg.intermediate_size);
      const up = linear(W(`${p}.mlp.up_proj.weight`), x, cfg.intermediate_size);
      const m = linear(W(`${p}.mlp.down_proj.weight`), g.map((a, i) => (a / (1 + Math.exp(-a))) * up[i]), D);
      return hid.map((v0, i) => v0 + m[i]);
    });
  }
  const head = cfg.tie_word_embeddings ? embed : W('lm_head.weight');
  const out = new Float64Array(ids.length * V);
  h.forEach((hid, t) => out.set(linear(head, rms(hid, W('model.norm.weight')), V), t * V));
  return out;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const randomIds = (n: number, vocab: number, seed: number) => {
  const u = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(u() * vocab));
};

/** JS reference of the precompute signal for one row of logits. */
function topkReference(row: ArrayLike<number>, k: number, temps: number[]) {
  const idx = Array.from(row, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
  const max = row[idx[0]];
  const logZ = temps.map((t) => {
    let s = 0;
    for (let i = 0; i < row.length; i++) s += Math.exp((row[i] - max) / t);
    return Math.log(s);
  });
  return { ids: idx, values: idx.map((i) => row[i] - max), logZ };
}

describe.each([true, false])('exportLlamaOnnx (tie_word_embeddings=%s)', (tie) => {
  const cfg = tiny(tie), w = testWeights(cfg, tie ? 7 : 8), bytes = exportLlamaOnnx(cfg, w);
  const B = 2, L = 9, V = cfg.vocab_size, ids = randomIds(B * L, V, 3);

  it('matches a float64 reference forward with Optimum IO names', async () => {
    const h = await openOnnxSession(bytes, { device: 'cpu' });
    expect(h.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids']);
    expect(h.outputNames).toEqual(['logits']);
    expect(vocabSizeOf(bytes)).toBe(V);
    const { logits, dims } = await runLogits(h, ids, B, L);
    expect(dims).toEqual([B, L, V]);
    const ref = new Float64Array(B * L * V);
    for (let b = 0; b < B; b++) ref.set(referenceLogits(cfg, w, [...ids.subarray(b * L, (b + 1) * L)]), b * L * V);
    expect(Math.max(...ref.map(Math.abs))).toBeGreaterThan(1); // the test weights give O(1) logits
    expect(maxAbsDiff(logits, ref)).toBeLessThan(1e-4);
  });

  it('left padding: real positions equal the unpadded sequence, padded ones stay finite', async () => {
    const h = await openOnnxSession(bytes, { device: 'cpu' });
    const mask = Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    const { logits } = await runLogits(h, ids, B, L, mask);
    expect(logits.every(Number.isFinite)).toBe(true);
    const ref = referenceLogits(cfg, w, [...ids.subarray(L + 3, 2 * L)]);
    expect(maxAbsDiff(logits.subarray((L + 3) * V, 2 * L * V), ref)).toBeLessThan(1e-4);
  });

  it('addTopKOutputs gives sorted top-k, shifted values and log_z; full logits are gone', async () => {
    const k = 5, temps = [1, 2, 0.5];
    const { logits } = await runLogits(await openOnnxSession(bytes, { device: 'cpu' }), ids, B, L);
    const topkBytes = addTopKOutputs(bytes, { k, temperatures: temps });
    expect(ioNamesOf(topkBytes).outputs).toEqual(['topk_ids', 'topk_logits', 'log_z', 'logits_width']);
    const h = await openOnnxSession(topkBytes, { device: 'cpu' });
    expect(h.outputNames).toEqual(['topk_ids', 'topk_logits', 'log_z', 'logits_width']);
    const got = await runTopK(h, ids, B, L);
    expect([got.k, got.numTemperatures, got.logitsWidth]).toEqual([k, temps.length, V]);
    for (let r = 0; r < B * L; r++) {
      const ref = topkReference(logits.subarray(r * V, (r + 1) * V), k, temps);
      expect([...got.topkIds.subarray(r * k, (r + 1) * k)]).toEqual(ref.ids);
      expect(maxAbsDiff(got.topkLogits.subarray(r * k, (r + 1) * k), ref.values)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.logZ.subarray(r * 3, (r + 1) * 3), ref.logZ)).toBeLessThan(1e-4);
    }
  });

  it('parameterCountOf counts what HF counts (RoPE inv_freq is a buffer, not a parameter)', () => {
    expect(parameterCountOf(bytes)).toBe(countParameters(cfg));
  });

  it('addScoringOutputs gives log_softmax at the labels', async () => {
    const { logits } = await runLogits(await openOnnxSession(bytes, { device: 'cpu' }), ids, B, L);
    const labels = randomIds(B * L, V, 4);
    labels[3] = -100;
    const scoring = addScoringOutputs(bytes);
    expect(ioNamesOf(scoring)).toEqual({ inputs: ['input_ids', 'attention_mask', 'position_ids', 'labels'], outputs: ['token_logprobs'] });
    const got = await runScoring(await openOnnxSession(scoring, { device: 'cpu' }), ids, labels, B, L);
    expect(got.length).toBe(B * L);
    for (let r = 0; r < B * L; r++) {
      const row = logits.subarray(r * V, (r + 1) * V), m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0));
      expect(Math.abs(got[r] - (row[Math.max(labels[r], 0)] - lse))).toBeLessThan(1e-4);
    }
  });
});

/**
 * A stand-in for a user's fp16 decoder export: input_ids (int32) → fixed table rows as fp16
 * `logits`, plus empty KV-cache inputs and use_cache_branch that must be fed (they shift the
 * logits by the past length and the flag, which must both be 0).
 */
function fp16Decoder(V: number, outputName = 'logits'): { bytes: Uint8Array; table: Float32Array } {
  const table = new Float32Array(V * V);
  for (let i = 0; i < V; i++) for (let j = 0; j < V; j++) table[i * V + j] = ((i * 31 + j * 17) % V) / 8 - 6;
  const g = new GraphBuilder(17);
  const rows = g.op('Gather', ['table', 'input_ids'], [attr.int('axis', 0)]);
  const pastLen = g.op('Gather', [g.op('Shape', ['past_key_values.0.key']), g.int64([2], [])], [attr.int('axis', 0)]);
  const shift = g.op('Add', [g.op('Cast', [pastLen], [attr.int('to', DT.FLOAT)]),
    g.op('Cast', ['use_cache_branch'], [attr.int('to', DT.FLOAT)])]);
  const v = g.op('Shape', ['past_key_values.0.value']); // consumed so the input stays live
  const shifted = g.op('Add', [rows, g.op('Add', [shift, g.op('Cast', [g.op('ReduceMin', [v], [attr.int('keepdims', 0)])], [attr.int('to', DT.FLOAT)])])]);
  g.named(outputName, 'Cast', [shifted], [attr.int('to', DT.FLOAT16)]);
  const past = ['batch_size', 2, 'past_sequence_length', 4];
  const bytes = encodeModel({
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'fp16_decoder', node: g.nodes, initializer: [floatTensor('table', [V, V], table), ...g.initializers],
      input: [valueInfo('input_ids', DT.INT32, ['batch_size', 'sequence_length']),
        valueInfo('past_key_values.0.key', DT.FLOAT16, past), valueInfo('past_key_values.0.value', DT.FLOAT16, past),
        valueInfo('use_cache_branch', DT.BOOL, [1])],
      output: [valueInfo(outputName, DT.FLOAT16, ['batch_size', 'sequence_length', V])],
    },
  });
  return { bytes, table };
}

describe('graph surgery on other decoders', () => {
  it('fp16 logits with KV-cache inputs: feeds from declared inputs, Cast before TopK', async () => {
    const V = 97, B = 2, L = 3, k = 4, temps = [1, 3];
    const { bytes, table } = fp16Decoder(V);
    const ids = randomIds(B * L, V, 5);
    const plain = await runLogits(await openOnnxSession(bytes, { device: 'cpu' }), ids, B, L);
    const half = decodeHalf(encodeHalf(table));
    expect(maxAbsDiff(plain.logits.subarray(0, V), half.subarray(ids[0] * V, (ids[0] + 1) * V))).toBe(0);
    const got = await runTopK(await openOnnxSession(addTopKOutputs(bytes, { k, temperatures: temps }), { device: 'cpu' }), ids, B, L);
    for (let r = 0; r < B * L; r++) {
      const ref = topkReference(half.subarray(ids[r] * V, (ids[r] + 1) * V), k, temps);
      expect([...got.topkIds.subarray(r * k, (r + 1) * k)]).toEqual(ref.ids);
      expect(maxAbsDiff(got.topkLogits.subarray(r * k, (r + 1) * k), ref.values)).toBe(0);
      expect(maxAbsDiff(got.logZ.subarray(r * 2, (r + 1) * 2), ref.logZ)).toBeLessThan(1e-5);
    }
  });

  it('log_z with the squaring shortcut (exp(s/τ) = exp(s/2τ)²) equals a float64 reference', async () => {
    // fp32 table decoder, V = 1500, logits in [-40, 8]: chains 4 → 2 → 1 → 0.5 → 0.25 and 3 → 1.5
    const V = 1500, B = 2, L = 3, k = 6, temps = [1, 0.25, 2, 1.5, 0.5, 3, 4, 2.5];
    const u = mulberry32(21), table = Float32Array.from({ length: V * V }, () => Math.round((u() * 48 - 40) * 64) / 64);
    const g = new GraphBuilder(17);
    g.named('logits', 'Gather', ['table', 'input_ids'], [attr.int('axis', 0)]);
    const bytes = encodeModel({
      irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
      graph: { name: 'table', node: g.nodes, initializer: [floatTensor('table', [V, V], table)],
        input: [valueInfo('input_ids', DT.INT64, ['batch_size', 'sequence_length'])],
        output: [valueInfo('logits', DT.FLOAT, ['batch_size', 'sequence_length', V])] },
    });
    const ids = randomIds(B * L, V, 22);
    const got = await runTopK(await openOnnxSession(addTopKOutputs(bytes, { k, temperatures: temps }), { device: 'cpu' }), ids, B, L);
    for (let r = 0; r < B * L; r++) {
      const ref = topkReference(table.subarray(ids[r] * V, (ids[r] + 1) * V), k, temps);
      expect([...got.topkIds.subarray(r * k, (r + 1) * k)]).toEqual(ref.ids);
      expect(maxAbsDiff(got.logZ.subarray(r * temps.length, (r + 1) * temps.length), ref.logZ)).toBeLessThan(1e-6);
    }
  });

  it('refuses a model without logits, non-ONNX bytes and bad k', () => {
    const { bytes } = fp16Decoder(11, 'y');
    expect(() => addTopKOutputs(bytes, { k: 2, temperatures: [1], source: '/m/x.onnx' }))
      .toThrow("/m/x.onnx: ONNX model has no 'logits' output (outputs: y)");
    expect(() => addScoringOutputs(bytes, '/m/x.onnx')).toThrow("/m/x.onnx: ONNX model has no 'logits' output (outputs: y)");
    expect(() => addTopKOutputs(new TextEncoder().encode('hello world'), { k: 2, temperatures: [1], source: 'a.txt' }))
      .toThrow(/^a\.txt: not an ONNX model \(/);
    const ok = fp16Decoder(11).bytes;
    expect(() => addTopKOutputs(ok, { k: 12, temperatures: [1] })).toThrow('model: top-k k = 12 exceeds the vocabulary size 11');
    expect(() => addTopKOutputs(ok, { k: 2, temperatures: [0] })).toThrow(/temperatures must be/);
  });
});

/** Moves initializers ≥ 1 KiB into one external data file, as onnx.save_model does for > 2 GB models. */
function toExternalData(bytes: Uint8Array, dataPath: string): Uint8Array {
  const model = decodeModel(bytes), chunks: Uint8Array[] = [];
  let offset = 0;
  const graph = model.graph!;
  graph.initializer = (graph.initializer ?? []).map((t) => {
    const raw = t.rawData ?? new Uint8Array(0);
    if (raw.length < 1024) return t;
    chunks.push(raw);
    const entries = { location: basename(dataPath), offset: String(offset), length: String(raw.length) };
    offset += raw.length;
    return onnx.TensorProto.create({
      name: t.name, dims: t.dims, dataType: t.dataType, dataLocation: 1,
      externalData: Object.entries(entries).map(([key, value]) => ({ key, value })),
    });
  });
  writeFileSync(dataPath, Buffer.concat(chunks));
  return encodeModel(model);
}

describe('openOnnxSession and file I/O', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-onnx-'));

  it('reports a missing file and a non-ONNX file in one line', async () => {
    await expect(openOnnxSession(join(dir, 'nope.onnx'), { device: 'cpu' })).rejects.toThrow(`${join(dir, 'nope.onnx')}: teacher ONNX not found`);
    const bad = join(dir, 'bad.onnx');
    writeFileSync(bad, 'this is not a protobuf\n');
    const err = await openOnnxSession(bad, { device: 'cpu' }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(new RegExp(`^${bad}: not an ONNX model \\(.+\\)$`));
  });

  it('writeOnnx writes atomically and the file opens by path', async () => {
    const cfg = tiny(true), path = join(dir, 'student.onnx');
    writeOnnx(path, exportLlamaOnnx(cfg, testWeights(cfg, 1)));
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const h = await openOnnxSession(path, { device: 'cpu', threads: 1 });
    expect(h.executionProvider).toBe('cpu');
    expect(h.source).toBe(path);
    await expect(openOnnxSession(path, { device: 'cpu', threads: 0 })).rejects.toThrow(`${path}: threads must be an integer ≥ 1, got 0`);
  });

  it('a derived model of an external-data teacher runs from another directory', async () => {
    const cfg = tiny(false), w = testWeights(cfg, 2), bytes = exportLlamaOnnx(cfg, w);
    const src = join(dir, 'teacher'), out = join(dir, 'out');
    mkdirSync(src);
    mkdirSync(out);
    writeOnnx(join(src, 'model.onnx'), toExternalData(bytes, join(src, 'model.onnx_data')));
    const opts = { k: 3, temperatures: [1, 2] };
    const topk = addTopKOutputs(readOnnx(join(src, 'model.onnx')), opts);
    expect(externalDataFiles(topk)).toEqual(['model.onnx_data']);
    writeDerivedOnnx(join(src, 'model.onnx'), topk, join(out, 'topk.onnx'));
    expect(statSync(join(out, 'model.onnx_data')).ino).toBe(statSync(join(src, 'model.onnx_data')).ino); // a hard link, not a copy
    const ids = randomIds(2 * 5, cfg.vocab_size, 9);
    const got = await runTopK(await openOnnxSession(join(out, 'topk.onnx'), { device: 'cpu' }), ids, 2, 5);
    const want = await runTopK(await openOnnxSession(addTopKOutputs(bytes, opts), { device: 'cpu' }), ids, 2, 5);
    expect(got).toEqual(want);
  });

  it('positionIdsFromMask follows HF (cumsum − 1, 1 where masked)', () => {
    expect(positionIdsFromMask([0, 0, 1, 1, 1, 1, 1, 0], 2, 4)).toEqual([1, 1, 0, 1, 0, 1, 2, 1]);
  });

  it('exportLlamaOnnx names the bad tensor', () => {
    const cfg = tiny(true), w = testWeights(cfg, 1);
    w.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => exportLlamaOnnx(cfg, w, { source: 'ckpt' })).toThrow("ckpt: missing tensor 'model.layers.1.mlp.up_proj.weight'");
  });
});

describe('TF.js LlamaModel vs exported ONNX', () => {
  it.each([true, false])('logits agree within 1e-4 (tie_word_embeddings=%s)', async (tie) => {
    const tf = await import('@tensorflow/tfjs-core');
    const { initBackend } = await import('../lib/backend/select.js');
    const { LlamaModel } = await import('../lib/model/llama.js');
    await initBackend('cpu');
    const cfg = tiny(tie), w = testWeights(cfg, 11), B = 2, L = 9, ids = randomIds(B * L, cfg.vocab_size, 12);
    const model = new LlamaModel(cfg, w);
    const expected = tf.tidy(() => model.forward(tf.tensor2d(ids, [B, L], 'int32')).dataSync() as Float32Array);
    model.variables().forEach((v) => v.dispose());
    const { logits } = await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, w), { device: 'cpu' }), ids, B, L);
    expect(maxAbsDiff(logits, expected)).toBeLessThan(1e-4);
  });
});
