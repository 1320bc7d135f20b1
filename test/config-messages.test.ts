import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { editDistance, flagsToConfig, mergeConfig, readConfigFile } from '../lib/cli/config.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { resolveTrainConfig, STUDENT_DEFAULTS, TRAIN_KEYS } from '../lib/train/config.js';
import { kdCli, ParsedCommandLine } from '../pipelines/cli.js';
import { tinyConfig } from './fixtures/llama.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-cfgmsg-'));
const STUDENT = 'pipelines/configs/student.json';

/** Resolves file + flags the way `kd train` does. */
const trainCfg = (fromFile: Record<string, unknown>, flags: Record<string, unknown>, source: string) =>
  resolveTrainConfig(mergeConfig(fromFile, flagsToConfig(flags, TRAIN_KEYS)), source, STUDENT_DEFAULTS);

/** The CLI's parse error for `args` (stopping before any handler), or undefined when it parses. */
async function parseError(args: string[]): Promise<string | undefined> {
  try { await (await kdCli(args, true)).parseAsync(); return 'the handler would have run'; } catch (e) {
    return e instanceof ParsedCommandLine ? undefined : (e as Error).message;
  }
}

/** `kd <args> --help` as printed. */
function helpOf(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    kdCli(args).then((c) => c.exitProcess(false).parse(args, {}, (err, _argv, output) => (err ? reject(err) : resolve(output))), reject);
  });
}

