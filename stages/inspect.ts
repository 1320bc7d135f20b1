/**
 * inspect: what a logit dataset holds (DESIGN §1) — rows, positions, bytes per position, how
 * much of the teacher's probability mass the top-k covers, the teacher's entropy, and whether
 * every shard is intact (size, sha256, shapes, rows and first sample id against the manifest).
 */
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { createProgress } from '../lib/cli/progress.js';
import { TeacherStats, type TeacherStatsResult } from '../lib/logits/stats.js';
import { meanUniqueIds } from '../lib/logits/sampling.js';
import { columnBytes, layoutOf, readListedShard, readManifest, type HiddenInfo, type LogitManifest, type SamplingInfo } from '../lib/shards/index.js';

/** One shard's integrity. */
export interface ShardCheck {
  file: string;
  rows: number;
  bytes: number;
  ok: boolean;
  /** One-line problem when not ok. */
  problem?: string;
}

export interface InspectSummary {
  dir: string;
  teacher: { path: string; sha256: string; dtype: string; execution_provider: string };
  vocab_size: number;
  real_vocab_size: number;
  seq_len: number;
  k: number;
  temperatures: number[];
  encoding: string;
  rows: number;
  positions: number;
  bytes: number;
  bytes_per_position: number;
  /** Teacher hidden states stored (manifest `hidden`), or null. */
  hidden: HiddenInfo | null;
  /** Bytes per position of the `hidden` column on disk (compressed column chunks; included in bytes_per_position); 0 without it. */
  hidden_bytes_per_position: number;
  /**
   * Sampled datasets (mode `sampled`): the draws' settings and the mean number of distinct ids
   * per position (of `samples` draws; over the intact shards); null for top-k datasets.
   */
  sampling: (SamplingInfo & { mean_distinct_ids: number }) | null;
  /**
   * Layout `compact`: the value codec's step and its KL error in nats (KL(exact ‖ stored) per
   * position at temperatures[0], recorded by the writer: position-weighted mean and max over the
   * shards); null for exact layouts.
   */
  codec_error: { value_step: number; kl_mean: number; kl_max: number } | null;
  /**
   * Over the rows of the shards that passed the checks. For a sampled dataset `topk_mass` is the
   * mass of the distinct drawn ids and `entropy_nats` is null: its bounds assume the k largest.
   */
  teacher_stats: Omit<TeacherStatsResult, 'entropy_nats'> & { entropy_nats: TeacherStatsResult['entropy_nats'] | null };
  shards: ShardCheck[];
  shards_ok: number;
}

/**
 * Inspects the logit dataset in `dir`. Every shard is read once and checked; statistics cover
 * the intact shards, and `shards` says which failed (the CLI then exits with
 * `"kd: <dir>: 1 of 3 shard(s) failed the integrity check: <first problem>"`).
 * @throws Error (one line) for a missing or invalid manifest.
 */
export async function run(dir: string, opts: { quiet?: boolean } = {}): Promise<InspectSummary> {
  const m = await readManifest(dir);
  const layout = layoutOf(m);
  const stats = new TeacherStats(m.k, m.temperatures, m.tokenizer.vocab_size);
  const progress = createProgress('inspect', m.totals.rows, 'windows', opts.quiet);
  const shards: ShardCheck[] = [];
  let done = 0, distinctSum = 0, distinctRows = 0;
  const sampled = m.mode === 'sampled';
  for (const entry of m.shards) {
    const check: ShardCheck = { file: entry.file, rows: entry.rows, bytes: entry.bytes, ok: true };
    try {
      const rows = await readListedShard({ entry, path: join(dir, entry.file) }, layout);
      for (const row of rows) stats.add(row.topk_logits, row.log_z, sampled ? row.topk_ids : undefined);
      if (sampled) for (const row of rows) distinctSum += meanUniqueIds(row.topk_ids, m.k);
      distinctRows += rows.length;
    } catch (e) {
      Object.assign(check, { ok: false, problem: (e as Error).message });
    }
    shards.push(check);
    progress.update((done += entry.rows));
  }
  progress.stop();
  let hiddenBytes = 0;
  if (m.hidden) for (const s of shards.filter((x) => x.ok)) hiddenBytes += await columnBytes(join(dir, s.file), 'hidden');
  const okPositions = shards.filter((x) => x.ok).reduce((n, x) => n + x.rows, 0) * m.seq_len;
  const summary: InspectSummary = {
    dir, teacher: { path: m.teacher.path, sha256: m.teacher.sha256, dtype: m.teacher.dtype, execution_provider: m.teacher.execution_provider },
    vocab_size: m.tokenizer.vocab_size, real_vocab_size: m.tokenizer.real_vocab_size, seq_len: m.seq_len, k: m.k,
    temperatures: m.temperatures, encoding: `ids ${m.encoding.ids}, values ${m.encoding.values}, ${m.encoding.layout}`,
    rows: m.totals.rows, positions: m.totals.positions, bytes: m.totals.bytes,
    bytes_per_position: m.totals.positions > 0 ? m.totals.bytes / m.totals.positions : 0,
    hidden: m.hidden ?? null, hidden_bytes_per_position: okPositions > 0 ? hiddenBytes / okPositions : 0,
    sampling: m.sampling ? { ...m.sampling, mean_distinct_ids: distinctRows > 0 ? distinctSum / distinctRows : NaN } : null,
    codec_error: codecError(m),
    teacher_stats: sampled ? { ...stats.result(), entropy_nats: null } : stats.result(), shards, shards_ok: shards.filter((s) => s.ok).length,
  };
  return summary;
}

