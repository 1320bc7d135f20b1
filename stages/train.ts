/**
 * train: the student learns from a logit dataset alone (the teacher .onnx is never opened) with
 * α·τ²·KD + (1 − α)·CE (DESIGN §4); α = 0 gives the baseline student on the same windows.
 * A student prep with another tokenizer than the dataset's trains on its own windows paired with
 * the teacher's by byte offset (dataset precomputed with --spans), with --loss uld
 * (lib/train/cross-tokenizer.ts, lib/train/uld-loss.ts).
 */
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { blame, flagOrigins, flagsToConfig, readConfigFile, mergeConfig } from '../lib/cli/config.js';
import { abortOnSignals } from '../lib/cli/interrupt.js';
import { trainOptions } from '../lib/cli/train-options.js';
import { openLogitDataset, type LogitDataset, type LogitManifest } from '../lib/shards/index.js';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { resolveTrainConfig, STUDENT_DEFAULTS, TRAIN_KEYS, type TrainConfig } from '../lib/train/config.js';
import { crossTokenizerData, openCrossTokenizer, type AlignStats } from '../lib/train/cross-tokenizer.js';
import { makeUldLossFn, ULD_LOSS } from '../lib/train/uld-loss.js';
import { validationData } from '../lib/train/data.js';
import { checkPrepProvenance } from '../lib/train/provenance.js';
import { makeLossFn } from '../lib/train/loss.js';
import { shardData } from '../lib/train/shard-data.js';
import { checkEnsembleManifests, ensembleData, parseEnsemble } from '../lib/train/ensemble-data.js';
import type { TrainingData } from '../lib/train/data.js';
import { train, TrainControl, TrainingInputs, TrainSummary } from '../lib/train/trainer.js';

export { STUDENT_DEFAULTS };

/**
 * The manifest's vocabulary must be the tokenizer's (an edited manifest would otherwise size the
 * student wrongly and fail inside a TF.js gather).
 * @throws Error "<data>/manifest.json: tokenizer.real_vocab_size 400 is not the 512 tokens of <prep>/tokenizer.json (edited manifest?)"
 */
function checkManifestVocab(m: LogitManifest, manifestPath: string, tokenizer: Tokenizer): void {
  if (m.tokenizer.real_vocab_size !== tokenizer.vocabSize) {
    throw new Error(`${manifestPath}: tokenizer.real_vocab_size ${m.tokenizer.real_vocab_size} is not the ${tokenizer.vocabSize} tokens of ${tokenizer.path} whose sha256 it records (edited manifest?)`);
  }
  const teacherTok = m.teacher.tokenizer_sha256;
  if (typeof teacherTok === 'string' && teacherTok !== m.tokenizer.sha256) {
    throw new Error(`${manifestPath}: teacher.tokenizer_sha256 ${teacherTok.slice(0, 12)}… is not tokenizer.sha256 ${m.tokenizer.sha256.slice(0, 12)}… (edited manifest?)`);
  }
}

/**
 * Trains a student from `cfg.data`; see the module comment.
 * @param control abort signal (ends after the current step with a resumable state) and step hook
 */
