/**
 * Llama (default, head_dim, biases, rope_scaling linear and llama3), Qwen2 and Mistral against
 * reference logits from an independent PyTorch implementation (scripts/reference_architectures.py,
 * fixtures in test/fixtures/architectures/<case>/): the TF.js model, the ONNX export and a save/load
 * round trip through the HF layout each agree with the reference within 1e-4.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { layerWindow, projectionBiases, withHfDefaults } from '../lib/model/architectures.js';
import { countParameters, LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { LlamaModel } from '../lib/model/llama.js';
import { NamedTensors } from '../lib/model/tensors.js';
import { dequantizeInt4, exportLlamaOnnx, openOnnxSession, quantizeInt4, runLogits } from '../lib/onnx/index.js';
import { maxAbsDiff } from './fixtures/llama.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'architectures');
const CASES = readdirSync(FIXTURES).sort();
const TOL = 1e-4;
const tmp = mkdtempSync(join(tmpdir(), 'kd-arch-'));

interface Reference { input_ids: number[][]; logits: number[][][] }
const reference = (name: string): Reference => JSON.parse(readFileSync(join(FIXTURES, name, 'reference.json'), 'utf8'));
const flatIds = (r: Reference) => Int32Array.from(r.input_ids.flat());
const flatLogits = (r: Reference) => Float64Array.from(r.logits.flat(2));

function tfLogits(cfg: LlamaConfig, w: NamedTensors, r: Reference): Float32Array {
  const B = r.input_ids.length, L = r.input_ids[0].length;
  const m = new LlamaModel(cfg, w);
  const out = tf.tidy(() => m.forward(tf.tensor2d(flatIds(r), [B, L], 'int32')).dataSync() as Float32Array);
  m.dispose();
  return out;
}

async function onnxLogits(cfg: LlamaConfig, w: NamedTensors, r: Reference): Promise<Float32Array> {
  const h = await openOnnxSession(exportLlamaOnnx(cfg, w), { device: 'cpu' });
  return (await runLogits(h, flatIds(r), r.input_ids.length, r.input_ids[0].length)).logits;
}

const measured: Record<string, Record<string, number>> = {};
const record = (name: string, what: string, d: number) => { (measured[name] ??= {})[what] = d; return d; };

beforeAll(async () => { await initBackend('wasm'); });

describe.each(CASES)('%s', (name) => {
  const dir = join(FIXTURES, name);
  const ref = reference(name);
  const want = flatLogits(ref);

  it('TF.js logits (wasm and cpu backends) = PyTorch reference', async () => {
    const { cfg, weights } = loadCheckpoint(dir);
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1); // logits O(1): a 1e-4 match means something
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      expect(record(name, `tfjs-${backend}`, maxAbsDiff(tfLogits(cfg, weights, ref), want))).toBeLessThanOrEqual(TOL);
    }
  });

  it('ONNX export (onnxruntime CPU) logits = PyTorch reference', async () => {
    const { cfg, weights } = loadCheckpoint(dir);
    expect(record(name, 'onnx', maxAbsDiff(await onnxLogits(cfg, weights, ref), want))).toBeLessThanOrEqual(TOL);
  });

  it('save/load through the HF layout keeps the config fields and the logits', () => {
    const { cfg, weights } = loadCheckpoint(dir);
    const m = new LlamaModel(cfg, weights);
    const out = join(tmp, name);
    saveCheckpoint(out, cfg, m.toNamedTensors());
    m.dispose();
    const written = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    const given = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    for (const key of Object.keys(given)) expect([key, written[key]]).toEqual([key, given[key]]);
    const back = loadCheckpoint(out);
    expect(back.cfg).toEqual(cfg);
    expect([...back.weights.keys()].sort()).toEqual([...weights.keys()].sort());
    expect(record(name, 'roundtrip', maxAbsDiff(tfLogits(back.cfg, back.weights, ref), want))).toBeLessThanOrEqual(TOL);
  });
});

/** The config with the feature under test turned off: the reference must then be missed. */
const WITHOUT: Record<string, (c: LlamaConfig) => LlamaConfig> = {
  'llama-rope-linear': (c) => ({ ...c, rope_scaling: null }),
  llama3: (c) => ({ ...c, rope_scaling: null }),
  mistral: (c) => ({ ...c, sliding_window: null }),
  'qwen2-sliding': (c) => ({ ...c, use_sliding_window: false }),
  'qwen2': (c) => ({ ...c, rope_theta: 10000 }),
};