describe('a bad value is blamed on where it came from', () => {
  it('a flag value names the flag, a file value names the file', () => {
    expect(() => trainCfg(readConfigFile(STUDENT), { lr: -0.01 }, STUDENT)).toThrow(/^--lr = -0.01 must be a number in \[0, 10\]$/);
    expect(() => trainCfg({}, { lr: -0.01 }, 'train config')).toThrow(/^--lr = -0.01 must be/);
    writeFileSync(join(dir, 'bad-lr.json'), '{"lr": -0.01}');
    expect(() => trainCfg(readConfigFile(join(dir, 'bad-lr.json')), { alpha: 0.5 }, join(dir, 'bad-lr.json')))
      .toThrow(`${join(dir, 'bad-lr.json')}: lr = -0.01 must be a number in [0, 10]`);
    // a flag overriding a good file value keeps the blame on the flag through a plain spread too
    expect(() => resolveTrainConfig({ ...readConfigFile(STUDENT), ...flagsToConfig({ 'batch-size': 0 }, TRAIN_KEYS) }, STUDENT))
      .toThrow(/^--batch-size = 0 must be an integer/);
  });

  it('a scalar flag given twice is refused; a list flag takes several values', async () => {
    expect(await parseError(['train', '--batch-size', '4', '--batch-size', '0'])).toBe('--batch-size given 2 times (give it once)');
    expect(await parseError(['precompute', '--temperatures', '1', '2', '4'])).toBeUndefined();
    expect(await parseError(['merge', 'a', 'b'])).toBeUndefined();
  });

  it('--model JSON errors say --model', async () => {
    expect(await parseError(['train', '--model', '{"hidden_size":64'])).toMatch(/^--model: not valid JSON \(/);
    expect(await parseError(['train', '--model', '[64]'])).toMatch(/^--model: must be a JSON object/);
    expect(await parseError(['train', '--model', '{}', '--model', '{}'])).toBe('--model given 2 times (give it once)');
  });

  it('--temperatures NaN is not a number (not [null])', async () => {
    expect(await parseError(['precompute', '--temperatures', 'NaN'])).toBe('--temperatures: not a number: NaN');
    expect(await parseError(['precompute', '--temperatures', '1', 'fast'])).toBe('--temperatures: not a number: fast');
    expect(() => flagsToConfig({ temperatures: [1, NaN] }, ['temperatures'])).toThrow('--temperatures: not a number');
  });

  it('a value outside a flag\'s choices is one line', async () => {
    expect(await parseError(['train', '--recompute', 'maybe'])).toBe('Invalid values: Argument: recompute, Given: "maybe", Choices: "auto", "on", "off"');
  });

  it('help shows --overwrite for kd train and --temperatures as a list', async () => {
    expect(await helpOf(['train', '--help'])).toMatch(/--overwrite\s+start afresh/);
    expect(await helpOf(['precompute', '--help'])).toMatch(/--temperatures\s+temperatures whose log_z is stored \(default 1 2 4\)\s+\[array\]/);
  });
});

describe('--model: unknown keys and wrong types are refused', () => {
  it('a typo names the nearest valid key, from the flag or from the file', () => {
    expect(() => trainCfg({}, { model: { hiden_size: 64 } }, 'train config')).toThrow("--model: unknown key 'hiden_size' (did you mean 'hidden_size'?)");
    expect(() => trainCfg(readConfigFile(STUDENT), { model: { hiden_size: 64 } }, STUDENT)).toThrow(/^--model: unknown key 'hiden_size'/);
    writeFileSync(join(dir, 'typo.json'), '{"model": {"num_layers": 4}}');
    expect(() => trainCfg(readConfigFile(join(dir, 'typo.json')), { model: { hidden_size: 64 } }, join(dir, 'typo.json')))
      .toThrow(`${join(dir, 'typo.json')}: model: unknown key 'num_layers' (did you mean 'num_hidden_layers'?)`);
    expect(() => trainCfg({}, { model: { zzz: 1 } }, 'train config')).toThrow(/^--model: unknown key 'zzz' \(valid: model_type, architectures, vocab_size/);
  });

  it('a string where a number belongs is refused', () => {
    expect(() => trainCfg({}, { model: { hidden_size: '64' } }, 'train config')).toThrow('--model: hidden_size = "64" must be an integer ≥ 1');
    expect(() => trainCfg({}, { model: { tie_word_embeddings: 'yes' } }, 'train config')).toThrow('--model: tie_word_embeddings = "yes" must be true or false');
  });

  it('--model without --config merges into the default student model, as it does with --config', () => {
    const alone = trainCfg({}, { model: { hidden_size: 64 } }, 'train config').model;
    const withFile = trainCfg(readConfigFile(STUDENT), { model: { hidden_size: 64 } }, STUDENT).model;
    expect(alone).toEqual({ ...STUDENT_DEFAULTS.model, hidden_size: 64 });
    expect(alone).toEqual(withFile);
  });

  it('edit distance', () => {
    expect([editDistance('hiden_size', 'hidden_size'), editDistance('', 'ab'), editDistance('kitten', 'sitting')]).toEqual([1, 2, 3]);
  });
});

describe("a checkpoint's config.json: harmless HF keys pass, math-changing ones are refused", () => {
  const base = { vocab_size: 64, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  // the keys of a real HF Llama config.json (TinyLlama-1.1B) at the values kd implements
  const hf = {
    ...base, architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2,
    hidden_act: 'silu' as const, initializer_range: 0.02, max_position_embeddings: 2048, mlp_bias: false, model_type: 'llama' as const, pretraining_tp: 1,
    rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16',
    transformers_version: '4.44.0', use_cache: true, head_dim: 8, pad_token_id: null, _name_or_path: 'x',
  };

  it('accepts the harmless keys and drops the ones kd does not keep', () => {
    const cfg = resolveLlamaConfig(hf, 'config.json');
    expect([cfg.hidden_size, cfg.max_position_embeddings, cfg.tie_word_embeddings]).toEqual([16, 2048, false]);
    expect(Object.keys(cfg)).not.toContain('transformers_version');
  });

  it.each([
    ['rope_scaling', { rope_type: 'yarn', factor: 2 }, 'rope_scaling = {"rope_type":"yarn","factor":2} is refused: rope_scaling.rope_type \'yarn\' is not implemented by kd (only default, linear, llama3)'],
    ['attention_bias', 'yes', 'attention_bias = "yes" must be true or false'],
    ['mlp_bias', 1, 'mlp_bias = 1 must be true or false'],
    ['sliding_window', 4096, "sliding_window = 4096 is not a field of model_type 'llama'"],
    ['head_dim', 5, 'head_dim 5 must be even for RoPE'],
    ['model_type', 'gpt2', "model_type = \"gpt2\" is not supported (kd implements 'llama', 'qwen2', 'mistral')"],
    ['hidden_act', 'gelu', 'hidden_act = "gelu" is not supported'],
    ['hidden_size', '16', 'hidden_size = "16" must be an integer ≥ 1'],
    ['rope_thta', 1e4, "unknown key 'rope_thta' (did you mean 'rope_theta'?)"],
  ])('refuses %s = %j naming the field', (key, value, message) => {
    expect(() => resolveLlamaConfig({ ...hf, [key]: value }, 'ckpt/config.json')).toThrow(`ckpt/config.json: ${message}`);
  });

  it('sliding_window is accepted on qwen2 and mistral configs (architectures.test.ts checks the masks)', () => {
    const { attention_bias: _a, mlp_bias: _m, ...common } = hf;
    expect(resolveLlamaConfig({ ...common, model_type: 'qwen2', sliding_window: 4096, use_sliding_window: false }).sliding_window).toBe(4096);
    expect(resolveLlamaConfig({ ...common, model_type: 'mistral', sliding_window: 4096 }).sliding_window).toBe(4096);
  });

  it('loadCheckpoint refuses a checkpoint whose config.json sets a rope_scaling kd does not implement (it was ignored: same perplexity)', () => {
    const ckpt = join(dir, 'ckpt');
    const cfg = tinyConfig(true);
    saveCheckpoint(ckpt, cfg, initLlamaWeights(cfg, 1));
    expect(loadCheckpoint(ckpt).cfg.hidden_size).toBe(cfg.hidden_size); // the config kd writes loads back
    const path = join(ckpt, 'config.json');
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), rope_scaling: { type: 'dynamic', factor: 4 } }));
    expect(() => loadCheckpoint(ckpt)).toThrow(`${path}: rope_scaling = {"type":"dynamic","factor":4} is refused: rope_scaling.rope_type 'dynamic' is not implemented by kd`);
  });
});
