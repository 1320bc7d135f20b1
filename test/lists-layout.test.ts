/**
 * Shard layout `lists` (lib/shards/lists.ts): typed Parquet lists that DuckDB reads with plain
 * SQL, kd's readShard / readShardBlock read exactly, `kd convert` turns into packed and back.
 */
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHalfBits } from '../lib/logits/fp16.js';
import { convertDataset } from '../lib/shards/convert.js';
import {
  SHARD_CREATED_BY, SHARD_KV_KEY, openLogitDataset, readManifest, readShard, sha256File, shardFileName, writeManifest, writeShard,
  type LogitManifest, type LogitRow, type ShardLayout, type WriteShardMeta,
} from '../lib/shards/index.js';
import { encodeListsShard, listsSchema } from '../lib/shards/lists.js';
import { readShardBlock } from '../lib/shards/reader.js';
import { shardKv } from '../lib/shards/schema.js';
import { run as convertStage } from '../stages/convert.js';
import { run as precompute } from '../stages/precompute.js';
import { makePrep, runKd, writeTeacher } from './precompute-fixture.js';
import { BIG_ID, FP16, FP32, makeRows, rng } from './shard-rows.js';

const HIDDEN: ShardLayout = { ...FP16, hidden: { layers: 2, width: 3 } };

/** makeRows plus random finite fp16 hidden states when the layout has them. */
function rowsOf(n: number, layout: ShardLayout, vocab: number, seed: number, firstId = 0n): LogitRow[] {
  const rows = makeRows(n, layout, vocab, seed, firstId), r = rng(seed + 100);
  if (!layout.hidden) return rows;
  const nh = layout.seqLen * layout.hidden.layers * layout.hidden.width;
  return rows.map((row) => ({ ...row, hidden: Uint16Array.from({ length: nh }, () => Math.floor(r() * 0x7c00) | (r() < 0.5 ? 0x8000 : 0)) }));
}

let dir: string;
let con: DuckDBConnection;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kd-lists-'));
  con = await (await DuckDBInstance.create(':memory:')).connect();
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** [L·n] → [L][n] as plain arrays of numbers. */
const nest = (a: ArrayLike<number>, n: number): number[][] => Array.from({ length: a.length / n }, (_, t) => Array.from({ length: n }, (_, j) => a[t * n + j]));

