/**
 * `kd plan` on the Hugging Face configs users distill into, and `kd train` using the plan: the
 * settings it chooses and its refusal, before step 1, of a run that cannot fit its budget.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train } from '../lib/train/trainer.js';
import { kdCli } from '../pipelines/cli.js';
import { run as plan, PlanArgs, resolvePlanConfig } from '../stages/plan.js';
import { fakeTokenizer, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

const GiB = 1024 ** 3;
const TINYLLAMA = 'test/fixtures/hub-configs/TinyLlama-1.1B-config.json';
const LLAMA32 = 'test/fixtures/hub-configs/Llama-3.2-1B-config.json';
const args = (over: Partial<PlanArgs>): PlanArgs => ({
  model: TINYLLAMA, seq_len: 2048, batch_size: 1, grad_accum: 1, backend: 'node-gpu', k: 32, topk_mode: 'tail', alpha: 0.8, dropout: false, grad_clip: true, ...over,
});

describe('kd plan', () => {
  it('TinyLlama-1.1B at L = 2048, B = 1: within 24 GiB with recomputation, above its 17.6 GB of weights, gradients and moments', () => {
    const r = plan(args({}));
    expect(r.parameters).toBe(1_100_048_384);
    expect(r.weights_bytes + r.gradients_bytes + r.optimizer_bytes).toBe(16 * 1_100_048_384);
    expect(r.total_bytes).toBeLessThanOrEqual(24 * GiB);
    expect(r.total_bytes).toBeGreaterThanOrEqual(17.6e9);
    expect(r.memory.recompute).toBe(true);
    const off = plan(args({ recompute: 'off' }));
    expect(off.total_bytes).toBeGreaterThan(r.total_bytes); // recomputation is what saves the layers' activations
  });

  it('with a budget it picks the fastest settings that fit, and refuses naming the numbers when nothing does', () => {
    const fits = plan(args({ memory_budget: '80GiB' }));
    expect(fits.memory.recompute).toBe(false); // 80 GiB holds every layer's activations: no recomputation
    expect(fits.total_bytes).toBeLessThanOrEqual(80 * GiB);
    expect(plan(args({ model: '{"vocab_size":512,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":128}', seq_len: 128, memory_budget: '1GiB' })).memory)
      .toEqual({ recompute: false, attentionQueryBlock: Infinity, lossChunk: Infinity }); // a small model: nothing chunked
    expect(() => plan(args({ model: LLAMA32, memory_budget: '16GiB' }))).toThrow(/Llama-3\.2-1B-config\.json: L = 2048, B = 1: .* GiB at the peak .* does not fit the 16\.0 GiB budget even with the smallest setting/);
  });

  it('Llama-3.2-1B (tied, vocab 128256) reads HF defaults and is larger than TinyLlama at the same L', () => {
    const r = plan(args({ model: LLAMA32 }));
    expect(r.parameters).toBe(1_235_814_400);
    expect(r.total_bytes).toBeGreaterThan(plan(args({})).total_bytes);
  });

  it('--json prints one object with total_bytes; bad input is one line', async () => {
    let out = '';
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { out += s; return true; }) as typeof process.stdout.write;
    try { await (await kdCli(['plan', '--model', TINYLLAMA, '--seq-len', '2048', '--batch-size', '1', '--json'])).parseAsync(); } finally { process.stdout.write = write; }
    const r = JSON.parse(out);
    expect(r.total_bytes).toBe(plan(args({})).total_bytes);
    expect(() => plan(args({ model: 'no/such/config.json' }))).toThrow('no/such/config.json: not found');
    expect(() => plan(args({ seq_len: 4096 }))).toThrow('--seq-len 4096 exceeds the model\'s max_position_embeddings 2048');
  });
});

/** stdout of `kd <args>` run in process. */
async function stdoutOf(argv: string[]): Promise<string> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => { out += s; return true; }) as typeof process.stdout.write;
  try { await (await kdCli(argv)).parseAsync(); } finally { process.stdout.write = write; }
  return out;
}

/** The error `kd <args>` stops with (a handler may throw before parseAsync returns a promise). */
async function errorOf(argv: string[]): Promise<string | undefined> {
  try { await (await kdCli(argv)).parseAsync(); } catch (e) { return (e as Error).message; }
  return undefined;
}