describe('each feature matters: without it the reference is missed by far more than the tolerance', () => {
  it.each(Object.keys(WITHOUT))('%s', (name) => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
    const ref = reference(name);
    expect(maxAbsDiff(tfLogits(WITHOUT[name](cfg), weights, ref), flatLogits(ref))).toBeGreaterThan(1e-2);
  });

  it.each(['llama-bias', 'qwen2'])('%s: zeroed biases', (name) => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
    const zeroed = new Map([...weights].map(([k, t]) => [k, k.endsWith('.bias') ? { shape: t.shape, data: new Float32Array(t.data.length) } : t]));
    const ref = reference(name);
    expect(maxAbsDiff(tfLogits(cfg, zeroed, ref), flatLogits(ref))).toBeGreaterThan(1e-2);
  });

  it('mistral: the window is w positions including the query (w ± 1 misses)', () => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, 'mistral'));
    const ref = reference('mistral'), w = cfg.sliding_window!;
    for (const off of [-1, 1]) expect(maxAbsDiff(tfLogits({ ...cfg, sliding_window: w + off }, weights, ref), flatLogits(ref))).toBeGreaterThan(1e-2);
  });
});

describe("HF's defaults for keys a config.json leaves out", () => {
  it('llama: tie_word_embeddings false, rms_norm_eps 1e-6, max_position_embeddings 2048, rope_theta 10000', () => {
    const given = JSON.parse(readFileSync(join(FIXTURES, 'llama-default', 'config.json'), 'utf8'));
    for (const k of ['tie_word_embeddings', 'rms_norm_eps', 'max_position_embeddings', 'rope_theta']) expect(given).not.toHaveProperty(k);
    const { cfg } = loadCheckpoint(join(FIXTURES, 'llama-default'));
    expect([cfg.tie_word_embeddings, cfg.rms_norm_eps, cfg.max_position_embeddings, cfg.rope_theta]).toEqual([false, 1e-6, 2048, 10000]);
  });

  const base = { vocab_size: 16, hidden_size: 64, intermediate_size: 32, num_hidden_layers: 30, num_attention_heads: 32 };
  const resolve = (raw: Record<string, unknown>) => resolveLlamaConfig(withHfDefaults(raw) as Partial<LlamaConfig>, 'c.json');

  it('mistral: sliding_window 4096 on every layer, 8 KV heads, 131072 positions, untied', () => {
    const cfg = resolve({ ...base, model_type: 'mistral' });
    expect([cfg.sliding_window, cfg.num_key_value_heads, cfg.max_position_embeddings, cfg.tie_word_embeddings, cfg.rms_norm_eps]).toEqual([4096, 8, 131072, false, 1e-6]);
    expect([layerWindow(cfg, 0), layerWindow(cfg, 29), cfg.architectures]).toEqual([4096, 4096, ['MistralForCausalLM']]);
    expect(layerWindow({ ...cfg, sliding_window: null }, 0)).toBe(null); // Mistral v0.2+ configs
  });

  it('qwen2: 32 KV heads, 32768 positions; the window only with use_sliding_window, from max_window_layers (28) on', () => {
    const cfg = resolve({ ...base, model_type: 'qwen2' });
    expect([cfg.num_key_value_heads, cfg.max_position_embeddings, cfg.use_sliding_window, cfg.sliding_window, cfg.max_window_layers]).toEqual([32, 32768, false, 4096, 28]);
    expect(Array.from({ length: 30 }, (_, i) => layerWindow(cfg, i)).every((w) => w === null)).toBe(true);
    const on = { ...cfg, use_sliding_window: true };
    expect([layerWindow(on, 27), layerWindow(on, 28), layerWindow({ ...on, layer_types: Array(30).fill('sliding_attention') }, 0)]).toEqual([null, 4096, 4096]);
  });

  it('a kd config (not a config.json) keeps kd defaults; model_type picks the architectures entry', () => {
    const cfg = resolveLlamaConfig({ ...base, model_type: 'qwen2' }, 'train config: model');
    expect([cfg.tie_word_embeddings, cfg.architectures, cfg.num_key_value_heads]).toEqual([true, ['Qwen2ForCausalLM'], 32]);
  });
});

