import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, readOnnx, writeOnnxExternal } from '../lib/onnx/index.js';
import { openLogitDataset, readManifestFile, workerManifestFile } from '../lib/shards/index.js';
import { run as precompute } from '../stages/precompute.js';
import { fileHashes, makePrep, spawnKd, teacherConfig, writeTeacher } from './precompute-fixture.js';

// 160 windows in 10 shards of 16; 4 windows per forward.
const CFG = { k: 8, max_windows: 160, rows_per_shard: 16, batch_size: 4, device: 'cpu' as const, quiet: true };
let dir: string, prep: string, teacher: string, reference: Record<string, string>;

beforeAll(async () => {
  ({ dir, prep } = await makePrep('resume'));
  teacher = writeTeacher(join(dir, 'teacher.onnx'));
  await precompute({ ...CFG, teacher, prep, out: join(dir, 'ref') });
  reference = fileHashes(join(dir, 'ref'));
});

const cliArgs = (out: string) => [
  'precompute', '--teacher', teacher, '--prep', prep, '--out', out, '--k', '8', '--max-windows', '160',
  '--rows-per-shard', '16', '--batch-size', '4', '--device', 'cpu', '--json',
];
const shardFiles = (out: string) => (existsSync(out) ? readdirSync(out).filter((f) => /^shard-\d+\.parquet$/.test(f)) : []);

/**
 * Starts precompute and sends `signal` as soon as `ready(files)` holds; fails if it finishes first.
 * @returns the files left and the child's stderr
 */
