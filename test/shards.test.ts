import { copyFile, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBBlobValue, type DuckDBConnection } from '@duckdb/node-api';
import { parquetMetadata } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import {
  DUCKDB_MACROS, SHARD_CREATED_BY, openLogitDataset, readManifest, readShard, rowBytes, sha256File, shardFileName,
  verifyShard, writeManifest, writeShard, type LogitManifest, type LogitRow, type ShardLayout, type WriteShardMeta,
} from '../lib/shards/index.js';

const BIG_ID = 9007199254740993n; // 2^53 + 1: not representable as a JS number

/** mulberry32: deterministic uniform [0, 1). */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random rows of a layout; fp16 layouts get fp16-representable logits (so bit-exact compare works). */
function makeRows(n: number, layout: ShardLayout, vocab: number, seed: number, firstId = 0n): LogitRow[] {
  const r = rng(seed);
  const { seqLen: L, k, numTemps: T } = layout;
  return Array.from({ length: n }, (_, i) => {
    const logits = new Float32Array(L * k);
    for (let t = 0; t < L; t++) {
      let v = 0;
      for (let j = 0; j < k; j++) { logits[t * k + j] = v; v -= r() * 3; }
    }
    return {
      sample_id: firstId + BigInt(i),
      input_ids: Uint32Array.from({ length: L }, () => Math.floor(r() * vocab)),
      target_ids: Int32Array.from({ length: L }, () => (r() < 0.1 ? -100 : Math.floor(r() * vocab))),
      topk_ids: Uint32Array.from({ length: L * k }, () => Math.floor(r() * vocab)),
      topk_logits: layout.valueDtype === 'float16' ? decodeHalf(encodeHalf(logits)) : logits,
      log_z: Float32Array.from({ length: L * T }, () => r() * 5),
    };
  });
}

