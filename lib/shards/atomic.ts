/**
 * Crash-safe file replacement for the shard writer and manifests: the one durable implementation
 * lives in lib/util/fs.ts (loops on short writes, fsync, rename, directory fsync).
 */
export { TMP_SUFFIX, writeFileAtomicAsync as writeFileAtomic } from '../util/fs.js';
