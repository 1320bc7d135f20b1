/**
 * sweep: a grid over α, temperature, loss and schedule (any train config key, in fact) trained
 * from one logit dataset — every run a `kd train` process with the same init seed and data order —
 * one after another or `parallel` at a time; then a table ranked by validation perplexity
 * (results.csv, results.md, results.json) and a plot of validation loss per run (val_loss.png).
 * Re-running continues: finished runs are reused, interrupted ones resume.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, readConfigFile } from '../lib/cli/config.js';
import { abortOnSignals } from '../lib/cli/interrupt.js';
import { createProgress } from '../lib/cli/progress.js';
import { lineChartSpec, writeChart } from '../lib/metrics/charts.js';
import { readManifest } from '../lib/shards/index.js';
import { expandGrid, resolveSweepConfig, SWEEP_KEYS, SweepRun } from '../lib/sweep/grid.js';
import { rankRuns, readRunResult, resultsCsv, resultsMarkdown, RunResult, valLossChart } from '../lib/sweep/results.js';
import { runNode, runPool } from '../lib/sweep/runner.js';
import { resolveTrainConfig, STUDENT_DEFAULTS, TrainConfig } from '../lib/train/config.js';
import { makeLossFn } from '../lib/train/loss.js';
import { initialState } from '../lib/train/state.js';
import { writeFileAtomic } from '../lib/util/fs.js';

/** The kd CLI the runs are launched with (plain node: it registers tsx itself). */
const KD_CLI = fileURLToPath(new URL('../pipelines/kd.js', import.meta.url));

/** What `run` returns. */
export interface SweepSummary {
  out: string;
  runs: number;
  ok: number;
  failed: number;
  /** Runs in rank order with their headline numbers. */
  ranked: { name: string; status: RunResult['status']; best_val_ppl: number | null; best_step: number | null; vs_baseline: number | null }[];
  files: { csv: string; markdown: string; json: string; png: string };
}

/** Runs a sweep; see the module comment. @throws Error naming the run when any run's config is invalid (before any run starts). */
export async function run(partial: Record<string, unknown>, source = 'sweep config', control: { signal?: AbortSignal; children?: Set<ChildProcess> } = {}): Promise<SweepSummary> {
  const cfg = resolveSweepConfig(partial, source);
  const base = cfg.base ? readConfigFile(cfg.base) : {};
  const runs = expandGrid(cfg.grid);
  const configs = new Map<string, TrainConfig>();
  for (const r of runs) configs.set(r.name, await checkedRunConfig({ ...base, ...cfg.train, ...r.values, out: join(cfg.out, r.name), resume: !cfg.force, quiet: false }, `${source}: run ${r.name}`));
  mkdirSync(cfg.out, { recursive: true });
  writeFileAtomic(join(cfg.out, 'sweep.json'), JSON.stringify({ config: cfg, runs: runs.map((r) => ({ ...r, config: configs.get(r.name) })) }, null, 2) + '\n');
  const log = (s: string) => { if (!cfg.quiet) process.stderr.write(s + '\n'); };
  log(`sweep: ${runs.length} runs (${runs.map((r) => r.name).join(', ')}), ${cfg.parallel} at a time → ${cfg.out}`);

  const progress = createProgress('sweep', runs.length, 'runs', cfg.quiet);
  const children = control.children ?? new Set<ChildProcess>();
  let done = 0;
  const results = await runPool(runs, cfg.parallel, async (r) => {
    const result = await runOne(r, configs.get(r.name)!, cfg.force, children);
    progress.update(++done, `${r.name}: ${result.status === 'ok' ? `ppl ${result.summary!.best_val_ppl.toFixed(2)}` : result.status}`);
    return result;
  }, () => control.signal?.aborted === true);
  progress.stop();

  const all = runs.map((r, i) => results[i] ?? readRunResult(join(cfg.out, r.name), r, 'not run'));
  const ranked = rankRuns(all);
  const gridKeys = [...new Set(runs.flatMap((r) => Object.keys(r.values)))];
  const title = `Sweep over ${gridKeys.join(', ') || 'one configuration'}`;
  const files = {
    csv: join(cfg.out, 'results.csv'), markdown: join(cfg.out, 'results.md'), json: join(cfg.out, 'results.json'), png: join(cfg.out, 'val_loss.png'),
  };
  writeFileAtomic(files.csv, resultsCsv(ranked, gridKeys));
  writeFileAtomic(files.markdown, resultsMarkdown(ranked, gridKeys, title) + `\n![validation loss per run](val_loss.png)\n`);
  writeFileAtomic(files.json, JSON.stringify(ranked.map(({ name, values, status, error, summary, vsBaseline, val }) => ({ name, values, status, error, summary, vs_baseline: vsBaseline, val })), null, 2) + '\n');
  const first = configs.get(runs[0].name)!;
  await writeChart(join(cfg.out, 'val_loss'), lineChartSpec(valLossChart(ranked, `Validation loss per run — ${title.toLowerCase()}`, [
    `every run: same logits (${first.data}), init seed ${first.seed} and data order`,
    `validation loss over the first ${first.eval_windows || 'all'} validation windows; dashed: α = 0 baseline`,
  ])));
  const summary: SweepSummary = {
    out: cfg.out, runs: runs.length, ok: ranked.filter((r) => r.status === 'ok').length, failed: ranked.filter((r) => r.status === 'failed').length,
    ranked: ranked.map((r) => ({ name: r.name, status: r.status, best_val_ppl: r.summary?.best_val_ppl ?? null, best_step: r.summary?.best_step ?? null, vs_baseline: r.vsBaseline ?? null })),
    files,
  };
  if (!cfg.quiet) printSummary(summary);
  return summary;
}

