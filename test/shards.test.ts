import { copyFile, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance, type DuckDBBlobValue, type DuckDBConnection } from '@duckdb/node-api';
import { parquetMetadata } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import {
  DUCKDB_MACROS, SHARD_CREATED_BY, SHARD_KV_KEY, SHARD_LAYOUT, openLogitDataset, readManifest, readShard, rowBytes, sha256File,
  shardFileName, verifyShard, writeManifest, writeShard, type LayoutName, type LogitManifest, type LogitRow, type ShardLayout,
  type WriteShardMeta,
} from '../lib/shards/index.js';
import { joinBytes16, joinBytes32, packRow, splitBytes, unpackRow } from '../lib/shards/packing.js';
import { BIG_ID, FP16, FP32, makeRows, oldLayoutFixtures, rng } from './shard-rows.js';

/** The `packed-le` shards written by kd before `packed-le-split` (rows: {@link oldLayoutFixtures}), with their sha256. */
const FIXTURES = fileURLToPath(new URL('./fixtures/shards/', import.meta.url));
const FIXTURE_SHA256: Record<string, string> = {
  'packed-le-u16-f16.parquet': 'da2505bb25be4cc0e1b29df75fab803078474905cc07d5b0716c0f1923a052ac',
  'packed-le-u32-f32.parquet': '0e3d89996922edf17d618d7715988516a558214740dc36ff6e9182666e0b3d69',
};

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
    const kv = parquetMetadata(new Uint8Array(await readFile(path))).key_value_metadata!.find((e) => e.key === SHARD_KV_KEY)!;
    expect(JSON.parse(kv.value!).layout).toBe('packed-le-split');
    expect(SHARD_LAYOUT).toBe('packed-le-split');
  });

  it('round-trips uint32 ids above 65535, fp32 logits, extreme int64 ids, every codec', async () => {
    const rows = makeRows(4, FP32, 150000, 2);
    rows[0].sample_id = 2n ** 63n - 1n;
    rows[1].sample_id = -(2n ** 63n);
    rows[2].topk_ids[0] = 0xffffffff;
    for (const codec of ['BROTLI', 'GZIP', 'SNAPPY', 'UNCOMPRESSED'] as const) {
      const path = join(dir, `rt32-${codec}.parquet`);
      await writeShard(path, rows, { ...FP32, codec });
      expect(await readShard(path, FP32)).toStrictEqual(rows);
    }
    const byDefault = await writeShard(join(dir, 'rt32-default.parquet'), rows, FP32);
    expect(byDefault.sha256).toBe(await sha256File(join(dir, 'rt32-BROTLI.parquet'))); // default codec
    const level6 = await writeShard(join(dir, 'rt32-gzip6.parquet'), rows, { ...FP32, codec: 'GZIP', gzipLevel: 6 });
    expect(level6.sha256).not.toBe(await sha256File(join(dir, 'rt32-GZIP.parquet'))); // default level 1
    expect(await readShard(join(dir, 'rt32-gzip6.parquet'), FP32)).toStrictEqual(rows);
    await expect(writeShard(join(dir, 'rt32-gzip0.parquet'), rows, { ...FP32, codec: 'GZIP', gzipLevel: 0 }))
      .rejects.toThrow(`${dir}/rt32-gzip0.parquet: gzipLevel must be an integer 1..9 (got 0)`);
  });

  it('writes BROTLI at brotliQuality (default 1) and rejects qualities outside 0..11', async () => {
    const rows = makeRows(4, FP16, 32000, 3);
    const q1 = await writeShard(join(dir, 'br-q1.parquet'), rows, { ...FP16, brotliQuality: 1 });
    expect((await writeShard(join(dir, 'br-default.parquet'), rows, FP16)).sha256).toBe(q1.sha256);
    const q2 = await writeShard(join(dir, 'br-q2.parquet'), rows, { ...FP16, codec: 'BROTLI', brotliQuality: 2 });
    expect(q2.sha256).not.toBe(q1.sha256);
    expect(await readShard(join(dir, 'br-q2.parquet'), FP16)).toStrictEqual(rows);
    for (const bad of [12, -1, 1.5]) {
      const path = join(dir, `br-bad.parquet`);
      await expect(writeShard(path, rows, { ...FP16, brotliQuality: bad }))
        .rejects.toThrow(`${path}: brotliQuality must be an integer 0..11 (got ${bad})`);
      expect(await readdir(dir)).not.toContain('br-bad.parquet');
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
    const { bytes } = await writeShard(path, makeRows(6, FP16, 32000, 13), { ...FP16, codec: 'GZIP' }); // BROTLI has no checksum
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

describe('byte-stream split (layout packed-le-split)', () => {
  it('stores byte j of value i at j·n + i', () => {
    expect(Array.from(splitBytes(Uint16Array.of(0x0102, 0x0304, 0x0506)))).toEqual([2, 4, 6, 1, 3, 5]);
    expect(Array.from(splitBytes(Uint32Array.of(0x01020304, 0xa0b0c0d0)))).toEqual([4, 0xd0, 3, 0xc0, 2, 0xb0, 1, 0xa0]);
    expect(Array.from(splitBytes(Int32Array.of(-100)))).toEqual([0x9c, 0xff, 0xff, 0xff]);
  });

  it('round-trips uint16, uint32, int32, fp16 and fp32 words of odd and even lengths, bit-exact', () => {
    const r = rng(30);
    const special = [0, -0, NaN, Infinity, -Infinity, 1e-40, -65504, 2 ** -24, 3.4e38];
    for (const n of [0, 1, 2, 3, 7, 33, 4097]) {
      const u16 = Uint16Array.from({ length: n }, () => Math.floor(r() * 65536));
      expect(joinBytes16(splitBytes(u16), new Uint16Array(n))).toEqual(u16);
      expect(joinBytes16(splitBytes(u16), new Uint32Array(n))).toEqual(Uint32Array.from(u16));
      const u32 = Uint32Array.from({ length: n }, (_, i) => (i === 1 ? 0xffffffff : Math.floor(r() * 2 ** 32)));
      expect(joinBytes32(splitBytes(u32))).toEqual(u32);
      const i32 = Int32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32) - 2 ** 31);
      expect(new Int32Array(joinBytes32(splitBytes(i32)).buffer)).toEqual(i32);
      const f32 = Float32Array.from({ length: n }, (_, i) => special[i] ?? (r() - 0.5) * 1e6);
      expect(joinBytes32(splitBytes(f32))).toEqual(new Uint32Array(f32.buffer));
      const f16 = encodeHalf(f32);
      expect(joinBytes16(splitBytes(f16), new Uint16Array(n))).toEqual(f16);
    }
  });

  it('splits a typed-array view that does not start at its buffer', () => {
    const whole = Uint32Array.of(0xdeadbeef, 0x01020304, 0x05060708, 0xcafef00d);
    expect(Array.from(splitBytes(whole.subarray(1, 3)))).toEqual([4, 8, 3, 7, 2, 6, 1, 5]);
    const halves = Uint16Array.of(0xffff, 0x0102, 0x0304);
    expect(Array.from(splitBytes(halves.subarray(1)))).toEqual([2, 4, 1, 3]);
  });

  it('packRow / unpackRow round-trip both layouts, odd element counts, unaligned blobs', () => {
    const odd: ShardLayout = { seqLen: 3, k: 5, numTemps: 1, idDtype: 'uint16', valueDtype: 'float16' };
    for (const shapes of [FP16, FP32, odd, { ...odd, idDtype: 'uint32' as const, valueDtype: 'float32' as const }]) {
      const [row] = makeRows(1, shapes, shapes.idDtype === 'uint16' ? 65536 : 2 ** 32, 31);
      const split = packRow(row, { ...shapes, layout: 'packed-le-split' }, 'x');
      const plain = packRow(row, { ...shapes, layout: 'packed-le' }, 'x');
      expect(packRow(row, shapes, 'x')).toEqual(split); // the default
      expect(split.topk_ids).not.toEqual(plain.topk_ids);
      for (const [name, packed] of [['packed-le-split', split], ['packed-le', plain]] as const) {
        const raw: Record<string, unknown> = { sample_id: packed.sample_id };
        for (const col of ['input_ids', 'target_ids', 'topk_ids', 'topk_logits', 'log_z'] as const) {
          const b = new Uint8Array(packed[col].byteLength + 1);
          b.set(packed[col], 1);
          raw[col] = b.subarray(1); // as hyparquet may hand them out: odd byte offset
        }
        expect(unpackRow(raw, { ...shapes, layout: name }, 'x')).toStrictEqual(row);
      }
    }
  });
});

describe('packed-le shards (written before packed-le-split)', () => {
  it('reads the fixtures written by the old writer and gets the same rows', async () => {
    for (const { file, layout, rows } of oldLayoutFixtures()) {
      const path = join(FIXTURES, file);
      expect(await sha256File(path)).toBe(FIXTURE_SHA256[file]);
      expect(await readShard(path, layout)).toStrictEqual(rows);
      expect(await readShard(path, { ...layout, layout: 'packed-le' }, { sha256: FIXTURE_SHA256[file] })).toStrictEqual(rows);
      await expect(readShard(path, { ...layout, layout: 'packed-le-split' }))
        .rejects.toThrow(`${path}: shard does not match manifest (layout="packed-le" expected "packed-le-split")`);
    }
  });

  it('are still written byte for byte with layout packed-le, GZIP level 6', async () => {
    for (const { file, layout, rows } of oldLayoutFixtures()) {
      const res = await writeShard(join(dir, `old-${file}`), rows, { ...layout, layout: 'packed-le', codec: 'GZIP', gzipLevel: 6 });
      expect(res.sha256).toBe(FIXTURE_SHA256[file]);
    }
  });

  it('open as a dataset whose manifest says packed-le; a manifest naming the other layout is refused', async () => {
    const { ddir, rows } = await makeDataset('dsold-', 'packed-le');
    const ds = await openLogitDataset(ddir, { verify: true });
    expect(ds.layout).toEqual({ ...FP16, layout: 'packed-le' });
    expect(await ds.readAll()).toStrictEqual(rows);
    const m = await readManifest(ddir);
    await writeManifest(ddir, { ...m, encoding: { ...m.encoding, layout: 'packed-le-split' } });
    await expect((await openLogitDataset(ddir)).readAll())
      .rejects.toThrow(`${join(ddir, 'shard-00000.parquet')}: shard does not match manifest (layout="packed-le" expected "packed-le-split")`);
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
    const blob = (v: unknown) => Uint8Array.from((v as DuckDBBlobValue).bytes);
    const u16s = (v: unknown) => { const b = blob(v); return joinBytes16(b, new Uint16Array(b.length / 2)); };
    const words = (v: unknown) => joinBytes32(blob(v)).buffer; // byte-split 4-byte values
    rows.forEach((r, i) => {
      expect(blob(inp[i]).subarray(0, 16)).toEqual(Uint8Array.from(r.input_ids.subarray(0, 16), (v) => v & 0xff)); // low bytes first
      expect(Uint32Array.from(u16s(inp[i]))).toEqual(r.input_ids);
      expect(new Int32Array(words(tgt[i]))).toEqual(r.target_ids);
      expect(Uint32Array.from(u16s(topk[i]))).toEqual(r.topk_ids);
      expect(decodeHalf(u16s(logits[i]))).toEqual(r.topk_logits);
      expect(new Float32Array(words(logz[i]))).toEqual(r.log_z);
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
    const objs = (await con.runAndReadAll(`SELECT kd_u32s(topk_ids) ids, kd_u32s(input_ids) inp, kd_i32s(target_ids) tgt,
      kd_f32s(topk_logits) lg, kd_f32s(log_z) lz FROM read_parquet('${path}') ORDER BY sample_id`)).getRowObjectsJS();
    rows.forEach((r, i) => {
      expect(objs[i].ids).toEqual(Array.from(r.topk_ids, (v) => BigInt(v))); // 15 values: an odd count
      expect(objs[i].inp).toEqual(Array.from(r.input_ids, (v) => BigInt(v)));
      expect(objs[i].tgt).toEqual(Array.from(r.target_ids));
      expect(objs[i].lg).toEqual(Array.from(r.topk_logits));
      expect(objs[i].lz).toEqual(Array.from(r.log_z));
    });
  });

  it('decodes archived packed-le shards with the _packed_le macros', async () => {
    for (const stmt of DUCKDB_MACROS) await con.run(stmt);
    const [fp16, fp32] = oldLayoutFixtures();
    const a = (await con.runAndReadAll(`SELECT kd_u16s_packed_le(input_ids) inp, kd_u16s_packed_le(topk_ids) ids,
      kd_i32s_packed_le(target_ids) tgt, kd_f16s_packed_le(topk_logits) lg, kd_f32s_packed_le(log_z) lz
      FROM read_parquet('${join(FIXTURES, fp16.file)}') ORDER BY sample_id`)).getRowObjectsJS();
    expect(a).toHaveLength(3);
    fp16.rows.forEach((r, i) => {
      expect(a[i].inp).toEqual(Array.from(r.input_ids));
      expect(a[i].ids).toEqual(Array.from(r.topk_ids));
      expect(a[i].tgt).toEqual(Array.from(r.target_ids));
      expect(a[i].lg).toEqual(Array.from(r.topk_logits));
      expect(a[i].lz).toEqual(Array.from(r.log_z));
    });
    const b = (await con.runAndReadAll(`SELECT kd_u32s_packed_le(topk_ids) ids, kd_f32s_packed_le(topk_logits) lg
      FROM read_parquet('${join(FIXTURES, fp32.file)}') ORDER BY sample_id`)).getRowObjectsJS();
    fp32.rows.forEach((r, i) => {
      expect(b[i].ids).toEqual(Array.from(r.topk_ids, (v) => BigInt(v)));
      expect(b[i].lg).toEqual(Array.from(r.topk_logits));
    });
  });
});

function manifestFor(shards: LogitManifest['shards'], layout: ShardLayout, byteLayout: LayoutName = SHARD_LAYOUT): LogitManifest {
  const rows = shards.reduce((a, s) => a + s.rows, 0);
  return {
    format: 'kd-logits', version: 1,
    teacher: { path: 'teacher.onnx', sha256: 'a'.repeat(64), dtype: 'fp32', execution_provider: 'cpu', input_names: ['input_ids'], output_names: ['logits', 'topk_values'] },
    tokenizer: { sha256: 'b'.repeat(64), vocab_size: 32064, real_vocab_size: 32000 },
    windows: { source: 'windows/train.bin', sha256: 'c'.repeat(64) },
    seq_len: layout.seqLen, k: layout.k, mode: 'topk', temperatures: [1, 1.5, 2, 2.5, 3, 3.5, 4].slice(0, layout.numTemps),
    encoding: { ids: layout.idDtype, values: layout.valueDtype, layout: byteLayout },
    shards, totals: { rows, positions: rows * layout.seqLen, bytes: shards.reduce((a, s) => a + s.bytes, 0) },
    tool_version: '0.1.0', created_at: '2025-01-01T00:00:00Z',
  };
}

/** A two-shard dataset directory, shards written in `byteLayout`. */
async function makeDataset(name: string, byteLayout: LayoutName = SHARD_LAYOUT): Promise<{ ddir: string; rows: LogitRow[] }> {
  const ddir = await mkdtemp(join(dir, name));
  const rows = makeRows(7, FP16, 32000, 11, BIG_ID);
  const parts = [rows.slice(0, 4), rows.slice(4)];
  const shards = [];
  for (const [i, part] of parts.entries()) {
    const file = shardFileName(i);
    const res = await writeShard(join(ddir, file), part, { ...FP16, layout: byteLayout });
    shards.push({ file, rows: res.rows, first_sample_id: part[0].sample_id.toString(), bytes: res.bytes, sha256: res.sha256 });
  }
  await writeManifest(ddir, manifestFor(shards, FP16, byteLayout));
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
    expect(ds.layout).toEqual({ ...FP16, layout: 'packed-le-split' });
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
