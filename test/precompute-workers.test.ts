import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveWorker } from '../lib/cli/workers.js';
import { mergeDatasets, openLogitDataset, planShards, readManifestFile, workerManifestFile, workerShards } from '../lib/shards/index.js';
import { run as precompute } from '../stages/precompute.js';
import { fileHashes, makePrep, runKd, writeTeacher } from './precompute-fixture.js';

// 96 windows in 6 shards of 16.
const CFG = { k: 8, max_windows: 96, rows_per_shard: 16, batch_size: 4, device: 'cpu' as const, quiet: true };
let dir: string, prep: string, teacher: string, reference: Record<string, string>;

beforeAll(async () => {
  ({ dir, prep } = await makePrep('workers'));
  teacher = writeTeacher(join(dir, 'teacher.onnx'));
  await precompute({ ...CFG, teacher, prep, out: join(dir, 'one') });
  reference = fileHashes(join(dir, 'one'));
});

describe('worker index and count', () => {
  it('come from flags, Slurm arrays or a Kubernetes Indexed Job', () => {
    expect(resolveWorker(undefined, undefined, {})).toEqual({ index: 0, count: 1, source: 'default' });
    expect(resolveWorker(2, 3, { SLURM_ARRAY_TASK_ID: '0' })).toEqual({ index: 2, count: 3, source: 'flags' });
    expect(resolveWorker(undefined, undefined, { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_MIN: '4', SLURM_ARRAY_TASK_COUNT: '3' }))
      .toEqual({ index: 1, count: 3, source: 'SLURM_ARRAY_TASK_ID' });
    expect(resolveWorker(undefined, 4, { JOB_COMPLETION_INDEX: '3' })).toEqual({ index: 3, count: 4, source: 'JOB_COMPLETION_INDEX' });
    expect(resolveWorker(undefined, undefined, { JOB_COMPLETION_INDEX: '1', KD_NUM_SHARDS: '2' })).toMatchObject({ index: 1, count: 2 });
  });

  it('are refused in one line when incomplete or out of range', () => {
    expect(() => resolveWorker(undefined, undefined, { JOB_COMPLETION_INDEX: '1' }))
      .toThrow('worker index 1 (from JOB_COMPLETION_INDEX) needs a worker count: --num-shards N or KD_NUM_SHARDS');
    expect(() => resolveWorker(2, 2, {})).toThrow('worker index 2 (from flags) must be in [0, 2)');
    expect(() => resolveWorker(undefined, undefined, { SLURM_ARRAY_TASK_ID: 'x' })).toThrow('environment: SLURM_ARRAY_TASK_ID="x" is not a non-negative integer');
  });

  it('assign shard j to worker j mod N, the last shard shorter', () => {
    const plan = planShards(10, 3);
    expect(plan.map((s) => [s.file, s.start, s.end, s.first_sample_id])).toEqual([
      ['shard-00000.parquet', 0, 3, '0'], ['shard-00001.parquet', 3, 6, '3'], ['shard-00002.parquet', 6, 9, '6'], ['shard-00003.parquet', 9, 10, '9'],
    ]);
    expect(workerShards(plan, { index: 1, count: 2 }).map((s) => s.index)).toEqual([1, 3]);
    expect(workerShards(plan, { index: 2, count: 3 }).map((s) => s.index)).toEqual([2]);
  });
});

