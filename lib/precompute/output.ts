/**
 * Bookkeeping of a logit dataset being written, so that a run can be killed at any moment and
 * resumed (DESIGN §3.2):
 * - shards are written under a temporary name and renamed when complete (lib/shards);
 * - after every shard the worker's manifest (`manifest.worker-IIIII-of-NNNNN.json`, `complete:
 *   false`) is rewritten atomically with the shards done so far;
 * - `manifest.json` exists only for a complete dataset: a single worker writes it at the end
 *   and drops its worker manifest; N workers leave complete worker manifests for `kd merge`;
 * - a re-run keeps every shard that some manifest in the directory lists and whose size and
 *   sha256 match, after checking that the manifest was made from the same inputs;
 * - each worker locks the directory for its index (`.kd.precompute-IIIII.lock`): workers with
 *   different indices share a directory, a second process with the same index is refused.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { acquireLock, commandLine, type DirLock } from '../util/lock.js';
import {
  MANIFEST_FILE, SPAN_TOKENIZER_FILE, TMP_SUFFIX, WORKER_MANIFEST_RE, readManifestFile, reusableShards, workerManifestFile, workerShards, writeManifest,
  type LogitManifest, type ShardEntry, type ShardSlice, type WorkerInfo,
} from '../shards/index.js';

const SHARD_FILE_RE = /^shard-\d{5,}\.parquet(\.tmp)?$/;

/** Deletes a previous dataset in `dir`: manifests, shard files and the tokenizer.json of one with spans (only those kd writes). */
function clearDataset(dir: string): void {
  for (const f of readdirSync(dir)) {
    const name = f.replace(/\.tmp$/, '');
    if (name === MANIFEST_FILE || name === SPAN_TOKENIZER_FILE || SHARD_FILE_RE.test(f) || WORKER_MANIFEST_RE.test(name)) rmSync(join(dir, f), { force: true });
  }
}

/** The shard entries of a dataset being written by one worker. */
export class DatasetOutput {
  private readonly entries = new Map<number, ShardEntry>();
  private readonly file: string;

  private constructor(readonly dir: string, private readonly template: LogitManifest, readonly worker: WorkerInfo, private readonly lock: DirLock) {
    this.file = workerManifestFile(worker.index, worker.count);
  }

  /**
   * Prepares `dir` for `worker`'s shards of `plan`: with `overwrite` (single worker only) deletes
   * an earlier dataset; removes this worker's leftover temporary files; keeps the shards that a
   * manifest lists and that verify. `template` holds the identity (hashes, shapes, plan).
   * Takes the worker's lock on `dir` first; {@link finish} and {@link release} give it back.
   * @returns the output and the shards still to compute, in order
   * @throws Error "<dir>: in use by pid 1234 on host H since … (kd precompute); wait for it or stop it",
   *   "<manifest>: cannot resume: teacher sha256 differs (…)" and the like
   */
  static async open(dir: string, template: LogitManifest, plan: ShardSlice[], worker: WorkerInfo, overwrite: boolean): Promise<{ out: DatasetOutput; todo: ShardSlice[] }> {
    mkdirSync(dir, { recursive: true });
    const name = `.kd.precompute-${String(worker.index).padStart(5, '0')}.lock`;
    const lock = acquireLock(dir, commandLine('kd precompute'), { name, log: (line) => process.stderr.write(`kd: ${line}\n`) });
    try {
      return await DatasetOutput.prepare(dir, template, plan, worker, overwrite, lock);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** {@link open} once the lock is held. */
  private static async prepare(dir: string, template: LogitManifest, plan: ShardSlice[], worker: WorkerInfo, overwrite: boolean, lock: DirLock): Promise<{ out: DatasetOutput; todo: ShardSlice[] }> {
    if (overwrite) {
      if (worker.count > 1) throw new Error(`${dir}: --overwrite cannot be used with ${worker.count} workers (they would delete each other's shards); empty the directory before starting them`);
      clearDataset(dir);
    }
    const out = new DatasetOutput(dir, template, worker, lock);
    const mine = workerShards(plan, worker);
    for (const s of mine) rmSync(join(dir, s.file + TMP_SUFFIX), { force: true });
    rmSync(join(dir, out.file + TMP_SUFFIX), { force: true });
    if (worker.count === 1) rmSync(join(dir, MANIFEST_FILE + TMP_SUFFIX), { force: true });
    const { reused, listed } = await reusableShards(dir, template, mine);
    if (listed.length > 0) { // what ran before, until this run's teacher session says otherwise
      const { execution_provider, input_names } = listed[0].manifest.teacher;
      Object.assign(template.teacher, { execution_provider, input_names });
    }
    for (const [index, entry] of reused) out.entries.set(index, entry);
    const todo = mine.filter((s) => !reused.has(s.index));
    if (todo.length > 0) {
      rmSync(join(dir, MANIFEST_FILE), { force: true }); // no longer complete
      await out.save(false);
    }
    return { out, todo };
  }

  /** Gives back the worker's lock on the directory (idempotent; {@link finish} calls it). */
  release(): void {
    this.lock.release();
  }

  /** Shards listed so far (reused and new). */
  get shardCount(): number {
    return this.entries.size;
  }

  /** Lists a finished shard and rewrites the worker manifest. */
  async record(index: number, entry: ShardEntry): Promise<void> {
    this.entries.set(index, entry);
    await this.save(false);
  }

  /** The worker manifest as written so far (`complete: false`), e.g. for an interrupted run's summary. */
  progress(): LogitManifest {
    return this.manifest(false);
  }

  /** Every shard listed so far, in plan order, with totals. */
  private manifest(complete: boolean): LogitManifest {
    const shards = [...this.entries.entries()].sort((a, b) => a[0] - b[0]).map(([, e]) => e);
    const rows = shards.reduce((s, e) => s + e.rows, 0);
    return {
      ...this.template, shards, complete, worker: this.worker,
      totals: { rows, positions: rows * this.template.seq_len, bytes: shards.reduce((s, e) => s + e.bytes, 0) },
      created_at: new Date().toISOString(),
    };
  }

  private save(complete: boolean): Promise<void> {
    return writeManifest(this.dir, this.manifest(complete), this.file);
  }

  /** Records what the teacher session of this run was (known only once it is open). */
  setTeacherRun(executionProvider: string, inputNames: string[]): void {
    Object.assign(this.template.teacher, { execution_provider: executionProvider, input_names: inputNames });
  }

  /**
   * Marks this worker done. A single worker writes `manifest.json` (unless an identical one is
   * already there) and removes the worker manifests in the directory, which it subsumes; one of N
   * writes its worker manifest with `complete: true`. Releases the lock.
   */
  async finish(): Promise<LogitManifest> {
    try {
      return await this.writeFinal();
    } finally {
      this.release();
    }
  }

  private async writeFinal(): Promise<LogitManifest> {
    const m = this.manifest(true);
    if (this.worker.count > 1) {
      await writeManifest(this.dir, m, this.file);
      return m;
    }
    const existing = await readManifestFile(join(this.dir, MANIFEST_FILE)).catch(() => undefined);
    const same = existing && JSON.stringify(existing.shards) === JSON.stringify(m.shards);
    const { worker: _, ...final } = m;
    if (!same) await writeManifest(this.dir, final);
    // Worker manifests (this run's, or an earlier split run's) are subsumed by manifest.json now.
    for (const f of readdirSync(this.dir).filter((x) => WORKER_MANIFEST_RE.test(x))) rmSync(join(this.dir, f), { force: true });
    return same ? existing : final;
  }
}
