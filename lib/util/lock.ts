/**
 * Directory locks, so that two kd processes never write one output at once (two trainers would
 * interleave metrics.jsonl; two precompute workers with the same index would race on renames).
 * A lock is a small JSON file {pid, host, started, command, …} created atomically (hard link of a
 * complete temporary file, else O_EXCL), removed on release and at process exit. A lock left by a
 * process that died (same host, pid gone or the machine rebooted since) is taken over, saying so.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, openSync, closeSync, readFileSync, renameSync, rmSync, writeSync, fsyncSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { withPath } from './errors.js';
import { writeFileAtomic } from './fs.js';

/** What a lock file holds. */
export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
  /** The command that holds it, e.g. "kd train". */
  command: string;
  /** Linux boot id: a lock from before a reboot is stale whatever its pid. */
  boot?: string;
  /** Tells this process's own locks from copies of them (a copied run directory). */
  token: string;
}

/** A held lock. */
export interface DirLock {
  path: string;
  /** Removes the lock file if it is still this lock's (idempotent). */
  release(): void;
}

/** Lock files this process holds now: resolved path → token. */
const held = new Map<string, string>();

/** Default lock file name in a directory. */
export const LOCK_FILE = '.kd.lock';

function bootId(): string | undefined {
  try { return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { return undefined; }
}

/** False when no process `pid` runs on this machine (ESRCH); EPERM means it runs as another user. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Why `info` (found at `path`) belongs to no running process, or undefined when it may be live. */
function staleReason(info: LockInfo, path: string): string | undefined {
  if (info.host !== hostname()) return undefined; // cannot check another machine
  const boot = bootId();
  if (info.boot && boot && info.boot !== boot) return 'the machine has restarted since';
  if (info.pid === process.pid) return held.get(path) === info.token ? undefined : 'a copy of this process\'s own lock';
  return running(info.pid) ? undefined : 'not running';
}

function readLock(path: string): LockInfo | undefined {
  try { return JSON.parse(readFileSync(path, 'utf8')) as LockInfo; } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path}: unreadable lock file (${(e as Error).message}); if no kd process uses this directory, delete it`);
  }
}

/** Creates `path` holding `text` only if it does not exist; false when it does. */
function createExclusive(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  try { writeFileAtomic(tmp, text); } catch (e) { // name the directory, not the lock's temporary file
    throw new Error(`${dirname(path)}${(e as Error).message.slice(tmp.length)}`);
  }
  try {
    linkSync(tmp, path); // a complete file or none: readers never see it half-written
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    return createWithOExcl(path, text, e);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Fallback where hard links are not supported. */
function createWithOExcl(path: string, text: string, linkError: unknown): boolean {
  const code = (linkError as NodeJS.ErrnoException).code;
  if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw withPath(linkError, path);
  let fd: number;
  try { fd = openSync(path, 'wx'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw withPath(e, path);
  }
  try { writeSync(fd, text); fsyncSync(fd); } finally { closeSync(fd); }
  return true;
}

/**
 * Takes the lock `name` in `dir` (which must exist) for `command`.
 * @param log receives one line when a stale lock is taken over
 * @throws Error `<dir>: in use by pid 1234 on host H since <ISO time> (kd train); wait for it or stop it`
 */
export function acquireLock(dir: string, command: string, o: { name?: string; log?: (line: string) => void } = {}): DirLock {
  const path = resolve(join(dir, o.name ?? LOCK_FILE));
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command, boot: bootId(), token: randomBytes(8).toString('hex') };
  const text = JSON.stringify(info, null, 2) + '\n';
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(path, text)) return register(path, info.token);
    const holder = readLock(path);
    if (!holder) continue; // released meanwhile
    const stale = staleReason(holder, path);
    if (!stale) {
      const other = holder.host !== hostname() ? ` (if it has ended, delete ${path})` : '';
      throw new Error(`${dir}: in use by pid ${holder.pid} on host ${holder.host} since ${holder.started} (${holder.command}); wait for it or stop it${other}`);
    }
    // Move it aside rather than delete: two processes taking over at once cannot both remove a fresh lock.
    const aside = `${path}.stale-${process.pid}`;
    try { renameSync(path, aside); } catch { continue; }
    rmSync(aside, { force: true });
    o.log?.(`${dir}: taking over the lock of pid ${holder.pid} on ${holder.host} since ${holder.started} (${holder.command}): ${stale}`);
  }
  throw new Error(`${path}: could not take the lock (it keeps changing); is another kd starting on ${dir}?`);
}

function register(path: string, token: string): DirLock {
  held.set(path, token);
  const release = () => {
    process.off('exit', release);
    if (held.get(path) !== token) return;
    held.delete(path);
    try {
      if ((JSON.parse(readFileSync(path, 'utf8')) as LockInfo).token === token) rmSync(path, { force: true });
    } catch { /* gone already */ }
  };
  process.on('exit', release); // also after a second Ctrl-C (lib/cli/interrupt.ts exits with 130)
  return { path, release };
}

/**
 * How the lock names its holder: `kd <stage> [<action>]` from this process's arguments when it is
 * the kd CLI, else `fallback` (e.g. a test or a script calling the library).
 */
export function commandLine(fallback: string): string {
  const [script = '', ...args] = process.argv.slice(1);
  if (!/[/\\]kd\.[jt]s$/.test(script)) return fallback;
  const firstFlag = args.findIndex((a) => a.startsWith('-'));
  return ['kd', ...args.slice(0, firstFlag < 0 ? args.length : firstFlag).slice(0, 2)].join(' ');
}