export async function run(partial: Record<string, unknown>, source = 'train config', control: TrainControl = {}): Promise<TrainSummary> {
  const cfg = resolveTrainConfig(partial, source, STUDENT_DEFAULTS);
  if (!cfg.data) throw new Error(`${source}: data (a logit dataset directory from precompute) is required`);
  const others = checkEnsembleFlags(cfg.ensemble, cfg.topk_mode, partial, source); // before any dataset is opened
  const ds = await openLogitDataset(cfg.data);
  const tokenizerPath = join(cfg.prep, 'tokenizer.json');
  const tokenizer = loadTokenizer(tokenizerPath);
  const manifestPath = join(cfg.data, 'manifest.json');
  const cross = ds.manifest.tokenizer.sha256 !== tokenizer.sha256;
  if (cross && cfg.alpha > 0 && cfg.loss !== ULD_LOSS) {
    throw new Error(`${manifestPath}: logits were computed with another tokenizer than ${tokenizerPath} (sha256 differs); a student with its own tokenizer is distilled with --loss uld from a dataset precomputed with --spans`);
  }
  if (!cross && cfg.loss === ULD_LOSS) throw new Error(`${blame(partial, 'loss', source)} 'uld' is for a student whose tokenizer differs from the teacher's, but ${tokenizerPath} is the dataset's tokenizer; use forward_kl or another divergence over the shared vocabulary`);
  const { inputs, stats } = cross ? await crossTokenizerInputs(cfg, ds, tokenizer, others, source) : { inputs: await sameTokenizerInputs(cfg, ds, tokenizer, others), stats: undefined };
  const summary = await train(cfg, inputs, control);
  if (stats && !cfg.quiet) process.stderr.write(`train: ${percent(stats())} of the student positions trained on were aligned with a teacher position\n`);
  if (!cfg.quiet) {
    const best = summary.best_step !== summary.steps && Number.isFinite(summary.best_val_loss)
      ? `; best ${summary.best_val_loss.toFixed(4)} (ppl ${summary.best_val_ppl.toFixed(2)}) at step ${summary.best_step} → ${join(summary.out, 'best')}` : '';
    const how = summary.interrupted ? ' (interrupted: --resume continues)' : summary.stopped_early ? ' (stopped early)' : '';
    process.stderr.write([
      `student trained (α=${cfg.alpha}): ${summary.steps} steps${how}, ${summary.tokens_seen.toLocaleString('en-US')} tokens in ${summary.seconds.toFixed(0)} s (${summary.tokens_per_s.toFixed(0)} tokens/s, backend ${summary.backend})`,
      `  parameters ${summary.parameters.toLocaleString('en-US')}, validation loss ${summary.val_loss.toFixed(4)} (ppl ${summary.val_ppl.toFixed(2)}) → ${summary.out}${best}`, '',
    ].join('\n'));
  }
  return summary;
}

/**
 * The other teachers of `--ensemble` and their weights, checked with the loss mode; each error is
 * headed by the flag that set the key (`--ensemble`), else `<source>: ensemble`.
 * @throws Error "--ensemble 'x' must be dir:weight pairs …", "--ensemble weights … leave no weight
 *   for --data …", "--ensemble needs topk_mode 'tail' (…), got 'renormalize' from --topk-mode".
 */
export function checkEnsembleFlags(spec: string, mode: string, partial: Record<string, unknown>, source: string): { dir: string; weight: number }[] {
  const head = blame(partial, 'ensemble', source);
  const others = parseEnsemble(spec, head);
  if (others.length > 0 && mode !== 'tail') {
    throw new Error(`${head} needs topk_mode 'tail' (each teacher's tail mass comes from its log_z), got '${mode}' from ${flagOrigins(partial).topk_mode?.flag ?? source}`);
  }
  return others;
}

/** Inputs of a student with the dataset's tokenizer: the dataset's windows and soft labels. */
async function sameTokenizerInputs(cfg: TrainConfig, ds: LogitDataset, tokenizer: Tokenizer, others: { dir: string; weight: number }[]): Promise<TrainingInputs> {
  const manifestPath = join(cfg.data!, 'manifest.json');
  checkManifestVocab(ds.manifest, manifestPath, tokenizer);
  const warning = await checkPrepProvenance(cfg.prep, ds.manifest, manifestPath);
  if (warning && !cfg.quiet) process.stderr.write(`kd: warning: ${warning}\n`);
  const lossFn = makeLossFn(cfg, ds.manifest.tokenizer.real_vocab_size, ds.manifest.temperatures, ds.manifest.sampling); // fails fast on an unstored τ
  const { data, topk } = await openEnsemble(cfg.data!, ds, others);
  return {
    train: data, validation: validationData(cfg.prep), tokenizer: tokenizer.path, realVocab: ds.manifest.tokenizer.real_vocab_size, topk, lossFn,
    hidden: ds.manifest.hidden,
    provenance: { role: cfg.alpha > 0 ? 'distilled student' : 'baseline student', logits: manifestPath, teacher: ds.manifest.teacher },
  };
}