describe('two workers, then kd merge', () => {
  it('two processes at once write disjoint shards that merge into the one-worker dataset, byte for byte', async () => {
    const out = join(dir, 'two');
    const args = ['precompute', '--teacher', teacher, '--prep', prep, '--out', out, '--k', '8', '--max-windows', '96',
      '--rows-per-shard', '16', '--batch-size', '4', '--device', 'cpu', '--quiet'];
    const [a, b] = await Promise.all([
      runKd([...args, '--shard-index', '0', '--num-shards', '2']),
      runKd(args, { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '2', SLURM_ARRAY_TASK_MIN: '0' }),
    ]);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, '']);
    const w0 = await readManifestFile(join(out, workerManifestFile(0, 2)));
    const w1 = await readManifestFile(join(out, workerManifestFile(1, 2)));
    expect(w0.shards.map((s) => s.file)).toEqual(['shard-00000.parquet', 'shard-00002.parquet', 'shard-00004.parquet']);
    expect(w1.shards.map((s) => s.file)).toEqual(['shard-00001.parquet', 'shard-00003.parquet', 'shard-00005.parquet']);
    expect([w0.complete, w0.worker, w1.worker]).toEqual([true, { index: 0, count: 2 }, { index: 1, count: 2 }]);
    await expect(openLogitDataset(out)).rejects.toThrow(`${out}/manifest.json: not found, but 2 worker manifest(s) are`);

    const merged = await runKd(['merge', out, '--json']);
    expect(merged.code).toBe(0);
    expect(JSON.parse(merged.stdout)).toMatchObject({ shards: 6, totals: { rows: 96, positions: 96 * 32 } });
    expect(fileHashes(out)).toEqual(reference);
    expect(fileHashes(out, /^manifest\.worker/)).toEqual({});
    const one = JSON.parse(readFileSync(join(dir, 'one', 'manifest.json'), 'utf8'));
    const two = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(two.shards).toEqual(one.shards);
    expect(two.plan).toEqual(one.plan);
    expect((await (await openLogitDataset(out)).readAll()).length).toBe(96);
  });

  it('merges workers that wrote to separate directories into --out', async () => {
    const [d0, d1] = [join(dir, 'w0'), join(dir, 'w1')];
    await precompute({ ...CFG, teacher, prep, out: d0, shard_index: 0, num_shards: 3 });
    await precompute({ ...CFG, teacher, prep, out: d0, shard_index: 2, num_shards: 3 });
    await precompute({ ...CFG, teacher, prep, out: d1, shard_index: 1, num_shards: 3 });
    const r = await mergeDatasets([d0, d1], join(dir, 'joined'));
    expect(r.placed).toBe(6);
    expect(fileHashes(join(dir, 'joined'))).toEqual(reference);
    expect(fileHashes(d0, /^manifest/)).toHaveProperty([workerManifestFile(0, 3)]); // inputs stay as they were
  });

  it('a single worker can finish what a split run left: keeps its shards, writes the rest and manifest.json', async () => {
    const d = join(dir, 'mixed');
    await precompute({ ...CFG, teacher, prep, out: d, shard_index: 1, num_shards: 2 });
    const s = await precompute({ ...CFG, teacher, prep, out: d });
    expect(s).toMatchObject({ reused_shards: 3, computed_windows: 48, shards: 6, complete: true });
    expect(fileHashes(d)).toEqual(reference);
    expect(fileHashes(d, /^manifest/)).toEqual({ 'manifest.json': expect.any(String) });
  });

  it('merges again after a worker re-ran into a merged directory', async () => {
    const d = join(dir, 'remerge');
    await precompute({ ...CFG, teacher, prep, out: d, shard_index: 0, num_shards: 2 });
    await precompute({ ...CFG, teacher, prep, out: d, shard_index: 1, num_shards: 2 });
    await mergeDatasets([d], d);
    const again = await precompute({ ...CFG, teacher, prep, out: d, shard_index: 1, num_shards: 2 }); // e.g. a requeued task
    expect(again.reused_shards).toBe(3);
    const r = await mergeDatasets([d, d], d);
    expect([r.manifest.shards.length, r.sources.length]).toEqual([6, 2]);
    expect(fileHashes(d)).toEqual(reference);
  });

  it('refuses missing, duplicate, unfinished or incompatible worker manifests in one line', async () => {
    const [a, b, c] = [join(dir, 'ma'), join(dir, 'mb'), join(dir, 'mc')];
    await precompute({ ...CFG, teacher, prep, out: a, shard_index: 0, num_shards: 2 });
    await expect(mergeDatasets([a], a)).rejects.toThrow('missing 3 of 6 shard(s) (shard-00001.parquet, shard-00003.parquet, shard-00005.parquet): did every worker run?');
    const copy = join(dir, 'ma-copy');
    cpSync(a, copy, { recursive: true });
    await expect(mergeDatasets([a, copy], join(dir, 'mx'))).rejects.toThrow(
      `shard-00000.parquet is listed twice: by ${join(a, workerManifestFile(0, 2))} and by ${join(copy, workerManifestFile(0, 2))}`);
    await precompute({ ...CFG, teacher, prep, out: b, shard_index: 1, num_shards: 2, k: 4 });
    await expect(mergeDatasets([a, b], join(dir, 'mx'))).rejects.toThrow(
      `cannot merge ${join(a, workerManifestFile(0, 2))} and ${join(b, workerManifestFile(1, 2))}: k differs (${join(a, workerManifestFile(0, 2))} 8, ${join(b, workerManifestFile(1, 2))} 4)`);
    await precompute({ ...CFG, teacher, prep, out: c, shard_index: 1, num_shards: 2 });
    const path = join(c, workerManifestFile(1, 2));
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), complete: false }));
    await expect(mergeDatasets([a, c], join(dir, 'mx'))).rejects.toThrow(`${path}: worker 1 of 2 has not finished (3 shard(s) listed so far); re-run it, then merge`);
  });
});