describe('config.json files of the students users distill into resolve (as on the Hugging Face hub)', () => {
  const hub: Record<string, Record<string, unknown>> = {
    'TinyLlama-1.1B-Chat-v1.0': {
      architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 2048,
      initializer_range: 0.02, intermediate_size: 5632, max_position_embeddings: 2048, model_type: 'llama', num_attention_heads: 32,
      num_hidden_layers: 22, num_key_value_heads: 4, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0,
      tie_word_embeddings: false, torch_dtype: 'bfloat16', transformers_version: '4.35.0', use_cache: true, vocab_size: 32000,
    },
    'Llama-3.2-1B': {
      architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000, eos_token_id: 128001, head_dim: 64,
      hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false,
      model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
      rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
      rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true, vocab_size: 128256,
    },
    'Qwen2.5-0.5B': {
      architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu', hidden_size: 896,
      initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24, model_type: 'qwen2',
      num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768,
      tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.40.1', use_cache: true, use_mrope: false, use_sliding_window: false, vocab_size: 151936,
    },
    'Mistral-7B-v0.1': {
      architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
      intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32, num_hidden_layers: 32,
      num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16',
      transformers_version: '4.34.0.dev0', use_cache: true, vocab_size: 32000,
    },
  };
  // [parameters (HF's count), window of layer 0, q/k/v bias]
  const facts: Record<string, [number, number | null, boolean]> = {
    'TinyLlama-1.1B-Chat-v1.0': [1100048384, null, false], 'Llama-3.2-1B': [1235814400, null, false],
    'Qwen2.5-0.5B': [494032768, null, true], 'Mistral-7B-v0.1': [7241732096, 4096, false],
  };
  it.each(Object.keys(hub))('%s', (name) => {
    const cfg = resolveLlamaConfig(withHfDefaults(hub[name]) as Partial<LlamaConfig>, `${name}/config.json`);
    expect([countParameters(cfg), layerWindow(cfg, 0), projectionBiases(cfg).qkv]).toEqual(facts[name]);
  });
});

