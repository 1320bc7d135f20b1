/**
 * teacher: `kd teacher train` trains a Llama teacher with cross-entropy on the prep windows;
 * `kd teacher export` writes a checkpoint as ONNX with Optimum's IO names
 * (input_ids, attention_mask, position_ids → logits); `kd teacher ship` stores a trained
 * checkpoint compactly (fp16 safetensors + config + tokenizer + training log) for committing
 * under data/.
 */
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { flagsToConfig, isString, readConfigFile, resolveConfig } from '../lib/cli/config.js';
import { readWindows } from '../lib/data/windows.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { exportLlamaOnnx, writeOnnx } from '../lib/onnx/index.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { resolveTrainConfig, TRAIN_DEFAULTS, TRAIN_KEYS, TrainConfig } from '../lib/train/config.js';
import { validationData, windowData } from '../lib/train/data.js';
import { makeLossFn } from '../lib/train/loss.js';
import { train, TrainSummary } from '../lib/train/trainer.js';
import { trainOptions } from '../lib/cli/train-options.js';

/** Teacher training defaults: CE only (α = 0) on the prep windows; the architecture is in `model`. */
export const TEACHER_DEFAULTS: TrainConfig = {
  ...TRAIN_DEFAULTS, alpha: 0, out: 'runs/teacher', lr: 2e-3, min_lr: 2e-4, warmup_steps: 50, eval_every: 100, eval_windows: 128,
  model: { hidden_size: 256, intermediate_size: 704, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2 },
};

/** Trains the teacher (CE on the windows of `cfg.prep`). */
export async function runTrain(partial: Record<string, unknown>, source = 'teacher config'): Promise<TrainSummary> {
  const cfg = resolveTrainConfig({ ...partial, alpha: partial.alpha ?? 0 }, source, TEACHER_DEFAULTS);
  if (cfg.alpha !== 0) throw new Error(`${source}: a teacher trains on hard targets only (alpha must be 0)`);
  const tokenizerPath = join(cfg.prep, 'tokenizer.json');
  const tokenizer = loadTokenizer(tokenizerPath);
  const summary = await train(cfg, {
    train: windowData(readWindows(cfg.prep, 'train')),
    validation: validationData(cfg.prep),
    tokenizer: tokenizerPath,
    realVocab: tokenizer.vocabSize,
    lossFn: makeLossFn(cfg, tokenizer.vocabSize, []),
    provenance: { role: 'teacher', windows: join(cfg.prep, 'windows.json') },
  });
  if (!cfg.quiet) process.stderr.write(formatTrainSummary('teacher', summary));
  return summary;
}

/** Export options. */
export interface ExportConfig {
  /** HF checkpoint directory (config.json + model.safetensors). */
  checkpoint: string;
  /** Output .onnx path. */
  out: string;
}

/** Writes the checkpoint as ONNX (fp32). @returns the path and its size in bytes. */
export function runExport(partial: Record<string, unknown>, source = 'export config'): { out: string; bytes: number } {
  const cfg = resolveConfig<ExportConfig>({ checkpoint: 'data/teacher', out: 'runs/teacher/model.onnx' }, { checkpoint: isString, out: isString }, partial, source);
  const { cfg: modelCfg, weights } = loadCheckpoint(cfg.checkpoint);
  mkdirSync(dirname(cfg.out), { recursive: true });
  writeOnnx(cfg.out, exportLlamaOnnx(modelCfg, weights));
  return { out: cfg.out, bytes: statSync(cfg.out).size };
}

/**
 * Copies a trained checkpoint to `out` as fp16 safetensors with config.json, tokenizer.json and the
 * training log (train.json, metrics.jsonl). @returns total bytes written.
 */
export function runShip(partial: Record<string, unknown>, source = 'ship config'): { out: string; bytes: number } {
  const cfg = resolveConfig<ExportConfig>({ checkpoint: 'runs/teacher', out: 'data/teacher' }, { checkpoint: isString, out: isString }, partial, source);
  const { cfg: modelCfg, weights } = loadCheckpoint(cfg.checkpoint);
  saveCheckpoint(cfg.out, modelCfg, weights, { dtype: 'F16', tokenizer: join(cfg.checkpoint, 'tokenizer.json') });
  for (const f of ['train.json', 'metrics.jsonl']) {
    if (existsSync(join(cfg.checkpoint, f))) copyFileSync(join(cfg.checkpoint, f), join(cfg.out, f));
  }
  const bytes = ['config.json', 'model.safetensors', 'tokenizer.json', 'train.json', 'metrics.jsonl']
    .filter((f) => existsSync(join(cfg.out, f))).reduce((n, f) => n + statSync(join(cfg.out, f)).size, 0);
  return { out: cfg.out, bytes };
}

export function formatTrainSummary(role: string, s: TrainSummary): string {
  return [
    `${role} trained: ${s.steps} steps, ${s.tokens_seen.toLocaleString('en-US')} tokens in ${s.seconds.toFixed(0)} s (${s.tokens_per_s.toFixed(0)} tokens/s, backend ${s.backend})`,
    `  parameters ${s.parameters.toLocaleString('en-US')}, final train loss ${s.final_train_loss.toFixed(4)}, validation loss ${s.val_loss.toFixed(4)} (ppl ${s.val_ppl.toFixed(2)})`,
    `  checkpoint: ${s.out}`, '',
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'teacher <action>',
  describe: 'Train the teacher with cross-entropy (train) or write a checkpoint as ONNX (export)',
  builder: (y: Argv<object>) => trainOptions(y
    .positional('action', { choices: ['train', 'export', 'ship'] as const, describe: 'train: CE training on the prep windows; export: checkpoint → ONNX; ship: checkpoint → fp16 copy for data/' })
    .option('checkpoint', { type: 'string', describe: 'export/ship: HF checkpoint directory (default data/teacher for export, runs/teacher for ship)' }), TEACHER_DEFAULTS) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    if (argv.action === 'ship') {
      const r = runShip({ ...fromFile, ...flagsToConfig(argv, ['checkpoint', 'out']) }, argv.config ?? 'ship config');
      process.stderr.write(`teacher ship: ${r.out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB with fp16 weights)\n`);
      return;
    }
    if (argv.action === 'export') {
      const r = runExport({ ...fromFile, ...flagsToConfig(argv, ['checkpoint', 'out']) }, argv.config ?? 'export config');
      process.stderr.write(`teacher export: ${r.out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, fp32, inputs input_ids/attention_mask/position_ids → logits)\n`);
      if (argv.json) process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const summary = await runTrain({ ...fromFile, ...flagsToConfig(argv, TRAIN_KEYS) }, argv.config ?? 'teacher config');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
  },
};