const FP16: ShardLayout = { seqLen: 16, k: 8, numTemps: 7, idDtype: 'uint16', valueDtype: 'float16' };
const FP32: ShardLayout = { seqLen: 5, k: 3, numTemps: 2, idDtype: 'uint32', valueDtype: 'float32' };

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'kd-shards-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('writeShard / readShard', () => {
  it('round-trips uint16 ids, fp16 logits bit-exact, fp32 log_z and int64 sample_id exactly', async () => {
    const rows = makeRows(9, FP16, 32000, 1, BIG_ID);
    const path = join(dir, 'rt16.parquet');
    const res = await writeShard(path, rows, FP16);
    const back = await readShard(path, FP16);
    expect(back).toStrictEqual(rows);
    expect(back[0].sample_id).toBe(9007199254740993n);
    expect(Array.from(encodeHalf(back[3].topk_logits))).toEqual(Array.from(encodeHalf(rows[3].topk_logits)));
    expect(back[2].target_ids).toEqual(rows[2].target_ids);
    expect(res).toEqual({ rows: 9, bytes: (await readFile(path)).byteLength, sha256: await sha256File(path) });
    expect(await readdir(dir)).not.toContain('rt16.parquet.tmp');
  });

  it('round-trips uint32 ids above 65535, fp32 logits, extreme int64 ids, every codec', async () => {
    const rows = makeRows(4, FP32, 150000, 2);
    rows[0].sample_id = 2n ** 63n - 1n;
    rows[1].sample_id = -(2n ** 63n);
    rows[2].topk_ids[0] = 0xffffffff;
    for (const codec of ['GZIP', 'SNAPPY', 'UNCOMPRESSED'] as const) {
      const path = join(dir, `rt32-${codec}.parquet`);
      await writeShard(path, rows, { ...FP32, codec });
      expect(await readShard(path, FP32)).toStrictEqual(rows);
    }
  });

  it('writes byte-identical files for the same rows, whatever the clock says', async () => {
    const rows = makeRows(5, FP16, 32000, 3, BIG_ID);
    const a = await writeShard(join(dir, 'det-a.parquet'), rows, FP16);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2001-02-03T04:05:06Z'));
    try {
      const b = await writeShard(join(dir, 'det-b.parquet'), rows, FP16);
      expect(b.sha256).toBe(a.sha256);
    } finally {
      vi.useRealTimers();
    }
    const bytesA = await readFile(join(dir, 'det-a.parquet'));
    expect(bytesA.equals(await readFile(join(dir, 'det-b.parquet')))).toBe(true);
    expect(parquetMetadata(new Uint8Array(bytesA)).created_by).toBe(SHARD_CREATED_BY);
  });

  it('caps row groups by rows and by bytes', async () => {
    const rows = makeRows(7, FP16, 32000, 4);
    const byRows: WriteShardMeta = { ...FP16, maxRowGroupRows: 3 };
    const p1 = join(dir, 'rg-rows.parquet');
    await writeShard(p1, rows, byRows);
    const groups = (p: string) => readFile(p).then((b) => parquetMetadata(new Uint8Array(b)).row_groups.map((g) => Number(g.num_rows)));
    expect(await groups(p1)).toEqual([3, 3, 1]);
    const p2 = join(dir, 'rg-bytes.parquet');
    expect(rowBytes(FP16)).toBe(8 + 16 * 2 + 16 * 4 + 16 * 8 * (2 + 2) + 16 * 7 * 4); // 1064
    await writeShard(p2, rows, { ...FP16, maxRowGroupBytes: 2 * 1064 + 1 });
    expect(await groups(p2)).toEqual([2, 2, 2, 1]);
    expect(await readShard(p2, FP16)).toEqual(rows);
  });

  it('refuses bad rows with one-line errors and leaves no file behind', async () => {
    const path = join(dir, 'bad.parquet');
    const rows = makeRows(2, FP16, 32000, 5);
    rows[1].topk_ids = new Uint32Array(5);
    await expect(writeShard(path, rows, FP16)).rejects.toThrow(`${path}: row 1: topk_ids has 5 values, expected 128`);
    const big = makeRows(1, FP16, 32000, 6);
    big[0].input_ids[3] = 70000;
    await expect(writeShard(path, big, FP16)).rejects.toThrow(`${path}: row 0: input_ids: id 70000 at index 3 does not fit uint16`);
    await expect(writeShard(path, [], FP16)).rejects.toThrow(`${path}: refusing to write a shard with no rows`);
    expect((await readdir(dir)).filter((f) => f.startsWith('bad.parquet'))).toEqual([]);
  });

  it('reports a truncated shard in one line', async () => {
    const path = join(dir, 'trunc.parquet');
    const { bytes } = await writeShard(path, makeRows(6, FP16, 32000, 7), FP16);
    for (const keep of [Math.floor(bytes / 2), bytes - 3, 7]) {
      const cut = join(dir, `cut-${keep}.parquet`);
      await copyFile(path, cut);
      await truncate(cut, keep);
      const err = await readShard(cut, FP16).then(() => null, (e: Error) => e);
      expect(err?.message).toMatch(new RegExp(`^${cut.replace(/[.]/g, '\\.')}: truncated or corrupt shard \\(.+\\)$`));
      expect(err?.message).not.toContain('\n');
    }
  });

  it('reports damaged page bytes (gzip CRC) in one line', async () => {
    const path = join(dir, 'flip.parquet');
    const { bytes } = await writeShard(path, makeRows(6, FP16, 32000, 13), FP16);
    const buf = await readFile(path);
    for (let i = Math.floor(bytes / 3); i < Math.floor(bytes / 3) + 64; i++) buf[i] ^= 0xa5;
    await writeFile(path, buf);
    await expect(readShard(path, FP16)).rejects.toThrow(`${path}: truncated or corrupt shard (`);
  });

  it('reports a shard of another shape or not written by kd', async () => {
    const path = join(dir, 'shape.parquet');
    await writeShard(path, makeRows(2, FP16, 32000, 8), FP16);
    await expect(readShard(path, { ...FP16, k: 32 })).rejects.toThrow(`${path}: shard does not match manifest (k=8 expected 32)`);
    await expect(readShard(path, { ...FP16, numTemps: 3, idDtype: 'uint32' }))
      .rejects.toThrow(`${path}: shard does not match manifest (num_temps=7 expected 3, ids="uint16" expected "uint32")`);
  });
});

