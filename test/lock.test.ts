// Directory locks (lib/util/lock.ts): a live holder is named in one line, a dead one's lock is
// taken over (saying so), a copy of this process's own lock (a copied run directory) is stale.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireLock, LOCK_FILE } from '../lib/util/lock.js';

const root = mkdtempSync(join(tmpdir(), 'kd-lock-'));
const children: ChildProcess[] = [];
afterAll(() => { for (const c of children) c.kill('SIGKILL'); });

/** A live process that is not this one (a child `sleep`). */
function livePid(): number {
  const c = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(c);
  return c.pid!;
}

/** The pid of a process that has exited. */
function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim());
}

function writeLock(dir: string, pid: number, name = LOCK_FILE, host = hostname()): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), JSON.stringify({ pid, host, started: '2026-12-03T08:00:00.000Z', command: 'kd train', token: 'abc' }));
}

describe('directory locks', () => {
  it('is refused while a live process holds it, naming pid, host, time and command', () => {
    const dir = join(root, 'live'), pid = livePid();
    writeLock(dir, pid);
    expect(() => acquireLock(dir, 'kd train')).toThrow(
      new Error(`${dir}: in use by pid ${pid} on host ${hostname()} since 2026-12-03T08:00:00.000Z (kd train); wait for it or stop it`));
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).pid).toBe(pid); // left alone
  });

  it('takes over the lock of a process that has died on this host, saying so in one line', () => {
    const dir = join(root, 'stale'), pid = deadPid(), lines: string[] = [];
    writeLock(dir, pid);
    const lock = acquireLock(dir, 'kd train', { log: (l) => lines.push(l) });
    expect(lines).toEqual([`${dir}: taking over the lock of pid ${pid} on ${hostname()} since 2026-12-03T08:00:00.000Z (kd train): not running`]);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname(), command: 'kd train' });
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('refuses a second holder in the same process, and a lock of another host is not judged stale', () => {
    const dir = join(root, 'twice');
    mkdirSync(dir);
    const lock = acquireLock(dir, 'kd train');
    expect(() => acquireLock(dir, 'kd train')).toThrow(`${dir}: in use by pid ${process.pid} on host ${hostname()}`);
    lock.release();
    acquireLock(dir, 'kd train').release();
    writeLock(dir, deadPid(), LOCK_FILE, 'elsewhere');
    expect(() => acquireLock(dir, 'kd train')).toThrow(`on host elsewhere since 2026-12-03T08:00:00.000Z (kd train); wait for it or stop it (if it has ended, delete ${join(dir, LOCK_FILE)})`);
  });

  it('a copy of a directory this process has locked is not locked (e.g. a run copied mid-training)', () => {
    const dir = join(root, 'orig'), copy = join(root, 'copy'), lines: string[] = [];
    mkdirSync(dir);
    const lock = acquireLock(dir, 'kd train');
    cpSync(dir, copy, { recursive: true });
    acquireLock(copy, 'kd train', { log: (l) => lines.push(l) }).release();
    expect(lines[0]).toMatch(/: a copy of this process's own lock$/);
    lock.release();
  });

  it('locks with different names in one directory do not conflict (precompute workers)', () => {
    const dir = join(root, 'workers');
    mkdirSync(dir);
    const a = acquireLock(dir, 'kd precompute', { name: '.kd.precompute-00000.lock' });
    const b = acquireLock(dir, 'kd precompute', { name: '.kd.precompute-00001.lock' });
    expect(() => acquireLock(dir, 'kd precompute', { name: '.kd.precompute-00001.lock' })).toThrow(/in use by pid/);
    a.release(); b.release();
  });
});
