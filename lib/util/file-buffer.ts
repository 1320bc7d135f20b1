/**
 * hyparquet's AsyncBuffer over an open file: positional reads of the ranges asked for, nothing
 * read up front, so Parquet files of any size are read without a whole-file buffer.
 */
import type { FileHandle } from 'node:fs/promises';
import type { AsyncBuffer } from 'hyparquet';

/**
 * @param size the file's size in bytes
 * @param path named in the error (omit when the caller names the file itself)
 * @throws Error `[<path>: ]file ended at byte N (truncated Parquet file?)` when a read comes back short.
 */
export function fileBuffer(fh: FileHandle, size: number, path?: string): AsyncBuffer {
  return {
    byteLength: size,
    async slice(start: number, end = size) {
      const out = new Uint8Array(Math.max(0, end - start));
      for (let at = 0; at < out.length;) {
        const { bytesRead } = await fh.read(out, at, out.length - at, start + at);
        if (bytesRead === 0) throw new Error(`${path ? `${path}: ` : ''}file ended at byte ${start + at} (truncated Parquet file?)`);
        at += bytesRead;
      }
      return out.buffer;
    },
  };
}
