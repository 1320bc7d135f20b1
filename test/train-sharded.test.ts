// kd train's HF checkpoints in BF16 and sharded (--safetensors-dtype, --max-shard-size): out, best
// and epoch-N hold an index and its shards, the resumable state stays F32, and resume is still exact.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { INDEX_FILE, readIndex } from '../lib/model/sharded.js';
import { resolveTrainConfig, TrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, TrainControl, TrainingInputs } from '../lib/train/trainer.js';
import { fakeTokenizer, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

const V = 40, L = 8;
const model = { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1 };
const root = mkdtempSync(join(tmpdir(), 'kd-train-sharded-'));
const tokenizer = fakeTokenizer(join(root, 'tok'));
const trainData = syntheticData(24, L, V, 6, 1), validation = syntheticData(8, L, V, 6, 2, false);

beforeAll(async () => { await initBackend('wasm'); });

function inputs(cfg: TrainConfig): TrainingInputs {
  return { train: trainData, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} };
}
async function run(over: Record<string, unknown>, control?: TrainControl) {
  const cfg = resolveTrainConfig({ model, batch_size: 2, lr: 1e-2, warmup_steps: 2, eval_windows: 8, eval_every: 3, quiet: true, backend: 'wasm', epochs: 2, ...over });
  return train(cfg, inputs(cfg), control);
}
const bf16 = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length), (b) => b >>> 16);

describe('kd train writes BF16 sharded checkpoints', () => {
  it('out, out/best and epoch-N: index + shards in BF16; the state stays F32; a resume with other HF settings is accepted', async () => {
    const out = join(root, 'run');
    const ctl = new AbortController();
    const first = await run({ out, safetensors_dtype: 'BF16', max_shard_size: '3KB' }, { signal: ctl.signal, onStep: (r) => { if (r.step === 14) ctl.abort(); } });
    expect(first).toMatchObject({ steps: 14, interrupted: true });
    for (const dir of [out, join(out, 'best'), join(out, 'epoch-1')]) {
      const shards = [...new Set(Object.values(readIndex(dir).weight_map))];
      expect(shards.length).toBeGreaterThan(2);
      expect(readdirSync(dir)).not.toContain('model.safetensors');
      for (const s of shards) expect(readdirSync(dir)).toContain(s);
      expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    }
    // The HF copy is the state's F32 weights rounded to BF16.
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    const f32 = readSafetensors(join(out, state.weights.model)).tensors;
    const hf = loadCheckpoint(out).weights;
    const name = 'model.layers.0.mlp.up_proj.weight';
    const rounded = bf16(hf.get(name)!.data), exact = f32.get(name)!.data;
    expect(Array.from(hf.get(name)!.data, (v, i) => Math.abs(v - exact[i]) <= Math.abs(exact[i]) * 2 ** -8)).not.toContain(false);
    expect(rounded.length).toBe(exact.length);
    // safetensors_dtype and max_shard_size do not change the trajectory: resuming with the defaults is allowed, back to one F32 file.
    const s = await run({ out, resume: true });
    expect(s).toMatchObject({ steps: 24, interrupted: false });
    expect(readdirSync(out)).toContain('model.safetensors');
    expect(readdirSync(out)).not.toContain(INDEX_FILE);
  });
});