describe('writeShard / readShard, layout lists', () => {
  it('round-trip uint16 ids, fp16 logits, −100 targets, int64 ids beyond 2^53 and hidden states exactly, byte-deterministic, every codec', async () => {
    const rows = rowsOf(9, HIDDEN, 32000, 1, BIG_ID);
    for (const codec of ['BROTLI', 'GZIP', 'SNAPPY', 'UNCOMPRESSED'] as const) {
      const path = join(dir, `u16-${codec}.parquet`);
      const res = await writeShard(path, rows, { ...HIDDEN, layout: 'lists', codec, maxRowGroupRows: 4 });
      expect(await readShard(path, { ...HIDDEN, layout: 'lists' })).toStrictEqual(rows);
      expect(await readShard(path, HIDDEN)).toStrictEqual(rows); // layout taken from the shard
      expect((await writeShard(join(dir, 'again.parquet'), rows, { ...HIDDEN, layout: 'lists', codec, maxRowGroupRows: 4 })).sha256).toBe(res.sha256);
      const meta = parquetMetadata(new Uint8Array(await readFile(path)).buffer);
      expect(meta.row_groups.map((g) => g.num_rows)).toEqual([4n, 4n, 1n]);
      expect(JSON.parse(meta.key_value_metadata!.find((e) => e.key === SHARD_KV_KEY)!.value!).layout).toBe('lists');
      expect(meta.created_by).toBe(SHARD_CREATED_BY);
    }
  });

  it('round-trip uint32 ids up to 2^32 − 1, fp32 logits and extreme int64 sample ids', async () => {
    const rows = rowsOf(4, FP32, 150000, 2);
    rows[0].sample_id = 2n ** 63n - 1n;
    rows[1].sample_id = -(2n ** 63n);
    rows[2].topk_ids[0] = 0xffffffff;
    rows[3].input_ids[4] = 0x80000000;
    const path = join(dir, 'u32.parquet');
    await writeShard(path, rows, { ...FP32, layout: 'lists' });
    expect(await readShard(path, FP32)).toStrictEqual(rows);
  });

  it('readShardBlock of a lists shard equals readShardBlock of the packed shard of the same rows', async () => {
    for (const [layout, vocab] of [[HIDDEN, 32000], [FP32, 150000]] as const) {
      const rows = rowsOf(7, layout, vocab, 3, 1000n);
      const packed = join(dir, 'block-packed.parquet'), lists = join(dir, 'block-lists.parquet');
      await writeShard(packed, rows, { ...layout, maxRowGroupRows: 3 });
      await writeShard(lists, rows, { ...layout, layout: 'lists', maxRowGroupRows: 3 });
      const a = await readShardBlock(packed, layout), b = await readShardBlock(lists, layout);
      expect(b).toStrictEqual(a);
      expect(b.firstSampleId).toBe(1000n);
      expect(b.topkIds).toBeInstanceOf(layout.idDtype === 'uint16' ? Uint16Array : Uint32Array);
    }
  });

  it('reads pages of one row each, and a lists shard written by another writer (v2 pages, dictionary encoding)', async () => {
    const rows = rowsOf(5, FP16, 40, 4); // vocab 40: ids repeat, so hyparquet-writer picks dictionaries
    const onePerPage = join(dir, 'pages.parquet');
    const bytes = encodeListsShard(rows, FP16, { name: 'UNCOMPRESSED' }, { rowGroupRows: 5, createdBy: 'test', pageBytes: 1 }, onePerPage);
    await writeFile(onePerPage, bytes);
    expect(await readShard(onePerPage, FP16)).toStrictEqual(rows);
    const other = join(dir, 'other-writer.parquet');
    await writeFile(other, new Uint8Array(parquetWriteBuffer({
      schema: listsSchema(FP16), codec: 'SNAPPY', kvMetadata: [{ key: SHARD_KV_KEY, value: JSON.stringify(shardKv({ ...FP16, layout: 'lists' })) }],
      columnData: [
        { name: 'sample_id', data: rows.map((r) => r.sample_id) },
        { name: 'input_ids', data: rows.map((r) => Array.from(r.input_ids)) },
        { name: 'target_ids', data: rows.map((r) => Array.from(r.target_ids)) },
        { name: 'topk_ids', data: rows.map((r) => nest(r.topk_ids, FP16.k)) },
        { name: 'topk_logits', data: rows.map((r) => nest(r.topk_logits, FP16.k)) },
        { name: 'log_z', data: rows.map((r) => nest(r.log_z, FP16.numTemps)) },
      ],
    })));
    const meta = parquetMetadata(new Uint8Array(await readFile(other)).buffer);
    expect(meta.row_groups[0].columns.find((c) => c.meta_data!.path_in_schema[0] === 'topk_ids')!.meta_data!.encodings).toContain('RLE_DICTIONARY');
    expect(await readShard(other, FP16)).toStrictEqual(rows);
    expect(await readShardBlock(other, FP16)).toStrictEqual(await readShardBlock(onePerPage, FP16));
  });
});