describe('refusals name the field', () => {
  const base = JSON.parse(readFileSync(join(FIXTURES, 'llama3', 'config.json'), 'utf8'));
  it.each([
    [{ rope_scaling: { rope_type: 'yarn', factor: 4 } }, "rope_scaling.rope_type 'yarn' is not implemented by kd (only default, linear, llama3)"],
    [{ rope_scaling: { rope_type: 'dynamic', factor: 4 } }, "rope_scaling.rope_type 'dynamic' is not implemented"],
    [{ rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [1] } }, "rope_scaling.rope_type 'longrope' is not implemented"],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, "rope_scaling.low_freq_factor must be a number > 0 for rope_type 'llama3'"],
    [{ rope_scaling: { rope_type: 'linear', factor: 2, beta: 1 } }, "rope_scaling.beta is not a parameter of rope_type 'linear' (it takes factor)"],
    [{ model_type: 'gemma' }, "model_type = \"gemma\" is not supported (kd implements 'llama', 'qwen2', 'mistral')"],
  ])('%j', (over, message) => {
    const raw = { ...base, ...over };
    expect(() => resolveLlamaConfig(raw, 'c.json')).toThrow(`c.json: `);
    expect(() => resolveLlamaConfig(raw, 'c.json')).toThrow(message);
  });

  it('a GPT-2 config (no Llama fields at all) is refused for its model_type, not for a missing field', () => {
    expect(() => resolveLlamaConfig({ model_type: 'gpt2', vocab_size: 50257, n_embd: 768 } as never, 'gpt2.json'))
      .toThrow("gpt2.json: model_type = \"gpt2\" is not supported (kd implements 'llama', 'qwen2', 'mistral')");
  });

  it('rope_scaling is accepted on qwen2 and mistral too (the same rope init functions)', () => {
    for (const model_type of ['qwen2', 'mistral']) expect(resolveLlamaConfig({ ...base, model_type, architectures: undefined }, 'c.json').rope_scaling).toEqual(base.rope_scaling);
  });

  it.each([
    ['qwen2', { attention_bias: true }, "c.json: attention_bias = true is not a field of model_type 'qwen2'"],
    ['mistral', { mlp_bias: true }, "c.json: mlp_bias = true is not a field of model_type 'mistral'"],
    ['llama', { sliding_window: 8 }, "c.json: sliding_window = 8 is not a field of model_type 'llama'"],
    ['llama', { use_sliding_window: true }, "c.json: use_sliding_window = true is not a field of model_type 'llama'"],
    ['qwen2', { layer_types: ['full_attention'] }, 'c.json: layer_types has 1 entries but num_hidden_layers is 2'],
  ])('%s %j', (model_type, over, message) => {
    const raw = { ...JSON.parse(readFileSync(join(FIXTURES, 'llama-default', 'config.json'), 'utf8')), model_type, architectures: undefined, ...over };
    expect(() => resolveLlamaConfig(raw, 'c.json')).toThrow(message);
  });
});

describe('training: the new pieces have gradients', () => {
  it.each(['llama-bias', 'qwen2', 'mistral', 'llama3', 'llama-head-dim'])('%s: analytic gradient of every variable = central difference', (name) => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
    const ref = reference(name), B = ref.input_ids.length, L = ref.input_ids[0].length;
    const m = new LlamaModel(cfg, weights);
    const ids = tf.tensor2d(flatIds(ref), [B, L], 'int32');
    const probe = tf.randomNormal([B * L, cfg.vocab_size], 0, 1, 'float32', 7);
    const loss = () => tf.sum(tf.mul(m.logits(ids), probe)) as tf.Scalar;
    const { grads } = tf.variableGrads(loss);
    for (const [pname, v] of m.params) {
      const g = grads[v.name].dataSync();
      expect(g.every(Number.isFinite)).toBe(true);
      // one coordinate per variable, the one with the largest gradient, by central difference in float32
      let j = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[j])) j = i;
      const at = v.dataSync().slice(), eps = 1e-2;
      const f = (x: number) => { at[j] = x; v.assign(tf.tensor(at, v.shape)); return loss().dataSync()[0]; };
      const x0 = at[j], numeric = (f(x0 + eps) - f(x0 - eps)) / (2 * eps);
      f(x0);
      expect([pname, Math.abs(numeric - g[j]) / Math.max(1, Math.abs(g[j]))]).toEqual([pname, expect.closeTo(0, 1)]);
      expect(Math.abs(g[j])).toBeGreaterThan(0);
    }
    tf.dispose([ids, probe, ...Object.values(grads)]);
    m.dispose();
  });
});