describe('kd plan --config', () => {
  const cfgDir = mkdtempSync(join(tmpdir(), 'kd-plan-config-'));
  const file = (name: string, body: unknown) => { const p = join(cfgDir, name); writeFileSync(p, JSON.stringify(body)); return p; };

  it('reads the settings from the file; a flag overrides the file\'s key', async () => {
    const cfg = file('plan.json', { model: TINYLLAMA, seq_len: 2048, batch_size: 1, memory_budget: '80GiB' });
    const fromFile = JSON.parse(await stdoutOf(['plan', '--config', cfg, '--json']));
    expect(fromFile.total_bytes).toBe(plan(args({ memory_budget: '80GiB' })).total_bytes);
    expect(fromFile.memory.recompute).toBe(false);
    const overridden = JSON.parse(await stdoutOf(['plan', '--config', cfg, '--batch-size', '4', '--json']));
    expect([overridden.batch_size, overridden.total_bytes]).toEqual([4, plan(args({ memory_budget: '80GiB', batch_size: 4 })).total_bytes]);
  });

  it('a file\'s model may be an object of config fields, as --model \'{…}\' is', () => {
    const model = { vocab_size: 512, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128 };
    const viaObject = plan(resolvePlanConfig({ model, seq_len: 128, batch_size: 2 }, 'plan.json'));
    expect(viaObject.total_bytes).toBe(plan(args({ model: JSON.stringify(model), seq_len: 128, batch_size: 2 })).total_bytes);
  });

  it('bad keys and values name the file, missing ones the flag', async () => {
    const typo = file('typo.json', { model: TINYLLAMA, seq_len: 2048, batchsize: 1 });
    expect(await errorOf(['plan', '--config', typo])).toBe(`${typo}: unknown key 'batchsize' (did you mean 'batch_size'?)`);
    const zero = file('zero.json', { model: TINYLLAMA, seq_len: 0, batch_size: 1 });
    expect(await errorOf(['plan', '--config', zero])).toBe(`${zero}: seq_len = 0 must be an integer in [1, ${Number.MAX_SAFE_INTEGER}]`);
    expect(await errorOf(['plan', '--config', zero, '--seq-len', 'abc'])).toBe('--seq-len: not a number');
    expect(() => resolvePlanConfig({ model: TINYLLAMA, batch_size: 1 })).toThrow(new Error('plan config: seq_len is required (--seq-len)'));
    expect(() => resolvePlanConfig({ model: TINYLLAMA, seq_len: 8, batch_size: 1, alpha: 2 })).toThrow(new Error('plan config: alpha = 2 must be a number in [0, 1]'));
  });
});

describe('kd train and the plan', () => {
  const V = 40, L = 8, root = mkdtempSync(join(tmpdir(), 'kd-plan-train-'));
  const tokenizer = fakeTokenizer(join(root, 'tok'));
  const data = syntheticData(8, L, V, 6, 1), validation = syntheticData(4, L, V, 6, 2, false);
  beforeAll(async () => { await initBackend('wasm'); });
  const run = (over: Record<string, unknown>) => {
    const cfg = resolveTrainConfig({
      model: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 },
      batch_size: 2, lr: 1e-2, quiet: true, backend: 'wasm', alpha: 0.5, temperature: 1, eval_windows: 4, ...over,
    });
    return train(cfg, { train: data, validation, tokenizer, realVocab: V, topk: 6, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} });
  };

  it('refuses before step 1 a budget nothing fits, with the plan in the message, and writes no run', async () => {
    const out = join(root, 'tight');
    await expect(run({ out, memory_budget: '20KB' })).rejects.toThrow(/train config: model: L = 8, B = 2: .* at the peak .* does not fit the 19\.5 KiB budget/);
    expect(existsSync(join(out, 'metrics.jsonl'))).toBe(false);
  });

  it('trains when it fits, recording the chosen settings; --recompute on is honoured', async () => {
    const s = await run({ out: join(root, 'fits'), recompute: 'on' });
    expect(s.steps).toBe(4);
  });

  it('a budget above the wasm heap is refused on wasm', async () => {
    await expect(run({ out: join(root, 'big'), memory_budget: '8GiB' })).rejects.toThrow("--memory-budget: 8GiB is more than the wasm backend's 4 GiB heap");
  });
});
