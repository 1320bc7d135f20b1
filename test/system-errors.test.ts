// System errors reach the user as one line naming the path and what to do, never as
// `ENOSPC: no space left on device, write` or `EISDIR: illegal operation on a directory, read`.
// Through the CLI (node pipelines/kd.ts); the read-only and full disks are small tmpfs mounts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePrep, runKd, writeTeacher } from './precompute-fixture.js';

let dir: string, prep: string, teacher: string;
const mounts: string[] = [];
afterAll(() => { for (const m of mounts) execFileSync('umount', [m]); });

/** Mounts a tmpfs with `options` at a new directory; undefined where mount is not permitted. */
function tmpfs(name: string, options: string): string | undefined {
  const m = join(dir, name);
  mkdirSync(m);
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', m], { stdio: 'ignore' }); } catch { return undefined; }
  mounts.push(m);
  return m;
}
const canMount = (() => {
  try { execFileSync('mount', ['--version'], { stdio: 'ignore' }); return process.getuid?.() === 0; } catch { return false; }
})();

const precompute = (t: string, out: string) => runKd(['precompute', '--teacher', t, '--prep', prep, '--out', out, '--k', '8', '--max-windows', '64', '--rows-per-shard', '16', '--device', 'cpu', '--quiet']);

beforeAll(async () => {
  ({ dir, prep } = await makePrep('syserr'));
  teacher = writeTeacher(join(dir, 'teacher.onnx'));
  mkdirSync(join(dir, 'a-directory'));
  writeFileSync(join(dir, 'notes.txt'), 'my notes\n');
}, 120_000);

describe('raw system errors become one line naming the path', () => {
  it('EISDIR: a directory given as the teacher', async () => {
    const r = await precompute(join(dir, 'a-directory'), join(dir, 'logits'));
    expect(r.stderr).toBe(`kd: ${join(dir, 'a-directory')}: is a directory, expected a file; name the file inside it\n`);
    expect(r.code).toBe(1);
  }, 60_000);

  it('ENOTDIR: a file given to inspect and to export as a directory', async () => {
    const file = join(dir, 'notes.txt'), line = `kd: ${file}: is a file, expected a directory; give a directory, or move the file\n`;
    const inspect = await runKd(['inspect', file]);
    expect(inspect.stderr).toBe(line);
    const exp = await runKd(['export', '--checkpoint', file, '--out', join(dir, 'exported')]);
    expect(exp.stderr).toBe(line);
    expect([inspect.code, exp.code]).toEqual([1, 1]);
  }, 60_000);

  it.skipIf(!canMount)('EROFS (raw ENOENT from mkdir before): an output on a read-only file system', async () => {
    const ro = tmpfs('ro', 'ro,size=64k')!;
    const below = await precompute(teacher, join(ro, 'logits'));
    expect(below.stderr).toBe(`kd: ${join(ro, 'logits')}: read-only file system; choose a writable location\n`);
    const at = await precompute(teacher, ro);
    expect(at.stderr).toBe(`kd: ${ro}: read-only file system; choose a writable location\n`);
    expect([below.code, at.code]).toEqual([1, 1]);
  }, 60_000);

  it.skipIf(!canMount)('ENOSPC: a full disk names the file being written', async () => {
    const full = tmpfs('full', 'size=16k')!;
    const r = await precompute(teacher, join(full, 'logits'));
    expect(r.stderr).toMatch(new RegExp(`^kd: ${join(full, 'logits')}/[\\w.-]+: no space left on device\\n$`));
    expect(r.code).toBe(1);
  }, 60_000);
});