/** The compact codec's recorded KL error over all shards (position-weighted mean, max); null for exact layouts. */
function codecError(m: LogitManifest): InspectSummary['codec_error'] {
  if (m.encoding.layout !== 'compact') return null;
  let sum = 0, max = 0, rows = 0;
  for (const s of m.shards) {
    if (!s.kl_error) continue;
    sum += s.kl_error.mean * s.rows;
    max = Math.max(max, s.kl_error.max);
    rows += s.rows;
  }
  return { value_step: m.encoding.value_step!, kl_mean: rows > 0 ? sum / rows : NaN, kl_max: rows > 0 ? max : NaN };
}

/** The one-screen summary. */
export function formatSummary(s: InspectSummary): string {
  const t = s.teacher_stats, pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const lines = [
    `inspect ${s.dir}`,
    `  teacher     ${s.teacher.path} (${s.teacher.dtype}, ${s.teacher.execution_provider}), sha256 ${s.teacher.sha256.slice(0, 12)}…`,
    `  vocab       ${s.vocab_size} logits, ${s.real_vocab_size} real tokens; k = ${s.k}; τ ∈ {${s.temperatures.join(', ')}}; ${s.encoding}`,
    `  rows        ${s.rows.toLocaleString('en-US')} windows × ${s.seq_len} = ${s.positions.toLocaleString('en-US')} positions`,
    `  bytes       ${(s.bytes / 2 ** 20).toFixed(2)} MiB, ${s.bytes_per_position.toFixed(1)} bytes/position`,
    ...(s.codec_error ? [`  codec       compact, value step ${s.codec_error.value_step}: KL(exact ‖ stored) mean ${s.codec_error.kl_mean.toExponential(2)}, max ${s.codec_error.kl_max.toExponential(2)} nats per position`] : []),
    ...(s.sampling ? [`  sampled     ${s.sampling.samples} draws per position at τg = ${s.sampling.temperature} (seed ${s.sampling.seed}): ${s.sampling.mean_distinct_ids.toFixed(2)} distinct ids on average`] : []),
    ...(s.hidden ? [`  hidden      layers [${s.hidden.layers}] × ${s.hidden.width} fp16${s.hidden.projection ? ` (projected from ${s.hidden.projection.rows}, seed ${s.hidden.projection.seed})` : ''}: ${s.hidden_bytes_per_position.toFixed(1)} of the ${s.bytes_per_position.toFixed(1)} bytes/position`] : []),
    s.sampling
      ? `  drawn mass  at τ = ${t.temperature}: the distinct drawn ids hold mean ${pct(t.topk_mass.mean)}, 5th percentile ${pct(t.topk_mass.p05)}, min ${pct(t.topk_mass.min)}`
      : `  top-k mass  at τ = ${t.temperature}: mean ${pct(t.topk_mass.mean)}, 5th percentile ${pct(t.topk_mass.p05)}, min ${pct(t.topk_mass.min)}; mean p(top-1) ${pct(t.top1_prob_mean)}`,
    ...(t.entropy_nats ? [`  entropy     at τ = ${t.temperature}: ${t.entropy_nats.lower.toFixed(3)} ≤ H ≤ ${t.entropy_nats.upper.toFixed(3)} nats (mean per position; bounds from the top-k and the tail mass)`] : []),
    `  shards      ${s.shards_ok} of ${s.shards.length} intact (size, sha256, shapes, rows, first sample id)`,
    ...s.shards.filter((x) => !x.ok).map((x) => `    ✗ ${x.problem}`),
  ];
  return lines.join('\n') + '\n';
}

type Args = { dir: string; json?: boolean; quiet?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'inspect <dir>',
  describe: 'Show what a logit dataset holds: rows, bytes per position, top-k mass, teacher entropy, shard integrity',
  builder: (y: Argv<object>) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'logit dataset directory (manifest.json + shards)' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar or summary' }) as unknown as Argv<Args>,
  handler: async (argv) => {
    const s = await run(argv.dir, { quiet: argv.quiet || argv.json });
    if (argv.json) process.stdout.write(JSON.stringify(s) + '\n');
    else if (!argv.quiet) process.stdout.write(formatSummary(s));
    const bad = s.shards.filter((x) => !x.ok);
    if (bad.length > 0) throw new Error(`${s.dir}: ${bad.length} of ${s.shards.length} shard(s) failed the integrity check: ${bad[0].problem}`);
  },
};
