/**
 * train: the student learns from a logit dataset alone (the teacher .onnx is never opened) with
 * α·τ²·KD + (1 − α)·CE (DESIGN §4); α = 0 gives the baseline student on the same windows.
 */
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { blame, flagOrigins, flagsToConfig, readConfigFile, mergeConfig } from '../lib/cli/config.js';
import { abortOnSignals } from '../lib/cli/interrupt.js';
import { trainOptions } from '../lib/cli/train-options.js';
import { openLogitDataset, type LogitManifest } from '../lib/shards/index.js';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer/tokenizer.js';
import { resolveTrainConfig, STUDENT_DEFAULTS, TRAIN_KEYS } from '../lib/train/config.js';
import { validationData } from '../lib/train/data.js';
import { checkPrepProvenance } from '../lib/train/provenance.js';
import { makeLossFn } from '../lib/train/loss.js';
import { shardData } from '../lib/train/shard-data.js';
import { checkEnsembleManifests, ensembleData, parseEnsemble } from '../lib/train/ensemble-data.js';
import type { TrainingData } from '../lib/train/data.js';
import { train, TrainControl, TrainSummary } from '../lib/train/trainer.js';

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
  if (ds.manifest.tokenizer.sha256 !== tokenizer.sha256) {
    throw new Error(`${manifestPath}: logits were computed with another tokenizer than ${tokenizerPath} (sha256 differs)`);
  }
  checkManifestVocab(ds.manifest, manifestPath, tokenizer);
  const warning = await checkPrepProvenance(cfg.prep, ds.manifest, manifestPath);
  if (warning && !cfg.quiet) process.stderr.write(`kd: warning: ${warning}\n`);
  const lossFn = makeLossFn(cfg, ds.manifest.tokenizer.real_vocab_size, ds.manifest.temperatures, ds.manifest.sampling); // fails fast on an unstored τ
  const { data: trainData, topk } = await openEnsemble(cfg.data, ds, others);
  const summary = await train(cfg, {
    train: trainData,
    validation: validationData(cfg.prep),
    tokenizer: tokenizerPath,
    realVocab: ds.manifest.tokenizer.real_vocab_size,
    topk,
    lossFn,
    hidden: ds.manifest.hidden,
    provenance: { role: cfg.alpha > 0 ? 'distilled student' : 'baseline student', logits: join(cfg.data, 'manifest.json'), teacher: ds.manifest.teacher },
  }, control);
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