describe('DuckDB reads shards', () => {
  let con: DuckDBConnection;
  beforeAll(async () => { con = await (await DuckDBInstance.create(':memory:')).connect(); });

  it('returns the same sample ids and blob values, and the SQL macros decode them', async () => {
    const rows = makeRows(3, FP16, 32000, 9, BIG_ID);
    const path = join(dir, 'duck.parquet');
    await writeShard(path, rows, FP16);
    const res = await con.runAndReadAll(`SELECT sample_id, input_ids, target_ids, topk_ids, topk_logits, log_z FROM read_parquet('${path}') ORDER BY sample_id`);
    const [ids, inp, tgt, topk, logits, logz] = res.getColumns();
    expect(ids).toEqual(rows.map((r) => r.sample_id));
    const blob = (v: unknown) => Uint8Array.from((v as DuckDBBlobValue).bytes).buffer;
    rows.forEach((r, i) => {
      expect(Uint32Array.from(new Uint16Array(blob(inp[i])))).toEqual(r.input_ids);
      expect(new Int32Array(blob(tgt[i]))).toEqual(r.target_ids);
      expect(Uint32Array.from(new Uint16Array(blob(topk[i])))).toEqual(r.topk_ids);
      expect(decodeHalf(new Uint16Array(blob(logits[i])))).toEqual(r.topk_logits);
      expect(new Float32Array(blob(logz[i]))).toEqual(r.log_z);
    });
    for (const stmt of DUCKDB_MACROS) await con.run(stmt);
    const sql = await con.runAndReadAll(`SELECT count(*) OVER () n, kd_u16s(topk_ids) ids, kd_i32s(target_ids) tgt,
      kd_f16s(topk_logits) lg, kd_f32s(log_z) lz FROM read_parquet('${path}') ORDER BY sample_id`);
    const objs = sql.getRowObjectsJS();
    expect(objs[0].n).toBe(3n);
    rows.forEach((r, i) => {
      expect(objs[i].ids).toEqual(Array.from(r.topk_ids));
      expect(objs[i].tgt).toEqual(Array.from(r.target_ids));
      expect(objs[i].lg).toEqual(Array.from(r.topk_logits));
      expect(objs[i].lz).toEqual(Array.from(r.log_z));
    });
  });

  it('decodes uint32 ids and fp32 logits in SQL', async () => {
    const rows = makeRows(2, FP32, 150000, 10);
    const path = join(dir, 'duck32.parquet');
    await writeShard(path, rows, FP32);
    for (const stmt of DUCKDB_MACROS) await con.run(stmt);
    const objs = (await con.runAndReadAll(`SELECT kd_u32s(topk_ids) ids, kd_f32s(topk_logits) lg FROM read_parquet('${path}') ORDER BY sample_id`)).getRowObjectsJS();
    expect(objs[1].ids).toEqual(Array.from(rows[1].topk_ids, (v) => BigInt(v)));
    expect(objs[1].lg).toEqual(Array.from(rows[1].topk_logits));
  });
});

function manifestFor(shards: LogitManifest['shards'], layout: ShardLayout): LogitManifest {
  const rows = shards.reduce((a, s) => a + s.rows, 0);
  return {
    format: 'kd-logits', version: 1,
    teacher: { path: 'teacher.onnx', sha256: 'a'.repeat(64), dtype: 'fp32', execution_provider: 'cpu', input_names: ['input_ids'], output_names: ['logits', 'topk_values'] },
    tokenizer: { sha256: 'b'.repeat(64), vocab_size: 32064, real_vocab_size: 32000 },
    windows: { source: 'windows/train.bin', sha256: 'c'.repeat(64) },
    seq_len: layout.seqLen, k: layout.k, mode: 'topk', temperatures: [1, 1.5, 2, 2.5, 3, 3.5, 4].slice(0, layout.numTemps),
    encoding: { ids: layout.idDtype, values: layout.valueDtype, layout: 'packed-le' },
    shards, totals: { rows, positions: rows * layout.seqLen, bytes: shards.reduce((a, s) => a + s.bytes, 0) },
    tool_version: '0.1.0', created_at: '2025-01-01T00:00:00Z',
  };
}

/** A two-shard dataset directory. */
async function makeDataset(name: string): Promise<{ ddir: string; rows: LogitRow[] }> {
  const ddir = await mkdtemp(join(dir, name));
  const rows = makeRows(7, FP16, 32000, 11, BIG_ID);
  const parts = [rows.slice(0, 4), rows.slice(4)];
  const shards = [];
  for (const [i, part] of parts.entries()) {
    const file = shardFileName(i);
    const res = await writeShard(join(ddir, file), part, FP16);
    shards.push({ file, rows: res.rows, first_sample_id: part[0].sample_id.toString(), bytes: res.bytes, sha256: res.sha256 });
  }
  await writeManifest(ddir, manifestFor(shards, FP16));
  return { ddir, rows };
}

