/** Public API of the logit dataset I/O (DESIGN §3.2). Parquet is used only under lib/shards/. */
export {
  COLUMNS, IGNORE_INDEX, SHARD_KV_KEY, SHARD_LAYOUT, checkLayout, idDtypeFor, rowBytes,
  type IdDtype, type LogitRow, type ShardLayout, type ValueDtype,
} from './schema.js';
export { writeShard, rowGroupRows, SHARD_CREATED_BY, type ShardCodec, type ShardWriteResult, type WriteShardMeta } from './writer.js';
export { readShard } from './reader.js';
export {
  MANIFEST_FILE, layoutOf, readManifest, sha256File, shardFileName, verifyShard, writeManifest,
  type LogitManifest, type ShardEntry,
} from './manifest.js';
export { openLogitDataset, type DatasetShard, type LogitDataset, type OpenOptions } from './dataset.js';
export { TMP_SUFFIX, writeFileAtomic } from './atomic.js';
export { DUCKDB_MACROS } from './sql.js';
