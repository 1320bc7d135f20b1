/**
 * Hugging Face `datasets` Parquet shards as a corpus: one document per row, from a string column
 * (`text` by default). Read one row group at a time by positional reads, so memory is about one
 * row group's text column, whatever the file size.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { parquetMetadataAsync, parquetRead, type AsyncBuffer, type Compressors, type FileMetaData } from 'hyparquet';
import { withPath } from '../util/errors.js';
import { fileBuffer } from '../util/file-buffer.js';

/** Codecs hyparquet decodes itself, plus those Node's zlib provides (ZSTD from Node 22.15 on). */
function compressors(): Compressors {
  const c: Compressors = {
    GZIP: (input) => new Uint8Array(gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
  };
  const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
  if (zstd) c.ZSTD = (input) => new Uint8Array(zstd(input));
  return c;
}
const BUILT_IN = ['UNCOMPRESSED', 'SNAPPY'];

/**
 * The values of column `field` of every row, row group by row group, with the 0-based row index.
 * Null values come as null (a blank document).
 * @throws Error naming the file when it is not Parquet, has no such column (listing the columns),
 *   uses a codec this Node cannot decode, or holds a value that is not a string.
 */
export async function* parquetTexts(path: string, field: string): AsyncGenerator<[number, string | null]> {
  let fh: FileHandle;
  try { fh = await open(path, 'r'); } catch (e) { throw withPath(e, path); }
  try {
    const file = fileBuffer(fh, (await fh.stat()).size, path);
    const meta = await metadata(path, file);
    checkColumn(path, meta, field);
    const codecs = compressors();
    let row = 0;
    for (const group of meta.row_groups) {
      const n = Number(group.num_rows);
      let values: unknown[][] = [];
      try {
        await parquetRead({ file, metadata: meta, columns: [field], rowStart: row, rowEnd: row + n, compressors: codecs, onComplete: (rows) => { values = rows as unknown[][]; } });
      } catch (e) {
        throw new Error(`${path}: cannot read row group at row ${row} (${(e as Error).message.split('\n')[0]})`);
      }
      for (let i = 0; i < values.length; i++) {
        const v = values[i][0];
        if (v !== null && v !== undefined && typeof v !== 'string') throw new Error(`${path}: row ${row + i}: column '${field}' is not a string (${typeof v})`);
        yield [row + i, (v as string | null | undefined) ?? null];
      }
      row += n;
      values = [];
    }
  } finally { await fh.close(); }
}

async function metadata(path: string, file: AsyncBuffer): Promise<FileMetaData> {
  const magic = (b: ArrayBuffer) => Buffer.from(b).toString('latin1') === 'PAR1';
  if (file.byteLength < 12 || !magic(await file.slice(0, 4)) || !magic(await file.slice(file.byteLength - 4))) {
    throw new Error(`${path}: not a Parquet file (no PAR1 header and footer)`);
  }
  try { return await parquetMetadataAsync(file); } catch (e) {
    throw new Error(`${path}: corrupt Parquet footer (${(e as Error).message})`);
  }
}

/** The column must be a top-level string column compressed with a codec we can decode. */
function checkColumn(path: string, meta: FileMetaData, field: string): void {
  const top = meta.schema.slice(1).filter((s) => s.num_children === undefined || s.num_children === 0);
  const names = top.map((s) => s.name);
  const el = meta.schema.find((s, i) => i > 0 && s.name === field);
  if (!el) throw new Error(`${path}: no column '${field}' (columns: ${names.join(', ')}); name the text column with --text-field`);
  if (el.type !== 'BYTE_ARRAY') throw new Error(`${path}: column '${field}' is ${el.type ?? 'a group'}, not a string column`);
  const codecs = compressors();
  for (const group of meta.row_groups) {
    for (const col of group.columns) {
      const codec = col.meta_data?.codec;
      if (col.meta_data?.path_in_schema.join('.') !== field || codec === undefined) continue;
      if (!BUILT_IN.includes(codec) && !(codec in codecs)) {
        throw new Error(`${path}: column '${field}' is compressed with ${codec}, which this Node cannot decode (UNCOMPRESSED, ${[...BUILT_IN.slice(1), ...Object.keys(codecs)].join(', ')}; ZSTD needs Node ≥ 22.15)`);
      }
    }
  }
}