async function killWhen(out: string, ready: (files: string[]) => boolean, signal: NodeJS.Signals = 'SIGKILL'): Promise<{ left: string[]; stderr: string }> {
  const child: ChildProcess = spawnKd(cliArgs(out));
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  let done = false;
  exited.then(() => { done = true; });
  while (!done) {
    const files = existsSync(out) ? readdirSync(out) : [];
    if (ready(files)) {
      child.kill(signal);
      break;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const code = await exited;
  // SIGKILL: no exit code; SIGTERM: kd stops after the shard in flight with 130.
  expect(code, 'precompute finished before the kill point').toBe(signal === 'SIGKILL' ? null : 130);
  return { left: readdirSync(out), stderr };
}

describe('precompute: SIGKILL at any point, then resume', () => {
  it('finishes with shards byte-identical to an uninterrupted run and no temporary files', async () => {
    const out = join(dir, 'killed');
    const progress = workerManifestFile(0, 1);
    // 1. killed right after start: the worker manifest exists, no shard yet (or one, at most).
    expect((await killWhen(out, (f) => f.includes(progress))).left).not.toContain('manifest.json');
    // 2. and 3. killed once 1, then 2 more shards exist beyond what is there.
    for (const more of [1, 2]) {
      const before = shardFiles(out).length;
      const { left } = await killWhen(out, (f) => f.filter((x) => /^shard-\d+\.parquet$/.test(x)).length >= before + more);
      expect(left).not.toContain('manifest.json');
    }
    // 4. SIGTERM (a scheduler's preemption): stops between batches, lists the shard in flight, exits 130.
    const before = shardFiles(out).length;
    const term = await killWhen(out, (f) => f.filter((x) => /^shard-\d+\.parquet$/.test(x)).length > before, 'SIGTERM');
    expect(term.stderr).toContain('interrupted:');
    expect(term.left.filter((f) => f.endsWith('.tmp') || f === 'manifest.json')).toEqual([]);
    expect((await readManifestFile(join(out, progress))).shards.map((s) => s.file).sort()).toEqual(shardFiles(out).sort());
    const listed = await readManifestFile(join(out, progress));
    expect(listed.complete).toBe(false);
    expect(listed.shards.length).toBeGreaterThanOrEqual(2);
    // A crash mid-write leaves a partial .tmp; a listed shard damaged on disk must be redone.
    writeFileSync(join(out, 'shard-00009.parquet.tmp'), 'partial');
    const damaged = join(out, listed.shards[0].file);
    const bytes = readFileSync(damaged);
    bytes[100] ^= 0xff;
    writeFileSync(damaged, bytes);

    const child = spawnKd(cliArgs(out));
    let stdout = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    expect(await new Promise((res) => child.on('exit', res))).toBe(0);
    const summary = JSON.parse(stdout);
    expect(summary.reused_shards).toBe(listed.shards.length - 1); // all listed but the damaged one
    expect(summary.shards).toBe(10);
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(readdirSync(out)).not.toContain(progress);
    expect(fileHashes(out)).toEqual(reference);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m.shards.map((s: { sha256: string }) => s.sha256)).toEqual(Object.values(reference));
    expect(m.totals).toEqual({ rows: 160, positions: 160 * 32, bytes: m.shards.reduce((a: number, s: { bytes: number }) => a + s.bytes, 0) });
  });

  it('re-running a complete dataset verifies it and changes nothing', async () => {
    const out = join(dir, 'ref');
    const before = readFileSync(join(out, 'manifest.json'), 'utf8');
    const s = await precompute({ ...CFG, teacher, prep, out });
    expect(s).toMatchObject({ reused_shards: 10, computed_windows: 0, shards: 10, windows: 160 });
    expect(readFileSync(join(out, 'manifest.json'), 'utf8')).toBe(before);
  });
});

describe('precompute: a dataset from other inputs refuses to resume', () => {
  const expectRefusal = async (over: Record<string, unknown>, what: RegExp) => {
    const out = join(dir, 'ref');
    const err = await precompute({ ...CFG, teacher, prep, out, ...over }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^${out}/manifest\\.json: cannot resume: ${what.source}; use another --out, or --overwrite to discard it$`));
  };

  it('names the teacher hash', async () => {
    const other = writeTeacher(join(dir, 'other.onnx'), teacherConfig(), 2);
    await expectRefusal({ teacher: other }, /teacher sha256 differs \(manifest [0-9a-f]{12}…, current [0-9a-f]{12}…\)/);
  });

  it('names k, the temperatures and the window count', async () => {
    await expectRefusal({ k: 4 }, /k differs \(manifest 8, current 4\)/);
    await expectRefusal({ temperatures: [1, 2] }, /temperatures differs \(manifest \[1,2,4\], current \[1,2\]\)/);
    await expectRefusal({ max_windows: 100 }, /windows \(plan\.rows\) differs \(manifest 160, current 100\)/);
    await expectRefusal({ codec: 'gzip' }, /encoding differs \(manifest \{"ids":"uint16","values":"float16","layout":"packed-le-split","codec":"BROTLI"\}, current \{.*"codec":"GZIP"\}\)/);
  });

  it('names the windows hash when the window file changed (and windows.json with it)', async () => {
    const p2 = join(dir, 'prep2');
    cpSync(prep, p2, { recursive: true });
    const bin = readFileSync(join(p2, 'train.bin'));
    bin[0] ^= 1;
    writeFileSync(join(p2, 'train.bin'), bin);
    const meta = JSON.parse(readFileSync(join(p2, 'windows.json'), 'utf8'));
    meta.splits.train.sha256 = createHash('sha256').update(bin).digest('hex');
    writeFileSync(join(p2, 'windows.json'), JSON.stringify(meta));
    await expectRefusal({ prep: p2 }, /windows sha256 differs \(manifest [0-9a-f]{12}…, current [0-9a-f]{12}…\)/);
  });

  it('names a manifest written before resumable precompute (no shard plan)', async () => {
    const old = join(dir, 'old');
    cpSync(join(dir, 'ref'), old, { recursive: true });
    const m = JSON.parse(readFileSync(join(old, 'manifest.json'), 'utf8'));
    delete m.plan;
    writeFileSync(join(old, 'manifest.json'), JSON.stringify(m));
    await expect(precompute({ ...CFG, teacher, prep, out: old })).rejects
      .toThrow(`${old}/manifest.json: cannot resume: written by an older kd (no shard plan); use another --out, or --overwrite to discard it`);
  });

  it('--overwrite discards the old dataset', async () => {
    const out = join(dir, 'over');
    await precompute({ ...CFG, teacher, prep, out, max_windows: 32 });
    const s = await precompute({ ...CFG, teacher, prep, out, max_windows: 48, k: 4, overwrite: true });
    expect(s).toMatchObject({ reused_shards: 0, shards: 3, windows: 48 });
    expect(shardFiles(out).sort()).toEqual(['shard-00000.parquet', 'shard-00001.parquet', 'shard-00002.parquet']);
  });

  it('--codec gzip writes GZIP pages (for readers without brotli) that read back to the same rows', async () => {
    const [a, b] = [join(dir, 'codec-brotli'), join(dir, 'codec-gzip')];
    await precompute({ ...CFG, teacher, prep, out: a, max_windows: 16 });
    await precompute({ ...CFG, teacher, prep, out: b, max_windows: 16, codec: 'gzip' });
    expect((await readManifestFile(join(b, 'manifest.json'))).encoding.codec).toBe('GZIP');
    const [ra, rb] = [await openLogitDataset(a), await openLogitDataset(b)];
    expect(await rb.readAll()).toStrictEqual(await ra.readAll());
    expect(readFileSync(join(b, 'shard-00000.parquet')).includes(Buffer.from([0x1f, 0x8b]))).toBe(true); // a gzip member
    await expect(precompute({ ...CFG, teacher, prep, out: b, codec: 'zstd' })).rejects.toThrow(/codec = "zstd" must be one of brotli, gzip/);
  });
});

describe('precompute: a teacher with external weight data', () => {
  it('gives the same shards as the inline teacher, and its hash covers the data file', async () => {
    const ext = join(dir, 'ext', 'model.onnx');
    mkdirSync(join(dir, 'ext'));
    writeOnnxExternal(ext, decodeModel(readOnnx(teacher)));
    const out = join(dir, 'ext-out');
    await precompute({ ...CFG, teacher: ext, prep, out, max_windows: 32 });
    expect(fileHashes(out)).toEqual({ 'shard-00000.parquet': reference['shard-00000.parquet'], 'shard-00001.parquet': reference['shard-00001.parquet'] });
    expect(readdirSync(join(dir, 'ext')).sort()).toEqual(['model.onnx', 'model.onnx.data']); // derived graph cleaned up
    const data = readFileSync(`${ext}.data`);
    data[data.length - 1] ^= 1; // same model file, other weights
    writeFileSync(`${ext}.data`, data);
    await expect(precompute({ ...CFG, teacher: ext, prep, out, max_windows: 32 })).rejects.toThrow(/cannot resume: teacher sha256 differs/);
  });
});