describe('DuckDB reads a lists shard with plain SQL (no kd macros)', () => {
  it('typed columns with the values kd reads; [t][j] indexing; mean p(top-1) equals a float64 reference', async () => {
    const rows = rowsOf(3, HIDDEN, 32000, 5, BIG_ID);
    const path = join(dir, 'duck.parquet');
    await writeShard(path, rows, { ...HIDDEN, layout: 'lists' });
    const kd = await readShard(path, HIDDEN);
    const types = (await con.runAndReadAll(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${path}'))`)).getRows();
    expect(Object.fromEntries(types)).toEqual({
      sample_id: 'BIGINT', input_ids: 'USMALLINT[]', target_ids: 'INTEGER[]', topk_ids: 'USMALLINT[][]',
      topk_logits: 'FLOAT[][]', log_z: 'FLOAT[][]', hidden: 'FLOAT[][]',
    });
    const objs = (await con.runAndReadAll(`SELECT sample_id, input_ids, target_ids, topk_ids, topk_logits, log_z, hidden,
      topk_ids[3][2] AS id_t2_j1, topk_logits[3][2] AS z_t2_j1 FROM read_parquet('${path}') ORDER BY sample_id`)).getRowObjectsJS();
    expect(objs).toHaveLength(3);
    const { k, numTemps: T } = FP16, nh = 2 * 3;
    kd.forEach((r, i) => {
      expect(objs[i].sample_id).toBe(r.sample_id);
      expect(objs[i].input_ids).toEqual(Array.from(r.input_ids));
      expect(objs[i].target_ids).toEqual(Array.from(r.target_ids));
      expect(objs[i].topk_ids).toEqual(nest(r.topk_ids, k));
      expect(objs[i].topk_logits).toEqual(nest(r.topk_logits, k));
      expect(objs[i].log_z).toEqual(nest(r.log_z, T));
      expect(objs[i].hidden).toEqual(nest(Array.from(r.hidden!, fromHalfBits), nh));
      expect([objs[i].id_t2_j1, objs[i].z_t2_j1]).toEqual([r.topk_ids[2 * k + 1], r.topk_logits[2 * k + 1]]); // 1-based in SQL
    });
    // p_τ=1(top-1) = exp(z_1 − max z − log_z_1) per position (DESIGN §3.2), averaged in float64 here and in SQL
    let sum = 0;
    for (const r of kd) for (let t = 0; t < FP16.seqLen; t++) sum += Math.exp(r.topk_logits[t * k] - r.log_z[t * T]);
    const [[mean, n]] = (await con.runAndReadAll(`SELECT avg(exp(z[1]::DOUBLE - lz[1])), count(*)
      FROM (SELECT unnest(topk_logits) AS z, unnest(log_z) AS lz FROM read_parquet('${path}'))`)).getRows();
    expect(n).toBe(BigInt(3 * FP16.seqLen));
    expect(mean as number).toBeCloseTo(sum / (3 * FP16.seqLen), 12);
  });

  it('uint32 ids as UINTEGER and fp32 logits (BYTE_STREAM_SPLIT) as FLOAT', async () => {
    const rows = rowsOf(2, FP32, 150000, 6);
    rows[1].topk_ids[2] = 0xffffffff;
    const path = join(dir, 'duck32.parquet');
    await writeShard(path, rows, { ...FP32, layout: 'lists' });
    const objs = (await con.runAndReadAll(`SELECT typeof(topk_ids) AS ty, topk_ids, input_ids, topk_logits, log_z FROM read_parquet('${path}') ORDER BY sample_id`)).getRowObjectsJS();
    rows.forEach((r, i) => {
      expect(objs[i].ty).toBe('UINTEGER[][]');
      expect(objs[i].topk_ids).toEqual(nest(r.topk_ids, FP32.k)); // 2^32 − 1 included
      expect(objs[i].input_ids).toEqual(Array.from(r.input_ids));
      expect(objs[i].topk_logits).toEqual(nest(r.topk_logits, FP32.k));
      expect(objs[i].log_z).toEqual(nest(r.log_z, FP32.numTemps));
    });
  });
});

describe('lists shards that do not match', () => {
  it('other shapes, another schema, lists of other lengths, a cut file: one line each', async () => {
    const rows = rowsOf(3, FP16, 32000, 7);
    const path = join(dir, 'bad.parquet');
    await writeShard(path, rows, { ...FP16, layout: 'lists' });
    await expect(readShard(path, { ...FP16, k: 4 })).rejects.toThrow(`${path}: shard does not match manifest (k=8 expected 4)`);
    await expect(readShard(path, { ...FP16, layout: 'packed-le-split' })).rejects.toThrow(`${path}: shard does not match manifest (layout="lists" expected "packed-le-split")`);
    const flat = join(dir, 'flat.parquet'); // the measurement's flat variant under a `lists` kd.shard
    await writeFile(flat, encodeListsShard(rows, FP16, { name: 'UNCOMPRESSED' }, { rowGroupRows: 3, createdBy: 'test', nested: false }, flat));
    await expect(readShard(flat, FP16)).rejects.toThrow(new RegExp(`^${flat}: shard does not match manifest \\(schema element 10 is 'element: REQUIRED INT32 UINT_16 ×0', expected 'element: REQUIRED group LIST LIST ×1'\\)$`));
    const ragged = join(dir, 'ragged.parquet');
    await writeFile(ragged, new Uint8Array(parquetWriteBuffer({
      schema: listsSchema(FP16), kvMetadata: [{ key: SHARD_KV_KEY, value: JSON.stringify(shardKv({ ...FP16, layout: 'lists' })) }],
      columnData: [
        { name: 'sample_id', data: rows.map((r) => r.sample_id) },
        { name: 'input_ids', data: rows.map((r) => Array.from(r.input_ids)) },
        { name: 'target_ids', data: rows.map((r) => Array.from(r.target_ids)) },
        { name: 'topk_ids', data: rows.map((r, i) => nest(r.topk_ids, FP16.k).map((p, t) => (i === 1 && t === 5 ? p.slice(1) : p))) }, // row 1: 7 ids at position 5
        { name: 'topk_logits', data: rows.map((r) => nest(r.topk_logits, FP16.k)) },
        { name: 'log_z', data: rows.map((r) => nest(r.log_z, FP16.numTemps)) },
      ],
    })));
    await expect(readShard(ragged, FP16)).rejects.toThrow(`${ragged}: shard does not match manifest (topk_ids: row 1 is not [16][8] values)`);
    await expect(readShardBlock(ragged, FP16)).rejects.toThrow(`${ragged}: shard does not match manifest (topk_ids: row 1 is not [16][8] values)`);
    await truncate(path, (await readFile(path)).length - 100);
    await expect(readShard(path, FP16)).rejects.toThrow(`${path}: truncated or corrupt shard (no PAR1 footer: file cut short?)`);
    await expect(writeShard(join(dir, 'big-id.parquet'), [{ ...rows[0], topk_ids: rows[0].topk_ids.map(() => 70000) }], { ...FP16, layout: 'lists' }))
      .rejects.toThrow(`${join(dir, 'big-id.parquet')}: row 0: topk_ids: id 70000 at index 0 does not fit uint16 (use idDtype 'uint32')`);
    await expect(writeShard(join(dir, 'short.parquet'), [{ ...rows[0], log_z: new Float32Array(3) }], { ...FP16, layout: 'lists' }))
      .rejects.toThrow(`${join(dir, 'short.parquet')}: row 0: log_z has 3 values, expected 112`);
  });
});

/** A dataset of 3 shards (rows 4 + 4 + 2) in a new directory under `dir`, packed or compact (value step 1/16). */
async function packedDataset(name: string, compact = false): Promise<{ ddir: string; rows: LogitRow[] }> {
  const ddir = await mkdtemp(join(dir, name));
  const rows = rowsOf(10, HIDDEN, 32000, 8, BIG_ID), shards = [];
  const layout: WriteShardMeta = compact ? { ...HIDDEN, layout: 'compact', valueStep: 1 / 16 } : HIDDEN;
  for (const [i, part] of [rows.slice(0, 4), rows.slice(4, 8), rows.slice(8)].entries()) {
    const res = await writeShard(join(ddir, shardFileName(i)), part, layout);
    shards.push({
      file: shardFileName(i), rows: res.rows, first_sample_id: part[0].sample_id.toString(), bytes: res.bytes, sha256: res.sha256,
      ...(res.klError ? { kl_error: { mean: res.klError.sum / res.klError.positions, max: res.klError.max } } : {}),
    });
  }
  const m: LogitManifest = {
    format: 'kd-logits', version: 1,
    teacher: { path: 'teacher.onnx', sha256: 'a'.repeat(64), dtype: 'fp32', execution_provider: 'cpu', input_names: ['input_ids'], output_names: ['logits'] },
    tokenizer: { sha256: 'b'.repeat(64), vocab_size: 32000, real_vocab_size: 32000 },
    windows: { source: 'prep/windows.json', sha256: 'c'.repeat(64) },
    seq_len: HIDDEN.seqLen, k: HIDDEN.k, mode: 'topk', temperatures: [1, 1.5, 2, 2.5, 3, 3.5, 4],
    encoding: { ids: 'uint16', values: 'float16', layout: compact ? 'compact' : 'packed-le-split', codec: 'BROTLI', ...(compact ? { value_step: 1 / 16 } : {}) },
    hidden: { layers: [1, 2], width: 3, dtype: 'float16', projection: null },
    plan: { rows: 10, rows_per_shard: 4, shards: 3, batch_size: 2 },
    shards, totals: { rows: 10, positions: 10 * HIDDEN.seqLen, bytes: shards.reduce((n, s) => n + s.bytes, 0) },
    tool_version: '0.1.0', created_at: '2025-01-01T00:00:00Z',
  };
  await writeManifest(ddir, m);
  return { ddir, rows };
}

describe('kd convert', () => {
  it('packed → lists → packed: identical rows, identical shard bytes on the way back, converted_from recorded', async () => {
    const { ddir, rows } = await packedDataset('src-');
    const lists = join(dir, 'as-lists'), back = join(dir, 'back');
    const summary = await convertStage({ in: ddir, out: lists, layout: 'lists', quiet: true });
    expect(summary).toMatchObject({ from_layout: 'packed-le-split', layout: 'lists', shards: 3, windows: 10, positions: 160 });
    const m = await readManifest(lists);
    expect(m.encoding).toEqual({ ids: 'uint16', values: 'float16', layout: 'lists', codec: 'BROTLI' });
    expect(m.converted_from).toEqual({ dir: ddir, layout: 'packed-le-split', manifest_sha256: await sha256File(join(ddir, 'manifest.json')) });
    for (const s of m.shards) expect(s.sha256).toBe(await sha256File(join(lists, s.file)));
    expect(m.totals.bytes).toBe(summary.bytes_out);
    expect(await (await openLogitDataset(lists, { verify: true })).readAll()).toStrictEqual(rows);
    await convertStage({ in: lists, out: back, layout: 'packed', quiet: true });
    const original = await readManifest(ddir), again = await readManifest(back);
    expect(again.shards).toEqual(original.shards); // same files, rows, bytes and sha256
    expect(again.converted_from!.layout).toBe('lists');
    const { converted_from: _a, created_at: _b, ...rest } = again;
    expect({ ...rest, complete: undefined }).toEqual({ ...original, complete: undefined, created_at: undefined, tool_version: rest.tool_version });
  });

  it('a compact source: lists hold exactly the values compact decodes to, without compact\'s fields', async () => {
    const { ddir } = await packedDataset('compact-', true);
    const decoded = await (await openLogitDataset(ddir)).readAll();
    const out = join(dir, 'compact-lists');
    await convertDataset(ddir, out, 'lists', { toolVersion: 'x' });
    const m = await readManifest(out);
    expect([m.encoding.value_step, m.shards.map((s) => s.kl_error), m.converted_from!.layout]).toEqual([undefined, [undefined, undefined, undefined], 'compact']);
    expect(await (await openLogitDataset(out)).readAll()).toStrictEqual(decoded);
  });

  it('packed → compact: the rows and shard bytes a compact write of the same rows gives, its KL error recorded', async () => {
    const { ddir } = await packedDataset('to-compact-');
    const { ddir: direct } = await packedDataset('direct-compact-', true); // the same rows written compact
    const out = join(dir, 'as-compact');
    const summary = await convertStage({ in: ddir, out, layout: 'compact', quiet: true });
    const m = await readManifest(out), want = await readManifest(direct);
    expect(m.encoding).toEqual({ ids: 'uint16', values: 'float16', layout: 'compact', codec: 'BROTLI', value_step: 1 / 16 });
    expect(m.shards.map((s) => [s.sha256, s.kl_error])).toEqual(want.shards.map((s) => [s.sha256, s.kl_error]));
    expect(summary.kl_error!.mean).toBeCloseTo((want.shards[0].kl_error!.mean * 4 + want.shards[1].kl_error!.mean * 4 + want.shards[2].kl_error!.mean * 2) / 10, 12);
    expect(summary.bytes_per_position_out).toBeLessThan(summary.bytes_per_position_in);
    await expect(convertStage({ in: ddir, out: join(dir, 'x'), layout: 'lists', value_step: 0.125, quiet: true })).rejects.toThrow('convert config: value_step is for --layout compact');
  });

  it('bad input: the source itself, a source already in the layout, a damaged source shard, an existing dataset in --out', async () => {
    const { ddir } = await packedDataset('bad-');
    const out = join(dir, 'bad-out');
    await expect(convertDataset(ddir, ddir, 'lists', { toolVersion: 'x' })).rejects.toThrow(`${ddir}: is the dataset being converted; write to another directory`);
    const link = join(dir, 'bad-link');
    await symlink(ddir, link); // --out a symlink to --in: would have deleted the source with --overwrite
    await expect(convertDataset(ddir, link, 'lists', { toolVersion: 'x', overwrite: true })).rejects.toThrow(`${link}: is the dataset being converted; write to another directory`);
    await expect(convertDataset(link, ddir, 'lists', { toolVersion: 'x', overwrite: true })).rejects.toThrow(`${ddir}: is the dataset being converted`);
    expect((await readManifest(ddir)).shards).toHaveLength(3);
    const holed = await packedDataset('holed-'); // a directory where a listed shard belongs
    await rm(join(holed.ddir, shardFileName(1)));
    await mkdir(join(holed.ddir, shardFileName(1)));
    await expect(convertDataset(holed.ddir, join(dir, 'holed-out'), 'lists', { toolVersion: 'x' }))
      .rejects.toThrow(`${join(holed.ddir, shardFileName(1))}: is a directory, expected the shard file manifest.json lists`);
    await expect(convertDataset(join(dir, 'nothing'), out, 'lists', { toolVersion: 'x' })).rejects.toThrow(`${join(dir, 'nothing', 'manifest.json')}: not found (not a logit dataset directory?)`);
    await expect(convertDataset(ddir, out, 'packed-le-split', { toolVersion: 'x' })).rejects.toThrow(`${join(ddir, 'manifest.json')}: already in layout packed-le-split; nothing to convert`);
    await convertDataset(ddir, out, 'lists', { toolVersion: 'x' });
    await writeFile(join(out, 'notes.txt'), 'mine');
    await expect(convertDataset(ddir, out, 'lists', { toolVersion: 'x' }))
      .rejects.toThrow(`${out}: holds a logit dataset already (manifest.json, shard-00000.parquet, shard-00001.parquet, …); --overwrite replaces it`);
    await convertDataset(ddir, out, 'lists', { toolVersion: 'x', overwrite: true });
    expect(await readFile(join(out, 'notes.txt'), 'utf8')).toBe('mine'); // not kd's: kept
    const shard = join(ddir, 'shard-00001.parquet'), bytes = await readFile(shard);
    bytes[bytes.length >> 1] ^= 0x40; // same size, other content
    await writeFile(shard, bytes);
    await expect(convertDataset(ddir, join(dir, 'bad-out2'), 'lists', { toolVersion: 'x' }))
      .rejects.toThrow(new RegExp(`^${shard}: shard does not match manifest \\(sha256 [0-9a-f]{12}… expected [0-9a-f]{12}…: a shard from another dataset, or damaged\\)$`));
    await expect(readManifest(join(dir, 'bad-out2'))).rejects.toThrow('not found'); // no manifest: nothing looks complete
  });
});

describe('kd precompute --layout lists', () => {
  it('writes lists shards holding the rows of a packed run; a bad --layout and a bad convert get one line', async () => {
    const { dir: pdir, prep } = await makePrep('lists-pre');
    const teacher = writeTeacher(join(pdir, 'teacher.onnx'));
    const cfg = { teacher, prep, k: 8, max_windows: 24, rows_per_shard: 16, batch_size: 4, device: 'cpu' as const, quiet: true };
    await precompute({ ...cfg, out: join(pdir, 'packed') });
    const summary = await precompute({ ...cfg, out: join(pdir, 'lists'), layout: 'lists' });
    expect(summary.shards).toBe(2);
    const m = await readManifest(join(pdir, 'lists'));
    expect(m.encoding.layout).toBe('lists');
    expect(await (await openLogitDataset(join(pdir, 'lists'), { verify: true })).readAll())
      .toStrictEqual(await (await openLogitDataset(join(pdir, 'packed'))).readAll());
    await expect(precompute({ ...cfg, out: join(pdir, 'x'), layout: 'csv' })).rejects.toThrow('precompute config: layout = "csv" must be one of auto, packed, compact, lists');
    const r = await runKd(['convert', '--in', join(pdir, 'lists'), '--out', join(pdir, 'lists'), '--layout', 'packed']);
    expect([r.code, r.stderr]).toEqual([1, `kd: ${join(pdir, 'lists')}: is the dataset being converted; write to another directory\n`]);
    await rm(pdir, { recursive: true, force: true });
  }, 120_000);
});