describe('manifest', () => {
  it('round-trips and names a missing field in one line', async () => {
    const { ddir } = await makeDataset('man-');
    const m = await readManifest(ddir);
    expect(m.shards.map((s) => s.file)).toEqual(['shard-00000.parquet', 'shard-00001.parquet']);
    expect(m.shards[0].first_sample_id).toBe('9007199254740993');
    expect((await readdir(ddir)).sort()).toEqual(['manifest.json', 'shard-00000.parquet', 'shard-00001.parquet']);
    const raw = JSON.parse(await readFile(join(ddir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    const write = (obj: unknown) => writeFile(join(ddir, 'manifest.json'), JSON.stringify(obj));
    await write({ ...raw, k: undefined });
    await expect(readManifest(ddir)).rejects.toThrow(`${ddir}/manifest.json: missing field 'k'`);
    await write({ ...raw, teacher: { ...(raw.teacher as object), sha256: undefined } });
    await expect(readManifest(ddir)).rejects.toThrow(`${ddir}/manifest.json: missing field 'teacher.sha256'`);
    await write({ ...raw, format: 'something-else' });
    await expect(readManifest(ddir)).rejects.toThrow(`${ddir}/manifest.json: not a kd-logits manifest (format "something-else")`);
    await write({ ...raw, k: 0 });
    await expect(readManifest(ddir)).rejects.toThrow(`${ddir}/manifest.json: field 'k' must be a positive integer (got 0)`);
    await writeFile(join(ddir, 'manifest.json'), '{"format": ');
    await expect(readManifest(ddir)).rejects.toThrow(/manifest\.json: invalid JSON \(/);
    await expect(readManifest(join(dir, 'nowhere'))).rejects.toThrow(`${dir}/nowhere/manifest.json: not found`);
  });

  it('accepts a numeric first_sample_id and refuses inconsistent totals', async () => {
    const m = manifestFor([{ file: 'shard-00000.parquet', rows: 2, first_sample_id: 5 as unknown as string, bytes: 10, sha256: 'd'.repeat(64) }], FP16);
    const mdir = await mkdtemp(join(dir, 'tot-'));
    await writeManifest(mdir, m);
    expect((await readManifest(mdir)).shards[0].first_sample_id).toBe('5');
    await expect(writeManifest(mdir, { ...m, totals: { ...m.totals, rows: 3 } }))
      .rejects.toThrow(`${mdir}/manifest.json: totals.rows 3 != 2, the sum over shards`);
    expect(await readdir(mdir)).toEqual(['manifest.json']);
  });
});

describe('openLogitDataset', () => {
  it('streams all rows in order and checks hashes on request', async () => {
    const { ddir, rows } = await makeDataset('ds-');
    const ds = await openLogitDataset(ddir, { verify: true });
    expect(ds.layout).toEqual(FP16);
    const streamed: LogitRow[] = [];
    for await (const row of ds.rows()) streamed.push(row);
    expect(streamed).toStrictEqual(rows);
    expect(await ds.readAll()).toEqual(rows);
    expect(await verifyShard(ddir, ds.manifest.shards[1])).toBeNull();
  });

  it('refuses a missing or truncated shard in one line', async () => {
    const { ddir } = await makeDataset('dsbad-');
    const second = join(ddir, 'shard-00001.parquet');
    const { size } = await import('node:fs/promises').then((fs) => fs.stat(second));
    await truncate(second, size - 10);
    await expect(openLogitDataset(ddir)).rejects.toThrow(`${second}: truncated or corrupt shard (${size - 10} bytes, manifest says ${size})`);
    const m = await readManifest(ddir);
    expect(await verifyShard(ddir, m.shards[1])).toBe(`${second}: ${size - 10} bytes, manifest says ${size}`);
    await rm(second);
    await expect(openLogitDataset(ddir)).rejects.toThrow(`${second}: shard listed in manifest.json is missing`);
  });

  it('refuses a shard swapped in from elsewhere', async () => {
    const { ddir } = await makeDataset('dsswap-');
    const first = join(ddir, 'shard-00000.parquet');
    const m = await readManifest(ddir);
    const other = makeRows(4, FP16, 32000, 12, 100n);
    const res = await writeShard(first, other, FP16);
    m.shards[0] = { ...m.shards[0], bytes: res.bytes, sha256: res.sha256 };
    m.totals.bytes = m.shards.reduce((a, s) => a + s.bytes, 0);
    await writeManifest(ddir, m);
    const ds = await openLogitDataset(ddir);
    await expect(ds.readAll()).rejects.toThrow(`${first}: shard does not match manifest (first_sample_id=100 expected 9007199254740993)`);
  });
});
