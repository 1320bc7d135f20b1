/**
 * One-line messages for Node system errors (err.code + err.path): `<path>: <what happened>[; <what
 * to do>]`. The write helpers (lib/util/fs.ts) and the CLI (pipelines/kd.ts) both use them, so a
 * full disk or a directory given as a file never reaches the user as `ENOSPC: …, write`.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/** A Node system error (fs, net, child_process): has a `code` and the failing `syscall`. */
export interface SystemError extends Error {
  code: string;
  syscall: string;
  path?: string;
  dest?: string;
}

/** What a code means, and what to do about it (the path leads the line). */
const MEANING: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded; free space or choose another location',
  EROFS: 'read-only file system; choose a writable location',
  EACCES: 'permission denied; choose a location you can write to (or read, for an input) or fix its permissions',
  EPERM: 'operation not permitted; check the permissions of the path',
  ENOENT: 'no such file or directory; check the path',
  EISDIR: 'is a directory, expected a file; name the file inside it',
  ENOTDIR: 'not a directory; give a directory',
  EEXIST: 'already exists; remove it or choose another path',
  ENOTEMPTY: 'directory not empty; remove it or choose another path',
  ENAMETOOLONG: 'file name too long; choose a shorter path',
  EMFILE: 'too many open files; raise the limit (ulimit -n)',
  EBUSY: 'resource busy; stop the process that uses it',
  EIO: 'input/output error; check the disk',
};

/** True for errors thrown by Node's system calls (not kd's own one-line errors). */
export function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && typeof (e as SystemError).syscall === 'string';
}

/**
 * The one-line message for a system error: `<path>: <meaning>`, where path is the error's own path
 * unless `path` is given (e.g. the final name of a file whose temporary copy failed).
 * Without any path, `<meaning> (<syscall>)`.
 */
export function systemErrorMessage(e: SystemError, path = e.path): string {
  if (!path) return `${MEANING[e.code] ?? e.message} (${e.syscall})`;
  if (e.code === 'ENOTDIR') {
    const file = fileInTheWay(path);
    if (file) return `${file}: is a file, expected a directory; give a directory, or move the file`;
  }
  if (e.code === 'ENOENT' && e.syscall === 'mkdir') return mkdirProblem(path);
  return `${path}: ${MEANING[e.code] ?? `${e.message.replace(/^[A-Z]+: /, '').replace(/, \w+( '.*')?$/, '')} (${e.code})`}`;
}

/**
 * Why a recursive mkdir of `path` found no parent (Node says ENOENT even on a read-only file
 * system): the nearest existing ancestor is read-only, not writable, or a file.
 */
function mkdirProblem(path: string): string {
  let p = dirname(path);
  while (!existsSync(p) && p !== dirname(p)) p = dirname(p);
  if (statSync(p).isFile()) return `${p}: is a file, expected a directory; give a directory, or move the file`;
  try { accessSync(p, constants.W_OK); } catch (e) {
    if (isSystemError(e) && MEANING[e.code]) return `${path}: ${MEANING[e.code]}`;
  }
  return `${path}: cannot create this directory; choose a writable location`;
}

/** The longest prefix of `path` that is a regular file (the cause of ENOTDIR), if any. */
function fileInTheWay(path: string): string | undefined {
  for (let p = path, last = ''; p !== last; last = p, p = dirname(p)) {
    try { if (statSync(p).isFile()) return p; } catch { /* keep going up */ }
  }
  return undefined;
}

/**
 * Wraps a system error as kd's one-line Error (keeps `code`, so callers can still test it);
 * any other error is returned as is.
 */
export function withPath(e: unknown, path?: string): Error {
  if (!isSystemError(e)) return e as Error;
  return Object.assign(new Error(systemErrorMessage(e, path)), { code: e.code });
}

/** The message the CLI prints after `kd: ` for any thrown value. */
export function userMessage(e: unknown): string {
  if (isSystemError(e)) return systemErrorMessage(e);
  return e instanceof Error ? e.message : String(e);
}
