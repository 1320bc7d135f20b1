// Precompute with --hidden-layers: the stored fp16 states equal the teacher's residual stream
// (computed independently by the TF.js LlamaModel on the same weights) within fp16, with and
// without the seeded projection; a missing layer is refused naming the .onnx; and a dataset with
// hidden states trains with feature_layers end to end.
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { decodeHalf } from '../lib/logits/fp16.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { LlamaModel } from '../lib/model/llama.js';
import { exportLlamaOnnx, writeOnnx } from '../lib/onnx/index.js';
import { layoutOf, readManifest, readShard } from '../lib/shards/index.js';
import { randomProjection } from '../lib/util/projection.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStage } from '../stages/train.js';
import { run as inspect } from '../stages/inspect.js';
import { findHiddenTensors } from '../lib/onnx/index.js';
import { makePrep, teacherConfig } from './precompute-fixture.js';

const cfg = teacherConfig(); // hidden 64, 2 layers
const weights = initLlamaWeights(cfg, 5);
for (const [name, t] of weights) if (!name.endsWith('norm.weight')) for (let i = 0; i < t.data.length; i++) t.data[i] *= name.includes('embed') ? 20 : 4;
let dir = '', prep = '', teacher = '';

beforeAll(async () => {
  await initBackend('cpu');
  ({ dir, prep } = await makePrep('hidden'));
  teacher = join(dir, 'teacher.onnx');
  writeOnnx(teacher, exportLlamaOnnx(cfg, weights));
}, 120_000);

/** The TF.js residual stream at `layers` for the windows' input ids: per window [L, n, D] float32. */
function reference(inputs: Uint32Array[], layers: number[]): Float32Array[] {
  const model = new LlamaModel(cfg, weights);
  const out = inputs.map((ids) => tf.tidy(() => {
    const states = { layers, out: new Map<number, tf.Tensor2D>() };
    model.hidden(tf.tensor2d(Int32Array.from(ids), [1, ids.length], 'int32'), { states });
    return tf.stack(layers.map((l) => states.out.get(l)!), 1).dataSync() as Float32Array; // [L, n, D]
  }));
  model.dispose();
  return out;
}

const common = () => ({ teacher, prep, k: 8, max_windows: 6, rows_per_shard: 4, batch_size: 2, quiet: true, device: 'cpu' });

describe('precompute --hidden-layers', () => {
  it('stores the residual stream at HF indices (0 = embeddings, i = after layer i) within fp16', async () => {
    const out = join(dir, 'h');
    const s = await precompute({ ...common(), out, hidden_layers: [0, 1, 2] });
    expect(s.hidden_bytes_per_position).toBe(2 * 3 * 64);
    const m = await readManifest(out);
    expect(m.hidden).toMatchObject({ layers: [0, 1, 2], width: 64, dtype: 'float16', projection: null });
    const rows = (await Promise.all(m.shards.map((e) => readShard(join(out, e.file), layoutOf(m))))).flat();
    expect(rows.length).toBe(6);
    const ref = reference(rows.map((r) => r.input_ids), [0, 1, 2]);
    rows.forEach((r, w) => {
      const got = decodeHalf(r.hidden!);
      expect(got.length).toBe(ref[w].length);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[w][i]) / (Math.abs(ref[w][i]) + 1e-2));
      expect(worst).toBeLessThan(2e-3); // fp16's half-ulp is 4.9e-4 relative, plus ORT vs TF.js float32 differences
    });
  }, 120_000);

  it('with --hidden-dim stores h·P for the projection regenerated from the manifest (float64 product)', async () => {
    const out = join(dir, 'hp');
    await precompute({ ...common(), out, hidden_layers: [2], hidden_dim: 16, hidden_seed: 9 });
    const m = await readManifest(out);
    expect(m.hidden).toMatchObject({ layers: [2], width: 16, projection: { seed: 9, rows: 64, dim: 16 } });
    const seen = await inspect(out, { quiet: true });
    expect(seen.hidden_bytes_per_position).toBeGreaterThan(0);
    expect(seen.hidden_bytes_per_position).toBeLessThan(seen.bytes_per_position);
    const P = randomProjection(64, 16, m.hidden!.projection!.seed);
    const rows = (await Promise.all(m.shards.map((e) => readShard(join(out, e.file), layoutOf(m))))).flat();
    const ref = reference(rows.map((r) => r.input_ids), [2]);
    rows.forEach((r, w) => {
      const got = decodeHalf(r.hidden!);
      for (let t = 0; t < cfg.max_position_embeddings && t * 16 < got.length; t++) {
        let norm = 0;
        for (let c = 0; c < 16; c++) { let v = 0; for (let d = 0; d < 64; d++) v += ref[w][t * 64 + d] * P[d * 16 + c]; norm = Math.max(norm, Math.abs(v)); }
        for (let c = 0; c < 16; c++) {
          let v = 0;
          for (let d = 0; d < 64; d++) v += ref[w][t * 64 + d] * P[d * 16 + c];
          expect(Math.abs(got[t * 16 + c] - v)).toBeLessThan(2e-3 * norm + 1e-3);
        }
      }
    });
  }, 120_000);

  it('finds the residual stream by structure in a graph without torch-style names (older kd exports)', () => {
    const bytes = Buffer.from(exportLlamaOnnx(cfg, weights));
    const named = Buffer.from('/model/layers.1/Add_1_output_0'), renamed = Buffer.from('/model/layerX.1/Add_1_output_0');
    for (let at = bytes.indexOf(named); at >= 0; at = bytes.indexOf(named, at + 1)) renamed.copy(bytes, at);
    expect(findHiddenTensors(bytes, [1, 2], 't.onnx')).toEqual(['/model/layers.0/Add_1_output_0', '/model/layerX.1/Add_1_output_0']);
  });

  it('refuses a layer the graph does not have, in one line naming the .onnx file', async () => {
    await expect(precompute({ ...common(), out: join(dir, 'bad'), hidden_layers: [3] }))
      .rejects.toThrow(new RegExp(`^${teacher.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: no tensor for hidden layer 3 \\(looked for '/model/layers.2/Add_1_output_0'\\)[^\\n]*$`));
    await expect(precompute({ ...common(), out: join(dir, 'bad2'), hidden_layers: [1], hidden_outputs: ['nope'] })).rejects.toThrow(/no tensor for hidden layer 1 \(looked for 'nope'\)/);
  });

  it('trains a student with feature_layers on it, and refuses a teacher layer it lacks', async () => {
    const data = join(dir, 'hp');
    const base = { data, prep, max_steps: 2, batch_size: 2, quiet: true, backend: 'cpu', eval_windows: 2, model: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 } };
    const s = await trainStage({ ...base, out: join(dir, 'student'), feature_layers: '1:2' });
    expect(s.steps).toBe(2);
    await expect(trainStage({ ...base, out: join(dir, 'student2'), feature_layers: '1:1' })).rejects.toThrow(new RegExp(`^${data.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: feature_layers asks for teacher layer 1, but the dataset stores hidden states of layers \\[2\\]`));
  }, 120_000);
});
