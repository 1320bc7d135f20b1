/**
 * Durable file writes, the only way kd writes a file under its final name: the bytes go to
 * `path + '.tmp'` (looping until every byte is written: a write may take fewer bytes than asked),
 * the file is fsynced, renamed over `path`, and the directory fsynced. A crash or a full disk
 * leaves the previous file (or none) and maybe a `.tmp`, never a truncated file under `path`.
 * Errors are one line naming the final path: `<path>: no space left on device`.
 */
import { createHash, type Hash } from 'node:crypto';
import { appendFileSync, closeSync, constants, copyFileSync, fstatSync, fsyncSync, linkSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { withPath } from './errors.js';

/** Suffix of in-progress files; readers and resumers ignore such files. */
export const TMP_SUFFIX = '.tmp';

/** Size, in bytes, and lowercase hex sha256 of a file as written. */
export interface DurableResult { bytes: number; sha256: string }

/** A low-level write: like fs.writeSync(fd, buffer, offset, length), returns the bytes taken (maybe fewer). */
export type WriteFn = (fd: number, buffer: Uint8Array, offset: number, length: number) => number;

let injectedWrite: WriteFn | undefined;

/**
 * Replaces the low-level write of every durable write (sync and async) in this thread; `undefined`
 * restores the real one. For tests: short writes and write errors at a chosen byte.
 */
export function injectWrite(fn: WriteFn | undefined): void {
  injectedWrite = fn;
}

/** Writes all of `data` to `fd`, calling the low-level write until every byte is taken. */
function writeAllSync(fd: number, data: Uint8Array): void {
  const write = injectedWrite ?? ((f: number, b: Uint8Array, o: number, l: number) => writeSync(f, b, o, l));
  for (let off = 0; off < data.length;) off += progress(write(fd, data, off, data.length - off), data.length - off);
}

/** Bytes a write took; a write that takes nothing of a non-empty buffer would loop for ever. */
function progress(written: number, asked: number): number {
  if (written <= 0 && asked > 0) throw Object.assign(new Error(`EIO: write took 0 of ${asked} bytes, write`), { code: 'EIO', syscall: 'write' });
  return written;
}

/** fsync a directory so a rename inside it is durable (no-op where directories cannot be opened, e.g. Windows). */
function syncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch { /* the rename is still atomic */ } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * A file being written durably: `write` chunks (hashed as they go), then `commit` (fsync,
 * rename, directory fsync) or `abort`. Any failure removes the temporary file and throws
 * `<path>: <problem>` naming the final path.
 */
export class DurableFile {
  readonly tmp: string;
  private fd: number | undefined;
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;

  /** @throws Error `<path>: <problem>` when the temporary file cannot be created (missing directory, read-only, …). */
  constructor(readonly path: string) {
    this.tmp = path + TMP_SUFFIX;
    try { this.fd = openSync(this.tmp, 'w'); } catch (e) { throw withPath(e, path); }
  }

  /** Appends `chunk` (all of it). */
  write(chunk: Uint8Array | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    this.guard(() => writeAllSync(this.fd!, bytes));
    this.hash.update(bytes);
    this.bytes += bytes.length;
  }

  /** Makes the file durable under its final name. @returns its size and sha256 */
  commit(): DurableResult {
    this.guard(() => {
      fsyncSync(this.fd!);
      closeSync(this.fd!);
      this.fd = undefined;
      renameSync(this.tmp, this.path);
    });
    syncDirSync(dirname(this.path));
    return { bytes: this.bytes, sha256: this.hash.digest('hex') };
  }

  /** Drops the temporary file (the final name keeps what it had). Safe to call twice. */
  abort(): void {
    if (this.fd !== undefined) try { closeSync(this.fd); } catch { /* already failing */ }
    this.fd = undefined;
    rmSync(this.tmp, { force: true });
  }

  private guard(step: () => void): void {
    try { step(); } catch (e) {
      this.abort();
      throw withPath(e, this.path);
    }
  }
}

/** Writes a file durably with `fill` (which calls `file.write`); aborts when `fill` throws. */
export function writeDurable(path: string, fill: (file: DurableFile) => void): DurableResult {
  const file = new DurableFile(path);
  try { fill(file); } catch (e) {
    file.abort();
    throw e;
  }
  return file.commit();
}

/** Writes `data` to `path` durably (see the module comment). @throws Error `<path>: no space left on device` and the like */
export function writeFileAtomic(path: string, data: string | Uint8Array): DurableResult {
  return writeDurable(path, (f) => f.write(data));
}

/** {@link writeFileAtomic} that does not block the thread while writing and syncing. */
export async function writeFileAtomicAsync(path: string, data: string | Uint8Array): Promise<DurableResult> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const tmp = path + TMP_SUFFIX;
  try {
    const fh = await open(tmp, 'w');
    try {
      for (let off = 0; off < bytes.length;) {
        const n = injectedWrite ? injectedWrite(fh.fd, bytes, off, bytes.length - off) : (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
        off += progress(n, bytes.length - off);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw withPath(e, path);
  }
  syncDirSync(dirname(path));
  return { bytes: bytes.length, sha256: sha256(bytes) };
}

const CHUNK = 1 << 20;

/**
 * Copies `src` to `dest` durably: copy to `dest.tmp` (the kernel's copy loop; a reflink where the
 * file system can), fsync, rename, directory fsync. Any size.
 * @throws Error naming `src` (cannot read) or `dest` (cannot write, e.g. no space left on device)
 */
export function copyFileDurable(src: string, dest: string): void {
  const tmp = dest + TMP_SUFFIX;
  checkReadable(src); // copyfile's errors name the source even when the destination is full
  try {
    copyFileSync(src, tmp, constants.COPYFILE_FICLONE);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw withPath(e, dest);
  }
  try {
    const fd = openSync(tmp, 'r+');
    try { fsyncSync(fd); } finally { closeSync(fd); }
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw withPath(e, dest);
  }
  syncDirSync(dirname(dest));
}

/** Throws `<path>: <problem>` unless `path` is a file that can be opened for reading. */
function checkReadable(path: string): void {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch (e) { throw withPath(e, path); }
  try {
    if (fstatSync(fd).isDirectory()) throw Object.assign(new Error(`EISDIR: illegal operation on a directory, read`), { code: 'EISDIR', syscall: 'read' });
  } catch (e) { throw withPath(e, path); } finally { closeSync(fd); }
}

function readChunk(fd: number, buf: Buffer, path: string): number {
  try { return readSync(fd, buf, 0, buf.length, null); } catch (e) { throw withPath(e, path); }
}

/**
 * Gives `dest` the content of `src` durably: a hard link when the file system allows it (for
 * files kd never rewrites in place, so sharing the inode is safe), else a streaming copy.
 */
export function linkOrCopyDurable(src: string, dest: string): void {
  const tmp = dest + TMP_SUFFIX;
  rmSync(tmp, { force: true });
  try { linkSync(src, tmp); } catch {
    copyFileDurable(src, dest);
    return;
  }
  try { renameSync(tmp, dest); } catch (e) {
    rmSync(tmp, { force: true });
    throw withPath(e, dest);
  }
  syncDirSync(dirname(dest));
}

/** Appends `text` to `path` (a log such as metrics.jsonl, whose torn last line readers drop). @throws Error naming the path */
export function appendText(path: string, text: string): void {
  try { appendFileSync(path, text); } catch (e) { throw withPath(e, path); }
}

/** sha256 hex digest of a file, read in 1 MiB chunks (any size). @throws Error naming the file */
export function sha256FileSync(path: string): string {
  let fd: number;
  try { fd = openSync(path, 'r'); } catch (e) { throw withPath(e); }
  try {
    const hash = createHash('sha256'), buf = Buffer.allocUnsafe(CHUNK);
    for (let n; (n = readChunk(fd, buf, path)) > 0;) hash.update(buf.subarray(0, n));
    return hash.digest('hex');
  } finally { closeSync(fd); }
}

/** Reads and parses a JSON file. @throws Error naming the file when it is missing, unreadable or not JSON. */
export function readJson<T>(path: string, what = 'file'): T {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${path}: ${what} not found`);
    throw withPath(e, path);
  }
  try { return JSON.parse(text) as T; } catch (e) { throw new Error(`${path}: not valid JSON (${(e as Error).message})`); }
}

/** sha256 hex digest of bytes. */
export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
