// Durable writes (lib/util/fs.ts): every byte is written even when the system takes fewer per
// call, a failed write leaves the previous file and no temporary, and a full disk is reported as
// `<path>: no space left on device` in one line (on a real 1 MiB tmpfs when mount is permitted).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../lib/model/safetensors.js';
import type { NamedTensors } from '../lib/model/tensors.js';
import { copyFileDurable, injectWrite, sha256, writeFileAtomic, writeFileAtomicAsync } from '../lib/util/fs.js';

/** Matches an error whose whole message is `msg` (one line). */
const exactly = (msg: string) => new RegExp(`^${msg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
const root = mkdtempSync(join(tmpdir(), 'kd-durable-'));
afterEach(() => injectWrite(undefined));

function tensors(n: number, seed = 1): NamedTensors {
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
  return new Map([['a.weight', { shape: [n], data }], ['b.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }]]);
}

/** A write that takes at most `n` bytes per call, counting calls. */
function shortWrites(n: number): { calls: number } {
  const seen = { calls: 0 };
  injectWrite((fd, buf, off, len) => { seen.calls++; return writeSync(fd, buf, off, Math.min(len, n)); });
  return seen;
}

/** A write that fails with ENOSPC once `limit` bytes have been taken (as a full disk does). */
function diskFullAfter(limit: number): void {
  let taken = 0;
  injectWrite((fd, buf, off, len) => {
    if (taken >= limit) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    const n = writeSync(fd, buf, off, Math.min(len, limit - taken));
    taken += n;
    return n;
  });
}

describe('short writes', () => {
  it('a safetensors file written 7 bytes per call reads back exactly, and its sha256 is the bytes\'', () => {
    const path = join(root, 'short.safetensors'), t = tensors(1000);
    const seen = shortWrites(7);
    const r = writeSafetensors(path, t);
    injectWrite(undefined);
    expect(seen.calls).toBeGreaterThan(4000 / 7);
    expect(r.bytes).toBe(readFileSync(path).length);
    expect(r.sha256).toBe(sha256(readFileSync(path)));
    expect([...readSafetensors(path).tensors.get('a.weight')!.data]).toEqual([...t.get('a.weight')!.data]);
  });

  it('sync and async whole-file writes loop until every byte is written', async () => {
    const text = 'x'.repeat(10_000) + 'end\n';
    shortWrites(3);
    writeFileAtomic(join(root, 'a.txt'), text);
    await writeFileAtomicAsync(join(root, 'b.txt'), text);
    injectWrite(undefined);
    expect(readFileSync(join(root, 'a.txt'), 'utf8')).toBe(text);
    expect(readFileSync(join(root, 'b.txt'), 'utf8')).toBe(text);
  });
});

describe('a write that fails part way', () => {
  it('keeps the previous file, removes the temporary and names the file', async () => {
    const path = join(root, 'kept.safetensors');
    writeSafetensors(path, tensors(100, 1));
    const before = readFileSync(path);
    diskFullAfter(1000);
    expect(() => writeSafetensors(path, tensors(5000, 2))).toThrow(exactly(`${path}: no space left on device`));
    diskFullAfter(10);
    await expect(writeFileAtomicAsync(path, 'y'.repeat(100))).rejects.toThrow(exactly(`${path}: no space left on device`));
    injectWrite(undefined);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

// A real full disk: a 1 MiB tmpfs (needs root; skipped where mount is not permitted).
const mnt = join(root, 'small');
mkdirSync(mnt);
const mounted = (() => {
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'ignore' }); return true; } catch { return false; }
})();
afterAll(() => { if (mounted) execFileSync('umount', [mnt]); });

describe('on a full 1 MiB tmpfs', () => {
  it.skipIf(!mounted)('a model larger than the disk fails with "<path>: no space left on device" and the old file stays whole', () => {
    const path = join(mnt, 'model.safetensors');
    writeSafetensors(path, tensors(1000, 1));
    const before = readFileSync(path);
    expect(() => writeSafetensors(path, tensors(400_000, 2))).toThrow(exactly(`${path}: no space left on device`));
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(mnt)).toEqual(['model.safetensors']);
  });

  it.skipIf(!mounted)('a copy that does not fit names the destination, not the source', () => {
    const big = join(root, 'big.bin');
    writeFileSync(big, Buffer.alloc(3 << 20, 1));
    const dest = join(mnt, 'copy.bin');
    expect(() => copyFileDurable(big, dest)).toThrow(exactly(`${dest}: no space left on device`));
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(dest + '.tmp')).toBe(false);
  });
});
