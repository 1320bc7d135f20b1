/**
 * Crash-safe file replacement: write `path + '.tmp'`, fsync it, rename over `path`, fsync
 * the directory. A crash leaves either the old file (or none) and maybe a `.tmp`, never a
 * half-written file under the final name.
 */
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Suffix of in-progress files; readers and resumers ignore such files. */
export const TMP_SUFFIX = '.tmp';

/** fsync a directory so a rename inside it is durable (no-op where directories can't be opened). */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Windows cannot open directories; the rename is still atomic there.
  } finally {
    await fh?.close();
  }
}

/**
 * Atomically writes `data` to `path` (tmp + fsync + rename + dir fsync). On failure the
 * tmp file is removed and the error rethrown.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = path + TMP_SUFFIX;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}
