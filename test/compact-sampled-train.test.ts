/**
 * End to end at test size: `kd precompute --layout compact` (top-k and sampled) against the exact
 * `packed` layout of the same teacher, `kd inspect`'s codec and sampling fields, and `kd train` on
 * compact and sampled datasets.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { meanUniqueIds } from '../lib/logits/sampling.js';
import { layoutOf, readListedShard, readManifest, type LogitRow } from '../lib/shards/index.js';
import { formatSummary, run as inspect } from '../stages/inspect.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStage } from '../stages/train.js';
import { makePrep, writeTeacher } from './precompute-fixture.js';

let dir = '', prep = '';
const data = (name: string) => join(dir, name);
const STEP = 1 / 16;

beforeAll(async () => {
  await initBackend('cpu');
  ({ dir, prep } = await makePrep('compact'));
  const teacher = writeTeacher(join(dir, 't.onnx'), undefined, 3, (w) => w.get('model.embed_tokens.weight')!.data.forEach((x, i, a) => { a[i] = x * 0.25; }));
  const common = { teacher, prep, max_windows: 8, rows_per_shard: 4, batch_size: 2, quiet: true, device: 'cpu' };
  await precompute({ ...common, k: 8, out: data('packed') });
  await precompute({ ...common, k: 8, layout: 'compact', out: data('compact') });
  await precompute({ ...common, mode: 'sampled', samples: 6, layout: 'packed', out: data('sampled') });
  await precompute({ ...common, mode: 'sampled', samples: 6, value_step: 1 / 8, out: data('sampled-compact') }); // layout auto = compact in sampled mode
}, 240_000);

async function rowsOf(name: string): Promise<LogitRow[]> {
  const d = data(name), m = await readManifest(d), rows: LogitRow[] = [];
  for (const entry of m.shards) rows.push(...await readListedShard({ entry, path: join(d, entry.file) }, layoutOf(m)));
  return rows;
}

/** Per position, the slots as sorted "id:value" strings (slot order among equal codes may differ). */
function slotSets(rows: LogitRow[], k: number): number[][][] {
  return rows.flatMap((r) => Array.from({ length: r.topk_ids.length / k }, (_, t) =>
    Array.from({ length: k }, (_, j) => [r.topk_ids[t * k + j], r.topk_logits[t * k + j]]).sort((a, b) => a[0] - b[0] || a[1] - b[1])));
}

const student = () => ({ prep, max_steps: 3, batch_size: 2, quiet: true, backend: 'cpu', eval_windows: 2, warmup_steps: 1, model: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 } });
const kdLosses = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.kd !== undefined).map((r) => r.kd as number);

describe('compact layout end to end', () => {
  it('stores the exact layout\'s ids with values within δ/2 (plus fp16 rounding), and records a small KL error', async () => {
    const exact = slotSets(await rowsOf('packed'), 8), compact = slotSets(await rowsOf('compact'), 8);
    expect(compact).toHaveLength(8 * 32);
    compact.forEach((pos, p) => pos.forEach(([id, v], j) => {
      expect(id).toBe(exact[p][j][0]);
      expect(Math.abs(v - exact[p][j][1])).toBeLessThanOrEqual(STEP / 2 + 2 ** -7);
      expect(Number.isInteger(v / STEP)).toBe(true);
    }));
    const m = await readManifest(data('compact'));
    expect(m.encoding).toMatchObject({ layout: 'compact', value_step: STEP, values: 'float16' });
    expect(m.shards.every((s) => s.kl_error !== undefined && s.kl_error.mean > 0 && s.kl_error.max >= s.kl_error.mean)).toBe(true);
    const s = await inspect(data('compact'), { quiet: true });
    expect(s.shards_ok).toBe(2);
    expect(s.codec_error!.value_step).toBe(STEP);
    expect(s.codec_error!.kl_mean).toBeCloseTo((m.shards[0].kl_error!.mean + m.shards[1].kl_error!.mean) / 2, 12); // equal rows
    expect(s.codec_error!.kl_mean).toBeLessThan(1e-3);
    expect((await inspect(data('packed'), { quiet: true })).codec_error).toBeNull();
    expect(s.bytes_per_position).toBeLessThan((await inspect(data('packed'), { quiet: true })).bytes_per_position);
  });

  it('keeps a sampled dataset\'s draws: the same ids per position as the exact layout, repeats adjacent', async () => {
    const exact = await rowsOf('sampled'), compact = await rowsOf('sampled-compact');
    const ids = (rows: LogitRow[]) => rows.map((r) => Array.from(r.topk_ids));
    const sorted = (rows: LogitRow[]) => rows.flatMap((r) => Array.from({ length: r.topk_ids.length / 6 }, (_, t) => Array.from(r.topk_ids.subarray(t * 6, t * 6 + 6)).sort((a, b) => a - b)));
    expect(sorted(compact)).toEqual(sorted(exact));
    const distinct = exact.reduce((s, r) => s + meanUniqueIds(r.topk_ids, 6), 0) / exact.length;
    expect(compact.reduce((s, r) => s + meanUniqueIds(r.topk_ids, 6), 0) / compact.length).toBeCloseTo(distinct, 12); // runs stay runs
    expect(ids(compact)).not.toEqual([]);
    const s = await inspect(data('sampled-compact'), { quiet: true });
    expect(s.sampling).toMatchObject({ samples: 6, temperature: 1, seed: 0 });
    expect(s.sampling!.mean_distinct_ids).toBeCloseTo(distinct, 12);
    expect(distinct).toBeGreaterThan(1);
    expect(distinct).toBeLessThan(6);
    expect(s.codec_error!.value_step).toBe(1 / 8);
    expect(s.teacher_stats.entropy_nats).toBeNull(); // the top-k entropy bounds do not hold for draws
    expect(s.teacher_stats.topk_mass.mean).toBeGreaterThan(0);
    expect(s.teacher_stats.topk_mass.mean).toBeLessThanOrEqual(1);
    expect(formatSummary(s)).toMatch(/drawn mass {2}at τ = 1: the distinct drawn ids hold mean/);
    expect(formatSummary(s)).not.toMatch(/entropy/);
  });

  it('refuses topk_mode renormalize on a sampled dataset (its estimator needs log_z)', async () => {
    await expect(trainStage({ ...student(), data: data('sampled'), topk_mode: 'renormalize', out: data('s-renorm') }))
      .rejects.toThrow("topk_mode 'renormalize' is for top-k datasets");
  });

  it('trains from compact and sampled datasets; compact\'s first KD loss is within 1% of the exact one', async () => {
    await trainStage({ ...student(), data: data('packed'), out: data('s-packed') });
    await trainStage({ ...student(), data: data('compact'), out: data('s-compact') });
    const exact = kdLosses(data('s-packed')), compact = kdLosses(data('s-compact'));
    expect(compact).toHaveLength(3);
    expect(Math.abs(compact[0] - exact[0])).toBeLessThan(0.01 * exact[0]);
    for (const name of ['sampled', 'sampled-compact']) {
      const r = await trainStage({ ...student(), data: data(name), out: data(`s-${name}`) });
      expect(r.steps).toBe(3);
      expect(kdLosses(data(`s-${name}`)).every(Number.isFinite)).toBe(true);
    }
    expect(Math.abs(kdLosses(data('s-sampled-compact'))[0] - kdLosses(data('s-sampled'))[0])).toBeLessThan(0.02 * Math.abs(kdLosses(data('s-sampled'))[0]) + 1e-3);
  }, 180_000);
});