describe('ONNX with a KV cache: the sliding window counts absolute positions', () => {
  it('mistral optimum-kv: 8 tokens, then 4 cached steps = reference', async () => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, 'mistral'));
    const ref = reference('mistral'), row = ref.input_ids[0], L = row.length, V = cfg.vocab_size;
    const h = await openOnnxSession(exportLlamaOnnx(cfg, weights, { io: 'optimum-kv' }), { device: 'cpu' });
    const i64 = (v: number[], dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), dims);
    let past: Record<string, ort.Tensor> = {};
    const got: number[] = [];
    for (const [start, end] of [[0, 8], [8, 9], [9, 10], [10, 11], [11, 12]]) {
      const feeds: Record<string, ort.Tensor> = {
        input_ids: i64(row.slice(start, end), [1, end - start]), attention_mask: i64(Array(end).fill(1), [1, end]),
        position_ids: i64(Array.from({ length: end - start }, (_, t) => start + t), [1, end - start]),
      };
      for (const n of h.inputNames.filter((x) => x.startsWith('past_key_values'))) {
        feeds[n] = past[n.replace('past_key_values', 'present')] ?? new ort.Tensor('float32', new Float32Array(0), [1, cfg.num_key_value_heads, 0, cfg.hidden_size / cfg.num_attention_heads]);
      }
      past = await h.session.run(feeds);
      got.push(...(past.logits.data as Float32Array));
    }
    expect(record('mistral', 'onnx-kv-cache', maxAbsDiff(got, ref.logits[0].flat()))).toBeLessThanOrEqual(TOL);
    expect(got.length).toBe(L * V);
  });
});

describe('ONNX fp16 and int4 exports run the biases, windows and rope variants', () => {
  /** The weights an int4 export effectively runs: each projection weight quantized and dequantized (biases stay float32). */
  const dequantized = (w: NamedTensors): NamedTensors => new Map([...w].map(([n, t]) => [n, /proj\.weight$/.test(n)
    ? { shape: t.shape, data: dequantizeInt4(quantizeInt4(t.data, t.shape[0], t.shape[1], 32, false)) } : t]));

  it.each(['llama-bias', 'qwen2-sliding', 'mistral', 'llama3', 'llama-head-dim'])('%s', async (name) => {
    const { cfg, weights } = loadCheckpoint(join(FIXTURES, name));
    const ref = reference(name), want = flatLogits(ref), B = ref.input_ids.length, L = ref.input_ids[0].length;
    const run = async (w: NamedTensors, dtype: 'fp32' | 'fp16' | 'int4') =>
      (await runLogits(await openOnnxSession(exportLlamaOnnx(cfg, w, { dtype }), { device: 'cpu' }), flatIds(ref), B, L)).logits;
    const scale = Math.max(...want.map(Math.abs));
    // fp16: fp16-rounded weights and activations, within 0.5% of the logits' scale (3-25 here)
    expect(record(name, 'onnx-fp16', maxAbsDiff(await run(weights, 'fp16'), want)) / scale).toBeLessThan(5e-3);
    // int4: exactly the fp32 graph on the dequantized weights (the quantization error itself is not the graph's)
    expect(record(name, 'onnx-int4-vs-dequantized-fp32', maxAbsDiff(await run(weights, 'int4'), await run(dequantized(weights), 'fp32')))).toBeLessThan(TOL);
  });
});

describe('measured', () => {
  it('prints the max abs diffs per case', () => {
    console.log(JSON.stringify(measured, (_, v) => (typeof v === 'number' ? Number(v.toExponential(2)) : v), 1));
  });
});

describe('kd eval counts a foreign model with HF defaults', () => {
  it('a config.json beside model.onnx without tie_word_embeddings is untied (lm_head counted)', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { onnxParameters } = await import('../stages/eval.js');
    const dir = mkdtempSync(join(tmpdir(), 'kd-evalcfg-'));
    // Llama-2 shape at toy size: V 100, d 16, ff 32, 1 layer, 2 heads (head_dim 8), MHA.
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', vocab_size: 100, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 }));
    const layer = 4 * 16 * 16 + 3 * 16 * 32 + 2 * 16;
    expect(onnxParameters(join(dir, 'model.onnx'))).toBe(100 * 16 + layer + 16 + 100 * 16);
  });
});
