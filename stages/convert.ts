/**
 * convert: rewrites a logit dataset in another shard layout — `lists` (typed Parquet lists that
 * DuckDB, pyarrow and HF `datasets` read with no kd macros), `packed` (kd's byte blobs) or
 * `compact` (lossy, about half of packed's bytes) — with
 * every source shard verified against its manifest first and every converted shard read back and
 * compared row for row (lib/shards/convert.ts). The new manifest.json records `converted_from`.
 */
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isBool, isOneOf, isString, resolveConfig, type FieldCheck } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { TOOL_VERSION } from '../lib/cli/version.js';
import { convertDataset } from '../lib/shards/convert.js';
import { checkValueStep, DEFAULT_VALUE_STEP, readManifest, SHARD_LAYOUT, type LogitManifest } from '../lib/shards/index.js';

/**
 * `--layout` values → the layout written. Exact layouts round-trip every value; `compact` is lossy:
 * its rows are checked against the codec's own encoding of the source rows.
 */
const TARGETS = { packed: SHARD_LAYOUT, lists: 'lists', compact: 'compact' } as const;
type Target = keyof typeof TARGETS;

export interface ConvertConfig {
  /** Logit dataset directory to read (manifest.json + shards); never written. */
  in: string;
  /** Output directory of the converted dataset. */
  out: string;
  /** Layout to write: `lists`, `packed` (packed-le-split) or `compact` (lossy; lib/shards/compact.ts). */
  layout: Target;
  /** Layout compact: δ of the value codes, a power of two 2^-m, m = 0..5. */
  value_step: number;
  /** Replace a logit dataset already in `out` (only its manifests and shard files). */
  overwrite: boolean;
  quiet: boolean;
}

export const CONVERT_DEFAULTS: Omit<ConvertConfig, 'in' | 'out'> = { layout: 'lists', value_step: DEFAULT_VALUE_STEP, overwrite: false, quiet: false };

const CHECKS: Record<keyof ConvertConfig, FieldCheck> = {
  in: isString, out: isString, layout: isOneOf(...Object.keys(TARGETS)), overwrite: isBool, quiet: isBool,
  value_step: (v) => { try { checkValueStep(v, 'value_step'); return undefined; } catch { return 'must be a power of two 2^-m, m = 0..5 (e.g. 0.0625)'; } },
};

export interface ConvertSummary {
  in: string;
  out: string;
  from_layout: string;
  layout: string;
  shards: number;
  windows: number;
  positions: number;
  bytes_in: number;
  bytes_out: number;
  bytes_per_position_in: number;
  bytes_per_position_out: number;
  /** Writer CPU time per position (µs; encoding, compression, sha256, fsync; all threads). */
  write_cpu_us_per_position: number;
  /** To layout compact: the codec's KL error against the source's values (position-weighted mean, max); else null. */
  kl_error: { mean: number; max: number } | null;
  seconds: number;
}

/** Runs convert; see the module comment. */
export async function run(partial: Record<string, unknown>, source = 'convert config'): Promise<ConvertSummary> {
  const started = performance.now();
  const cfg = resolveConfig({ in: '', out: '', ...CONVERT_DEFAULTS }, CHECKS, partial, source);
  if (partial.value_step !== undefined && cfg.layout !== 'compact') throw new Error(`${source}: value_step is for --layout compact`);
  const total = (await readManifest(cfg.in)).totals.rows;
  const progress = createProgress('convert', total, 'windows', cfg.quiet);
  const r = await convertDataset(cfg.in, cfg.out, TARGETS[cfg.layout], { overwrite: cfg.overwrite, toolVersion: TOOL_VERSION, valueStep: cfg.value_step, onRows: (n) => progress.update(n) })
    .finally(() => progress.stop());
  const positions = r.manifest.totals.positions, perPos = (n: number) => (positions > 0 ? n / positions : 0);
  const summary: ConvertSummary = {
    in: cfg.in, out: cfg.out, from_layout: r.source.encoding.layout, layout: r.manifest.encoding.layout,
    shards: r.manifest.shards.length, windows: r.manifest.totals.rows, positions,
    bytes_in: r.source.totals.bytes, bytes_out: r.manifest.totals.bytes,
    bytes_per_position_in: perPos(r.source.totals.bytes), bytes_per_position_out: perPos(r.manifest.totals.bytes),
    write_cpu_us_per_position: perPos(r.writeCpuSeconds * 1e6), kl_error: klError(r.manifest), seconds: (performance.now() - started) / 1000,
  };
  if (!cfg.quiet) process.stderr.write(formatSummary(summary));
  return summary;
}

/** Position-weighted mean and max of the shards' kl_error (null when none has one). */
function klError(m: LogitManifest): ConvertSummary['kl_error'] {
  const listed = m.shards.filter((s) => s.kl_error);
  if (listed.length === 0) return null;
  const rows = listed.reduce((n, s) => n + s.rows, 0);
  return { mean: listed.reduce((n, s) => n + s.kl_error!.mean * s.rows, 0) / rows, max: Math.max(...listed.map((s) => s.kl_error!.max)) };
}

function formatSummary(s: ConvertSummary): string {
  return [
    `convert: ${s.shards} shard(s), ${s.windows} windows, ${s.positions.toLocaleString('en-US')} positions in ${s.seconds.toFixed(1)} s → ${s.out}`,
    `  ${s.from_layout} ${(s.bytes_in / 2 ** 20).toFixed(1)} MiB (${s.bytes_per_position_in.toFixed(1)} bytes/position) → ${s.layout} ${(s.bytes_out / 2 ** 20).toFixed(1)} MiB (${s.bytes_per_position_out.toFixed(1)} bytes/position); writer ${s.write_cpu_us_per_position.toFixed(2)} CPU-µs/position`,
    ...(s.kl_error ? [`  compact codec: KL(source ‖ stored) mean ${s.kl_error.mean.toExponential(2)}, max ${s.kl_error.max.toExponential(2)} nats per position`] : []),
    `  every shard verified against its sha256 before reading, every converted row read back ${s.kl_error ? 'as the codec encodes it' : 'equal'}`, '',
  ].join('\n');
}

type Args = Record<string, unknown> & { json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'convert',
  describe: 'Rewrite a logit dataset in another shard layout (lists: typed Parquet lists for DuckDB, pyarrow, HF datasets; packed: kd\'s byte blobs; compact: lossy, about half the bytes)',
  builder: (y: Argv<object>) => y
    .option('in', { type: 'string', demandOption: true, describe: 'logit dataset directory to convert (read only)' })
    .option('out', { type: 'string', demandOption: true, describe: 'directory of the converted dataset' })
    .option('layout', { choices: Object.keys(TARGETS), describe: `layout to write: lists = typed Parquet lists, packed = byte blobs, compact = varint id gaps + 8-bit value codes (lossy) (default ${CONVERT_DEFAULTS.layout})` })
    .option('value-step', { type: 'number', describe: 'layout compact: step δ of the value codes in nats, a power of two (default 0.0625)' })
    .option('overwrite', { type: 'boolean', describe: 'replace a logit dataset already in --out (its manifest and shard files; nothing else)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const summary = await run(flagsToConfig(argv, Object.keys(CHECKS)), 'kd convert');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
