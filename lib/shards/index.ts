/** Public API of the logit dataset I/O (DESIGN §3.2). Parquet is used only under lib/shards/. */
export {
  COLUMNS, IGNORE_INDEX, SHARD_KV_KEY, SHARD_LAYOUT, SHARD_LAYOUTS, checkLayout, columnsOf, hiddenValues, idDtypeFor, rowBytes,
  type HiddenLayout,
  type IdDtype, type LayoutName, type LogitRow, type ShardLayout, type ValueDtype,
} from './schema.js';
export { writeShard, rowGroupRows, SHARD_CREATED_BY, type ShardCodec, type ShardWriteResult, type WriteShardMeta } from './writer.js';
export { columnBytes, looksLikeParquet, readShard, type ReadShardOptions } from './reader.js';
export {
  MANIFEST_FILE, SPAN_TOKENIZER_FILE, SPAN_UNIT, WORKER_MANIFEST_RE, layoutOf, readManifest, readManifestFile, sha256File, shardFileName, verifyShard,
  workerManifestFile, writeManifest, type ConvertedFrom, type HiddenInfo, type LogitManifest, type SamplingInfo, type ShardEntry, type ShardPlanInfo, type SpanInfo, type WorkerInfo,
} from './manifest.js';
export { identityDiff, listedManifests, reusableShards, type ListedManifest, type PlannedShard } from './resume.js';
export { planInfo, planShards, workerShards, type ShardSlice } from './plan.js';
export { mergeDatasets, type MergeResult } from './merge.js';
export { inlineShardSink, threadShardSink, type ShardSink } from './sink.js';
export { openLogitDataset, readListedShard, type DatasetShard, type LogitDataset, type OpenOptions } from './dataset.js';
export { TMP_SUFFIX, writeFileAtomic } from './atomic.js';
export { checkValueStep, DEFAULT_VALUE_STEP } from './compact.js';
export { DUCKDB_MACROS } from './sql.js';
