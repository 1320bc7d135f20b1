/** kd train --ensemble: several logit datasets over the same windows, mixed by the loss (lib/losses/ensemble.ts). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStage } from '../stages/train.js';
import { makePrep, VOCAB, writeTeacher } from './precompute-fixture.js';

let dir = '', prep = '';
const data = (name: string) => join(dir, name);

beforeAll(async () => {
  await initBackend('cpu');
  ({ dir, prep } = await makePrep('ensemble'));
  const a = writeTeacher(join(dir, 'a.onnx'), undefined, 1), b = writeTeacher(join(dir, 'b.onnx'), undefined, 2);
  const common = { prep, max_windows: 6, rows_per_shard: 4, batch_size: 2, quiet: true, device: 'cpu' };
  await precompute({ ...common, teacher: a, k: VOCAB, out: data('a-full') });
  await precompute({ ...common, teacher: a, k: VOCAB, out: data('a-full-copy') });
  await precompute({ ...common, teacher: a, k: 8, out: data('a') });
  await precompute({ ...common, teacher: b, k: 8, out: data('b') });
  await precompute({ ...common, teacher: b, k: 8, max_windows: 4, out: data('b-short') });
}, 240_000);

const student = () => ({ prep, max_steps: 3, batch_size: 2, quiet: true, backend: 'cpu', eval_windows: 2, warmup_steps: 1, model: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 } });
const losses = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.loss !== undefined).map((r) => [r.loss, r.kd]);

describe('kd train --ensemble', () => {
  it('with k = V and the same teacher twice trains exactly as the one teacher does (the mixture is exact)', async () => {
    await trainStage({ ...student(), data: data('a-full'), out: data('s-one') });
    await trainStage({ ...student(), data: data('a-full'), ensemble: `${data('a-full-copy')}:0.4`, out: data('s-ens-same') });
    const one = losses(data('s-one')), ens = losses(data('s-ens-same'));
    expect(one).toHaveLength(3);
    one.forEach(([loss, kd], i) => { expect(ens[i][0]).toBeCloseTo(loss, 4); expect(ens[i][1]).toBeCloseTo(kd, 4); });
  }, 120_000);

  it('trains from two different teachers (k = 8 each, K = 16) and records the members in train.json', async () => {
    const s = await trainStage({ ...student(), data: data('a'), ensemble: `${data('b')}:0.5`, out: data('s-ab') });
    expect(s.steps).toBe(3);
    const ab = losses(data('s-ab'));
    await trainStage({ ...student(), data: data('a'), out: data('s-a') });
    expect(ab[0][1]).not.toBeCloseTo(losses(data('s-a'))[0][1], 3); // the mixture is another target than teacher A
    expect(readFileSync(join(data('s-ab'), 'train.json'), 'utf8')).toContain(`"data": "${data('b')}"`);
  }, 120_000);

  it('refuses datasets over other windows, renormalize mode and bad weights, naming the datasets', async () => {
    await expect(trainStage({ ...student(), data: data('a'), ensemble: `${data('b-short')}:0.5`, out: data('s-bad') }))
      .rejects.toThrow(new RegExp(`${data('b-short')}/manifest.json and ${data('a')}/manifest.json differ in totals.rows`));
    await expect(trainStage({ ...student(), data: data('a'), ensemble: `${data('b')}:0.5`, topk_mode: 'renormalize', out: data('s-bad2') }))
      .rejects.toThrow(/ensemble needs topk_mode 'tail'/);
    await expect(trainStage({ ...student(), data: data('a'), ensemble: `${data('b')}:1.5`, out: data('s-bad3') }))
      .rejects.toThrow(/must be dir:weight pairs with weights in \(0, 1\)/);
    await expect(trainStage({ ...student(), data: data('a'), ensemble: `${data('b')}:0.6,${data('a-full')}:0.4`, out: data('s-bad4') }))
      .rejects.toThrow(/leave no weight for --data/);
  }, 60_000);
});