/** Resolves a run's train config and checks it against its logit dataset (loss name, stored temperatures). */
async function checkedRunConfig(partial: Record<string, unknown>, source: string): Promise<TrainConfig> {
  const cfg = resolveTrainConfig(partial, source, STUDENT_DEFAULTS);
  if (!cfg.data) throw new Error(`${source}: data (a logit dataset directory from precompute) is required`);
  const manifest = await readManifest(cfg.data);
  try { makeLossFn(cfg, manifest.tokenizer.real_vocab_size, manifest.temperatures, manifest.sampling); } catch (e) { throw new Error(`${source}: ${(e as Error).message}`); }
  return cfg;
}

/** Trains one run in a `kd train` process unless its directory already holds the finished run. */
async function runOne(r: SweepRun, cfg: TrainConfig, force: boolean, children: Set<ChildProcess>): Promise<RunResult> {
  mkdirSync(cfg.out, { recursive: true });
  if (!force && finished(cfg)) return readRunResult(cfg.out, r);
  const cfgPath = join(cfg.out, 'sweep-run.json'); // not config.json: that name is the checkpoint's LlamaConfig
  writeFileAtomic(cfgPath, JSON.stringify(cfg, null, 2) + '\n');
  const outcome = await runNode([KD_CLI, 'train', '--config', cfgPath, '--json'], join(cfg.out, 'train.log'), children);
  if (outcome.code === 0) return readRunResult(cfg.out, r, 'ok');
  if (outcome.code === 130 || outcome.signal) return readRunResult(cfg.out, r, 'interrupted');
  return readRunResult(cfg.out, r, 'failed', outcome.lastLogLine.replace(/^kd: /, ''));
}

/** True when `cfg.out` holds a finished (not interrupted) run of the same trajectory. */
function finished(cfg: TrainConfig): boolean {
  const path = join(cfg.out, 'train.json');
  if (!existsSync(path)) return false;
  const t = JSON.parse(readFileSync(path, 'utf8')) as { config: TrainConfig; summary: { interrupted?: boolean } };
  return !t.summary.interrupted && JSON.stringify(initialState(t.config).trajectory) === JSON.stringify(initialState(cfg).trajectory);
}

function printSummary(s: SweepSummary): void {
  const top = s.ranked.slice(0, 10).map((r, i) => `  ${String(i + 1).padStart(2)}. ${r.name.padEnd(36)} ${r.best_val_ppl === null ? r.status : `ppl ${r.best_val_ppl.toFixed(2)}${r.vs_baseline === null ? '' : ` (${r.vs_baseline >= 0 ? '+' : '−'}${Math.abs(100 * r.vs_baseline).toFixed(1)}% vs baseline)`}`}`);
  process.stderr.write([
    `sweep: ${s.ok}/${s.runs} runs finished${s.failed ? `, ${s.failed} failed` : ''}; ranked by best validation perplexity:`, ...top,
    s.ranked.length > 10 ? `  … ${s.ranked.length - 10} more in ${s.files.markdown}` : '',
    `  table ${s.files.markdown} (${s.files.csv}), plot ${s.files.png}`, '',
  ].filter((l) => l !== '').join('\n') + '\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'sweep',
  describe: 'Train a grid of students (α, τ, loss, schedule, …) from one logit dataset; rank them by validation perplexity',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'sweep config file (JSON/YAML): base, train, grid, out, parallel; e.g. pipelines/configs/sweep.json' })
    .option('base', { type: 'string', describe: 'train config file every run starts from (default: the student defaults)' })
    .option('train', { type: 'string', coerce: (s: string) => JSON.parse(s), describe: 'train config keys for every run as JSON, e.g. \'{"max_steps":100}\'' })
    .option('grid', { type: 'string', coerce: (s: string) => JSON.parse(s), describe: 'grid as JSON, e.g. \'{"alpha":[0,0.5],"temperature":[2,4]}\'' })
    .option('out', { type: 'string', describe: 'output directory (default runs/sweep)' })
    .option('parallel', { type: 'number', describe: 'runs at a time, each its own process using one core on wasm (default 1)' })
    .option('force', { type: 'boolean', describe: 'retrain finished runs instead of reusing them' })
    .option('quiet', { type: 'boolean', describe: 'no progress or summary' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const controller = new AbortController(), children = new Set<ChildProcess>();
    // Ctrl-C reaches the runs too (same process group); a SIGTERM sent to the sweep alone is forwarded.
    const release = abortOnSignals(controller, 'no new runs; running ones save a resumable state', (sig) => {
      if (sig === 'SIGTERM') for (const c of children) c.kill('SIGTERM');
    });
    try {
      const summary = await run({ ...fromFile, ...flagsToConfig(argv, SWEEP_KEYS) }, argv.config ?? 'sweep config', { signal: controller.signal, children });
      if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
      if (summary.ok < summary.runs) process.exitCode = 1;
    } finally { release(); }
  },
};