/**
 * Inputs of a student with its own tokenizer (lib/train/cross-tokenizer.ts): its prep's windows
 * paired with the dataset's by byte offset, ULD + CE (α = 0: CE alone on the same windows). The
 * first batch is built here, so a text that cannot be paired stops the run before training.
 */
async function crossTokenizerInputs(cfg: TrainConfig, ds: LogitDataset, tokenizer: Tokenizer, others: { dir: string; weight: number }[], source: string): Promise<{ inputs: TrainingInputs; stats: () => AlignStats }> {
  if (others.length > 0) throw new Error(`${source}: --ensemble is not supported with a student whose tokenizer differs from the teacher's`);
  if (cfg.feature_layers) throw new Error(`${source}: --feature-layers pairs positions of one tokenization; not supported with a student whose tokenizer differs from the teacher's`);
  const opened = await openCrossTokenizer({ dataDir: cfg.data!, manifest: ds.manifest, studentPrep: cfg.prep, studentEos: tokenizer.eosId });
  const lossFn = makeUldLossFn(cfg, tokenizer.vocabSize, ds.manifest.temperatures);
  const data = crossTokenizerData(await shardData(ds), opened, cfg.prep);
  await data.batchAt(cfg.seed, 0, 0, Math.min(cfg.batch_size, data.rows));
  const first = data.stats(); // the check's batch; the run's share below leaves it out
  if (!cfg.quiet) process.stderr.write(`train: cross-tokenizer: ${percent(first)} of the student positions of the first batch align with a teacher position (ULD there, CE everywhere)\n`);
  const inputs: TrainingInputs = {
    train: data, validation: validationData(cfg.prep), tokenizer: tokenizer.path, realVocab: tokenizer.vocabSize, topk: ds.manifest.k, lossFn,
    provenance: {
      role: cfg.alpha > 0 ? 'distilled student (cross-tokenizer, ULD)' : 'baseline student (cross-tokenizer windows)', logits: join(cfg.data!, 'manifest.json'), teacher: ds.manifest.teacher,
      cross_tokenizer: { teacher_tokenizer_sha256: ds.manifest.tokenizer.sha256, student_tokenizer_sha256: tokenizer.sha256, aligned_share_first_batch: first.aligned / first.positions },
    },
  };
  const run = () => { const s = data.stats(); return { positions: s.positions - first.positions, aligned: s.aligned - first.aligned }; };
  return { inputs, stats: run };
}

const percent = (s: AlignStats) => `${((100 * s.aligned) / Math.max(1, s.positions)).toFixed(1)} %`;

/** The training data: the one dataset, or with --ensemble every teacher's over the same windows (K = Σ k). */
async function openEnsemble(dir: string, ds: Awaited<ReturnType<typeof openLogitDataset>>, others: { dir: string; weight: number }[]): Promise<{ data: TrainingData; topk: number }> {
  if (others.length === 0) return { data: await shardData(ds), topk: ds.manifest.k };
  const opened = [{ dir, ds, weight: 1 - others.reduce((s, o) => s + o.weight, 0) }];
  for (const o of others) opened.push({ dir: o.dir, ds: await openLogitDataset(o.dir), weight: o.weight });
  checkEnsembleManifests(opened.map((m) => ({ dir: m.dir, manifest: m.ds.manifest })));
  const members = await Promise.all(opened.map(async (m) => ({ dir: m.dir, manifest: m.ds.manifest, data: await shardData(m.ds), weight: m.weight })));
  return { data: ensembleData(members), topk: opened.reduce((s, m) => s + m.ds.manifest.k, 0) };
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train the student from a logit dataset (α·τ²·KD + (1−α)·CE); α = 0 trains the baseline',
  builder: (y: Argv<object>) => trainOptions(y, STUDENT_DEFAULTS) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const controller = new AbortController();
    const release = abortOnSignals(controller, 'saving a resumable state after this step');
    try {
      const summary = await run(mergeConfig(fromFile, flagsToConfig(argv, TRAIN_KEYS)), argv.config ?? 'train config', { signal: controller.signal });
      if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
      if (summary.interrupted) process.exitCode = 130;
    } finally { release(); }
  },
};
