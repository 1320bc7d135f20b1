/**
 * `kd train --overwrite` starts afresh without leaving the old run's files beside the new one
 * (best/ of another run, epoch-N/ beyond this run's epochs), and keeps what kd did not write.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train } from '../lib/train/trainer.js';
import { fakeTokenizer, readMetrics, STORED_TEMPERATURES, syntheticData } from './synthetic.js';

const V = 40, L = 8;
const root = mkdtempSync(join(tmpdir(), 'kd-overwrite-'));
const tokenizer = fakeTokenizer(join(root, 'tok'));
const trainData = syntheticData(8, L, V, 6, 1), validation = syntheticData(4, L, V, 6, 2, false);
beforeAll(async () => { await initBackend('wasm'); });

async function run(over: Record<string, unknown>) {
  const cfg = resolveTrainConfig({
    model: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 },
    batch_size: 2, lr: 1e-2, warmup_steps: 1, eval_windows: 4, quiet: true, backend: 'wasm', out: join(root, 'run'), alpha: 0.5, temperature: 1, ...over,
  });
  return train(cfg, { train: trainData, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, STORED_TEMPERATURES), provenance: {} });
}

describe('kd train --overwrite', () => {
  it('removes the earlier run (epoch-2/, best/, metrics) and keeps the user\'s files', async () => {
    await run({ epochs: 2 });
    const out = join(root, 'run');
    expect(existsSync(join(out, 'epoch-2', 'model.safetensors'))).toBe(true);
    writeFileSync(join(out, 'notes.txt'), 'mine\n');
    await expect(run({ epochs: 1 })).rejects.toThrow(`${out}: holds a training run already; --resume continues it, --overwrite starts afresh, or choose another --out`);
    const s = await run({ epochs: 1, overwrite: true, lr: 5e-3 });
    expect(s.steps).toBe(4);
    expect(existsSync(join(out, 'epoch-1', 'model.safetensors'))).toBe(true);
    expect(existsSync(join(out, 'epoch-2'))).toBe(false); // the old run's second epoch is gone
    expect(JSON.parse(readFileSync(join(out, 'best', 'best.json'), 'utf8')).step).toBe(4); // best/ is this run's
    expect(readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).filter((r) => 'loss' in r).map((r) => r.step)).toEqual([1, 2, 3, 4]);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine\n');
  });
});
