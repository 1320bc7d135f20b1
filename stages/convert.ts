/**
 * convert: rewrites a logit dataset in another shard layout — `lists` (typed Parquet lists that
 * DuckDB, pyarrow and HF `datasets` read with no kd macros) or `packed` (kd's byte blobs) — with
 * every source shard verified against its manifest first and every converted shard read back and
 * compared row for row (lib/shards/convert.ts). The new manifest.json records `converted_from`.
 */
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isBool, isOneOf, isString, resolveConfig, type FieldCheck } from '../lib/cli/config.js';
import { createProgress } from '../lib/cli/progress.js';
import { TOOL_VERSION } from '../lib/cli/version.js';
import { convertDataset } from '../lib/shards/convert.js';
import { readManifest, SHARD_LAYOUT } from '../lib/shards/index.js';

/** `--layout` values → the layout written (exact layouts only: `kd convert` checks every value round-trips). */
const TARGETS = { packed: SHARD_LAYOUT, lists: 'lists' } as const;
type Target = keyof typeof TARGETS;

export interface ConvertConfig {
  /** Logit dataset directory to read (manifest.json + shards); never written. */
  in: string;
  /** Output directory of the converted dataset. */
  out: string;
  /** Layout to write: `lists` or `packed` (packed-le-split). */
  layout: Target;
  /** Replace a logit dataset already in `out` (only its manifests and shard files). */
  overwrite: boolean;
  quiet: boolean;
}

export const CONVERT_DEFAULTS: Omit<ConvertConfig, 'in' | 'out'> = { layout: 'lists', overwrite: false, quiet: false };

const CHECKS: Record<keyof ConvertConfig, FieldCheck> = {
  in: isString, out: isString, layout: isOneOf(...Object.keys(TARGETS)), overwrite: isBool, quiet: isBool,
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
  seconds: number;
}

/** Runs convert; see the module comment. */
export async function run(partial: Record<string, unknown>, source = 'convert config'): Promise<ConvertSummary> {
  const started = performance.now();
  const cfg = resolveConfig({ in: '', out: '', ...CONVERT_DEFAULTS }, CHECKS, partial, source);
  const total = (await readManifest(cfg.in)).totals.rows;
  const progress = createProgress('convert', total, 'windows', cfg.quiet);
  const r = await convertDataset(cfg.in, cfg.out, TARGETS[cfg.layout], { overwrite: cfg.overwrite, toolVersion: TOOL_VERSION, onRows: (n) => progress.update(n) })
    .finally(() => progress.stop());
  const positions = r.manifest.totals.positions, perPos = (n: number) => (positions > 0 ? n / positions : 0);
  const summary: ConvertSummary = {
    in: cfg.in, out: cfg.out, from_layout: r.source.encoding.layout, layout: r.manifest.encoding.layout,
    shards: r.manifest.shards.length, windows: r.manifest.totals.rows, positions,
    bytes_in: r.source.totals.bytes, bytes_out: r.manifest.totals.bytes,
    bytes_per_position_in: perPos(r.source.totals.bytes), bytes_per_position_out: perPos(r.manifest.totals.bytes),
    write_cpu_us_per_position: perPos(r.writeCpuSeconds * 1e6), seconds: (performance.now() - started) / 1000,
  };
  if (!cfg.quiet) process.stderr.write(formatSummary(summary));
  return summary;
}

function formatSummary(s: ConvertSummary): string {
  return [
    `convert: ${s.shards} shard(s), ${s.windows} windows, ${s.positions.toLocaleString('en-US')} positions in ${s.seconds.toFixed(1)} s → ${s.out}`,
    `  ${s.from_layout} ${(s.bytes_in / 2 ** 20).toFixed(1)} MiB (${s.bytes_per_position_in.toFixed(1)} bytes/position) → ${s.layout} ${(s.bytes_out / 2 ** 20).toFixed(1)} MiB (${s.bytes_per_position_out.toFixed(1)} bytes/position); writer ${s.write_cpu_us_per_position.toFixed(2)} CPU-µs/position`,
    '  every shard verified against its sha256 before reading, every converted row read back equal', '',
  ].join('\n');
}

type Args = Record<string, unknown> & { json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'convert',
  describe: 'Rewrite a logit dataset in another shard layout (lists: typed Parquet lists for DuckDB, pyarrow, HF datasets; packed: kd\'s byte blobs)',
  builder: (y: Argv<object>) => y
    .option('in', { type: 'string', demandOption: true, describe: 'logit dataset directory to convert (read only)' })
    .option('out', { type: 'string', demandOption: true, describe: 'directory of the converted dataset' })
    .option('layout', { choices: Object.keys(TARGETS), describe: `layout to write: lists = typed Parquet lists, packed = byte blobs (default ${CONVERT_DEFAULTS.layout})` })
    .option('overwrite', { type: 'boolean', describe: 'replace a logit dataset already in --out (its manifest and shard files; nothing else)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const summary = await run(flagsToConfig(argv, Object.keys(CHECKS)), 'kd convert');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
