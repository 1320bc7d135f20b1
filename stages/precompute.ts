/**
 * precompute: run the ONNX teacher once over the training windows and store its top-k soft labels
 * (ids, z − max z as fp16, log_z at every stored temperature) in Parquet shards + manifest.json
 * (DESIGN §3.2). The graph gets TopK and normaliser outputs first (DESIGN §3.4), so the full
 * [B, L, V] logits never leave onnxruntime. Resumable (a re-run keeps verified shards) and
 * splittable across workers (`--shard-index i --num-shards N`; `kd merge` joins them); see
 * lib/precompute/output.ts for the bookkeeping.
 */
import type { Argv, CommandModule } from 'yargs';
import { blame, FieldCheck, flagOrigins, flagsToConfig, intListFlag, isBool, isInt, isOneOf, isString, numberListFlag, optional, readConfigFile, resolveConfig, stringListFlag } from '../lib/cli/config.js';
import { abortOnSignals } from '../lib/cli/interrupt.js';
import { createProgress } from '../lib/cli/progress.js';
import { resolveWorker } from '../lib/cli/workers.js';
import { addHiddenOutput, addSampledOutputs, addTopKOutputs, findHiddenTensors, hiddenSizeOf, openDerivedSession, teacherDtypeOf, TOKENIZER_SHA256_KEY, type OnnxSession } from '../lib/onnx/index.js';
import { measureLogitsWidth, type SamplingRows, type SpanRows } from '../lib/precompute/teacher-rows.js';
import { UNIFORMS_KIND } from '../lib/logits/sampling.js';
import { loadPrecomputeInputs, type PrecomputeInputs } from '../lib/precompute/inputs.js';
import { DatasetOutput } from '../lib/precompute/output.js';
import { computeShards } from '../lib/precompute/run-shards.js';
import {
  checkValueStep, DEFAULT_VALUE_STEP, idDtypeFor, mergeDatasets, SHARD_LAYOUT, SPAN_TOKENIZER_FILE, SPAN_UNIT, planInfo, planShards, threadShardSink, type HiddenInfo, type LogitManifest, type ShardSlice, type SpanInfo, type WriteShardMeta,
} from '../lib/shards/index.js';
import { tokenByteLengths } from '../lib/tokenizer/byte-lengths.js';
import { MAX_SPAN_OFFSET, windowStarts } from '../lib/tokenizer/align.js';
import { copyFileDurable } from '../lib/util/fs.js';
import { TOOL_VERSION } from '../lib/cli/version.js';
import { PROJECTION_KIND, randomProjection } from '../lib/util/projection.js';
import { join } from 'node:path';

export interface PrecomputeConfig {
  /** Teacher ONNX file (decoder-only LM with a `logits` output). */
  teacher: string;
  /** Prep output directory: windows and tokenizer.json. */
  prep: string;
  /** Output directory of the logit dataset. */
  out: string;
  /** Ids stored per position (mode topk). */
  k: number;
  /**
   * `topk` (default): the k largest logits; `sampled`: `samples` ids drawn with replacement from
   * p_τg per position, for unbiased random-sampling KD (Anshumann et al., ACL 2025; lib/logits/sampling.ts).
   */
  mode: 'topk' | 'sampled';
  /** Draws per position n in sampled mode (the dataset's k). */
  samples: number;
  /** τg of the draws (sampled mode); must be one of `temperatures`. */
  sampling_temperature: number;
  /** Seed of the draws' uniforms (sampled mode): with the sample id it fixes every draw. */
  sampling_seed: number;
  /**
   * Temperatures whose normaliser log_z is stored. Default [1, 2, 4]: the sweep's grid; each extra
   * τ costs ~2 passes over [B, L, V] (a τ whose double is stored costs one Mul). Tail-mode training
   * uses only stored τ: the article's 'step' schedule from 4 needs 1 1.5 2 2.5 3 3.5 4.
   */
  temperatures: number[];
  /** Windows per teacher forward. */
  batch_size: number;
  /** Windows per shard file. */
  rows_per_shard: number;
  /** Only the first N training windows (0 = all). */
  max_windows: number;
  /** auto: CUDA when its provider loads, else CPU. */
  device: 'auto' | 'cpu' | 'cuda';
  /** Parquet page codec: brotli (quality 1, least writer CPU) or gzip (level 1, for readers without brotli, e.g. Spark). */
  codec: 'brotli' | 'gzip';
  /**
   * Shard layout: `packed` (exact fp16 values: layout packed-le-split) or `compact` (ids as
   * varint gaps, values as 8-bit codes of step `value_step`; lossy, ~0.55× the bytes, its KL
   * error recorded per shard; lib/shards/compact.ts) or `lists` (exact, typed Parquet lists that
   * DuckDB, pyarrow and HF `datasets` read as they are; lib/shards/lists.ts; README "Logit
   * archives"). Default `auto`: packed in topk mode, compact in sampled mode (36.9 against 48.8
   * bytes/position at n = 12; README).
   */
  layout: 'auto' | 'packed' | 'compact' | 'lists';
  /** Layout compact: δ of the value codes, a power of two 2^-m, m = 0..5 (default 1/16). */
  value_step: number;
  /** This worker's index in a split run (else from SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX; default 0). */
  shard_index?: number;
  /** Workers in a split run (else from SLURM_ARRAY_TASK_COUNT / KD_NUM_SHARDS; default 1). */
  num_shards?: number;
  /**
   * Teacher hidden states to store (column `hidden`) for feature distillation, as HF
   * output_hidden_states indices: 0 = embeddings, i = residual stream after decoder layer i (before
   * the final norm). Default [] = none.
   */
  hidden_layers: number[];
  /** Graph value names of those states, one per layer, for graphs whose names are not recognised (default [] = find them). */
  hidden_outputs: string[];
  /** Store h·P with a fixed seeded Gaussian P [hidden_size, d] (lib/util/projection.ts) instead of h; 0 = no projection. */
  hidden_dim: number;
  /** Seed of that projection. */
  hidden_seed: number;
  /**
   * Also store each position's byte span in the train split's text (column `byte_spans`, manifest
   * `spans`) and the tokenizer.json beside the manifest, so that a student with another tokenizer
   * can be distilled from this dataset (`kd train --loss uld`; lib/tokenizer/align.ts).
   */
  spans: boolean;
  /** Delete an existing dataset in `out` instead of resuming it (single worker only). */
  overwrite: boolean;
  quiet: boolean;
}

export const PRECOMPUTE_DEFAULTS: PrecomputeConfig = {
  teacher: 'runs/teacher/model.onnx', prep: 'runs/prep', out: 'runs/logits', k: 32, mode: 'topk', samples: 12, sampling_temperature: 1, sampling_seed: 0,
  temperatures: [1, 2, 4], batch_size: 8, rows_per_shard: 1024, max_windows: 0, device: 'auto', codec: 'brotli', layout: 'auto', value_step: DEFAULT_VALUE_STEP,
  hidden_layers: [], hidden_outputs: [], hidden_dim: 0, hidden_seed: 0, spans: false, overwrite: false, quiet: false,
};

const CHECKS: Record<keyof PrecomputeConfig, FieldCheck> = {
  teacher: isString, prep: isString, out: isString, k: isInt(1, 1 << 20),
  mode: isOneOf('topk', 'sampled'), samples: isInt(1, 1 << 16), sampling_seed: isInt(0, 2 ** 32 - 1),
  sampling_temperature: (v) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? undefined : 'must be a number > 0'),
  temperatures: (v) => (Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === 'number' && t > 0) && new Set(v).size === v.length ? undefined : 'must be a non-empty list of distinct numbers > 0'),
  batch_size: isInt(1, 4096), rows_per_shard: isInt(1), max_windows: isInt(0), device: isOneOf('auto', 'cpu', 'cuda'), codec: isOneOf('brotli', 'gzip'),
  layout: isOneOf('auto', 'packed', 'compact', 'lists'), value_step: (v) => { try { checkValueStep(v, 'value_step'); return undefined; } catch { return 'must be a power of two 2^-m, m = 0..5 (e.g. 0.0625)'; } },
  shard_index: optional(isInt(0)), num_shards: optional(isInt(1)), overwrite: isBool, quiet: isBool,
  hidden_layers: (v) => (Array.isArray(v) && v.every((l) => Number.isInteger(l) && l >= 0) && new Set(v).size === v.length ? undefined : 'must be a list of distinct integers ≥ 0'),
  hidden_outputs: (v) => (Array.isArray(v) && v.every((t) => typeof t === 'string' && t.length > 0) ? undefined : 'must be a list of tensor names'),
  hidden_dim: isInt(0, 1 << 16), hidden_seed: isInt(0, 2 ** 32 - 1), spans: isBool,
};

export interface PrecomputeSummary {
  out: string;
  /** This worker's index and the number of workers. */
  worker: { index: number; count: number };
  /** Windows in the listed shards of this worker (all windows for a single worker). */
  windows: number;
  positions: number;
  shards: number;
  /** Shards kept from an earlier run (listed and verified). */
  reused_shards: number;
  /** Windows run through the teacher by this call. */
  computed_windows: number;
  bytes: number;
  bytes_per_position: number;
  /** Uncompressed bytes per position of the `hidden` column (2 · layers · width; 0 without it). */
  hidden_bytes_per_position: number;
  execution_provider: string;
  seconds: number;
  /** Positions computed by this call per second of the compute loop (0 when nothing was left to do). */
  tokens_per_s: number;
  /** CPU time of this process (all threads: onnxruntime's, the writer's) during the compute loop. */
  cpu_seconds: number;
  /** Seconds of the compute loop spent in teacher forwards; the rest is host work on the main thread. */
  forward_seconds: number;
  /** Seconds the writer thread spent packing, compressing and syncing shards (overlaps the forwards). */
  write_seconds: number;
  /** True when manifest.json was written (single worker), false for one of N workers. */
  complete: boolean;
  /** Stopped by SIGINT/SIGTERM: the listed shards are kept, a re-run continues (CLI exit code 130). */
  interrupted: boolean;
}

/** The manifest fields fixed by the inputs; resume and merge compare them. */
function identity(cfg: PrecomputeConfig, inp: PrecomputeInputs, layout: WriteShardMeta, hidden?: HiddenInfo, spans?: SpanInfo): LogitManifest {
  return {
    ...(hidden ? { hidden } : {}),
    ...(spans ? { spans } : {}),
    ...(inp.windows.meta.augmentation ? { augmentation: inp.windows.meta.augmentation } : {}),
    format: 'kd-logits', version: 1,
    teacher: {
      path: cfg.teacher, sha256: inp.teacherSha256, dtype: teacherDtypeOf(inp.teacherBytes, cfg.teacher), execution_provider: 'pending', input_names: [], output_names: ['logits'],
      tokenizer_sha256: inp.teacherTokenizer?.sha256 ?? null,
    },
    tokenizer: { sha256: inp.tokenizer.sha256, vocab_size: inp.teacherVocab, real_vocab_size: inp.tokenizer.vocabSize },
    windows: { source: join(cfg.prep, 'windows.json'), sha256: inp.windows.meta.splits.train.sha256, validation_sha256: inp.validationSha256, bos: inp.windows.meta.bos.mode },
    seq_len: inp.windows.seqLen, k: slotsOf(cfg), mode: cfg.mode, temperatures: cfg.temperatures,
    ...(cfg.mode === 'sampled' ? { sampling: { samples: cfg.samples, temperature: cfg.sampling_temperature, seed: cfg.sampling_seed, uniforms: UNIFORMS_KIND } } : {}),
    encoding: { ids: layout.idDtype, values: layout.valueDtype, layout: layout.layout ?? SHARD_LAYOUT, codec: layout.codec, ...(layout.valueStep !== undefined ? { value_step: layout.valueStep } : {}) },
    plan: planInfo(inp.rows, cfg.rows_per_shard, cfg.batch_size),
    shards: [], totals: { rows: 0, positions: 0, bytes: 0 }, tool_version: TOOL_VERSION, created_at: '',
  };
}

/** The layout `auto` stands for: compact in sampled mode, packed in topk mode. */
function layoutName(cfg: PrecomputeConfig): 'packed' | 'compact' | 'lists' {
  return cfg.layout === 'auto' ? (cfg.mode === 'sampled' ? 'compact' : 'packed') : cfg.layout;
}

/** Slots per position: k, or the number of draws in sampled mode. */
function slotsOf(cfg: PrecomputeConfig): number {
  return cfg.mode === 'sampled' ? cfg.samples : cfg.k;
}

/** The draws' settings for the teacher loop (sampled mode only). */
function samplingOf(cfg: PrecomputeConfig): SamplingRows | undefined {
  return cfg.mode === 'sampled' ? { samples: cfg.samples, seed: cfg.sampling_seed } : undefined;
}

/**
 * The settings are valid together, checked before any input is read: no value_step outside the
 * compact layout, no sampling key in topk mode, no explicit k in sampled mode, τg among the stored temperatures, and no hidden_outputs /
 * hidden_dim without hidden_layers. Each error names the flag that set the key (`--k`), else
 * `<source>: <key>`.
 * @throws Error "--samples is for mode 'sampled' (add --mode sampled, or drop it)" and the like.
 */
export function checkPrecomputeConflicts(cfg: PrecomputeConfig, partial: Record<string, unknown>, source: string): void {
  const by = (key: string) => blame(partial, key, source);
  if (partial.value_step !== undefined && layoutName(cfg) !== 'compact') throw new Error(`${by('value_step')} is for layout 'compact' (add --layout compact, or drop it)`);
  if (cfg.mode === 'topk') {
    for (const key of ['samples', 'sampling_temperature', 'sampling_seed']) {
      if (partial[key] !== undefined) throw new Error(`${by(key)} is for mode 'sampled' (add --mode sampled, or drop it)`);
    }
  } else {
    if (partial.k !== undefined) throw new Error(`${by('k')} is for mode 'topk'; mode 'sampled' stores --samples draws per position`);
    if (!cfg.temperatures.includes(cfg.sampling_temperature)) {
      // Blame the side a flag set (the other is the file's or the default); --sampling-temperature when both.
      const origins = flagOrigins(partial);
      throw new Error(origins.temperatures && !origins.sampling_temperature
        ? `--temperatures [${cfg.temperatures}] must include sampling_temperature ${cfg.sampling_temperature} (its log_z weights the draws)`
        : `${by('sampling_temperature')} ${cfg.sampling_temperature} must be one of temperatures [${cfg.temperatures}] (its log_z weights the draws)`);
    }
  }
  const orphan = cfg.hidden_layers.length > 0 ? undefined : cfg.hidden_outputs.length > 0 ? 'hidden_outputs' : cfg.hidden_dim > 0 ? 'hidden_dim' : undefined;
  if (orphan) throw new Error(`${by(orphan)} needs hidden_layers (--hidden-layers): it names or projects the stored hidden states`);
}

/** Runs precompute; see the module comment. */
export async function run(partial: Record<string, unknown>, source = 'precompute config'): Promise<PrecomputeSummary> {
  const started = performance.now();
  const cfg = resolveConfig(PRECOMPUTE_DEFAULTS, CHECKS, partial, source);
  if (cfg.spans && cfg.layout === 'lists') throw new Error(`${blame(partial, 'spans', source)}: byte spans are stored in the packed and compact layouts, not in --layout lists`);
  checkPrecomputeConflicts(cfg, partial, source);
  const worker = resolveWorker(cfg.shard_index, cfg.num_shards);
  const inp = await loadPrecomputeInputs(cfg, blame(partial, 'k', source));
  if (!inp.teacherTokenizer && !cfg.quiet) {
    process.stderr.write(`kd: warning: ${cfg.teacher}: no tokenizer.json beside it and no ${TOKENIZER_SHA256_KEY} in its metadata; cannot check that ${inp.tokenizer.path} is the teacher's tokenizer\n`);
  }
  const topk = cfg.mode === 'sampled'
    ? addSampledOutputs(inp.teacherBytes, { samples: cfg.samples, samplingTemperature: cfg.sampling_temperature, temperatures: cfg.temperatures, source: cfg.teacher })
    : addTopKOutputs(inp.teacherBytes, { k: cfg.k, temperatures: cfg.temperatures, source: cfg.teacher });
  const { graph, hidden } = withHiddenStates(cfg, inp.teacherBytes, topk);
  const session = inp.vocabDeclared ? undefined : await measureVocab(cfg, inp, graph); // before any output exists
  const L = inp.windows.seqLen;
  const spans = cfg.spans ? spanPlan(inp, source) : undefined;
  const layout: WriteShardMeta = {
    seqLen: L, k: slotsOf(cfg), numTemps: cfg.temperatures.length, idDtype: idDtypeFor(inp.tokenizer.vocabSize), valueDtype: 'float16', codec: cfg.codec === 'gzip' ? 'GZIP' : 'BROTLI',
    ...(layoutName(cfg) === 'compact' ? { layout: 'compact', valueStep: cfg.value_step, errorTemperature: cfg.temperatures[0] } : cfg.layout === 'lists' ? { layout: 'lists' } : {}),
    ...(hidden ? { hidden: { layers: hidden.layers.length, width: hidden.width } } : {}),
    ...(spans ? { spans: spans.info.dtype } : {}),
  };
  const opened = await DatasetOutput.open(cfg.out, identity(cfg, inp, layout, hidden, spans?.info), planShards(inp.rows, cfg.rows_per_shard), { index: worker.index, count: worker.count }, cfg.overwrite)
    .catch(async (e: unknown) => { await session?.session.release(); throw e; });
  const { out, todo } = opened;
  if (spans) copyFileDurable(inp.tokenizer.path, join(cfg.out, SPAN_TOKENIZER_FILE)); // the dataset reads its text back without the prep
  if (todo.length === 0) await session?.session.release(); // nothing to compute: the measuring session is not needed
  const reused = out.shardCount, reusedRows = out.progress().totals.rows;
  const say = (line: string) => { if (!cfg.quiet) process.stderr.write(line + '\n'); };
  if (worker.count > 1) say(`precompute: worker ${worker.index} of ${worker.count} (from ${worker.source})`);
  if (reused > 0) say(`precompute: resuming: ${reused} shard(s) already written and verified, ${todo.length} to do`);
  const controller = new AbortController();
  const stopSignals = abortOnSignals(controller, 'precompute stops once the shard being written is listed; re-run to resume');
  let loop: LoopResult = { seconds: 0, cpuSeconds: 0, forward: 0, write: 0 };
  try {
    if (todo.length > 0) loop = await teacherLoop(cfg, inp, graph, out, todo, layout, controller.signal, session, spans?.rows);
  } catch (e) {
    out.release();
    throw e;
  } finally {
    stopSignals();
  }
  const interrupted = controller.signal.aborted;
  const m = interrupted ? out.progress() : await out.finish();
  out.release(); // finish did, unless interrupted
  const computed = m.totals.rows - reusedRows;
  const summary: PrecomputeSummary = {
    out: cfg.out, worker: { index: worker.index, count: worker.count }, windows: m.totals.rows, positions: m.totals.positions,
    shards: m.shards.length, reused_shards: reused, computed_windows: computed, bytes: m.totals.bytes,
    bytes_per_position: m.totals.positions > 0 ? m.totals.bytes / m.totals.positions : 0,
    hidden_bytes_per_position: hidden ? 2 * hidden.layers.length * hidden.width : 0, execution_provider: m.teacher.execution_provider,
    seconds: (performance.now() - started) / 1000, tokens_per_s: computed > 0 ? (computed * L) / loop.seconds : 0, cpu_seconds: loop.cpuSeconds,
    forward_seconds: loop.forward, write_seconds: loop.write, complete: !interrupted && worker.count === 1, interrupted,
  };
  if (!cfg.quiet) process.stderr.write(formatSummary(summary));
  return summary;
}

/**
 * The manifest's `spans` record and the offsets of the covered windows, for `--spans`
 * (lib/tokenizer/align.ts defines the offsets; one pass over the windows).
 * @throws Error when the prep has token noise (the teacher reads noisy ids; the spans would
 *   describe other text) or BOS mode `window` (windows are not cut from one stream), or when the
 *   covered text exceeds 4 GiB
 */
function spanPlan(inp: PrecomputeInputs, source: string): { info: SpanInfo; rows: SpanRows } {
  if (inp.noise) throw new Error(`${source}: --spans with a prep that has token noise is not supported (the teacher reads noisy ids, the spans would describe other text); precompute spans on a prep without --token-noise`);
  const meta = inp.windows.meta;
  if (meta.bos.mode === 'window') throw new Error(`${source}: --spans needs windows cut from one stream (BOS mode none or document); this prep puts a BOS at every window (bos window)`);
  const byteLength = tokenByteLengths(inp.tokenizer.path);
  const { starts, end } = windowStarts(inp.windows.ids, inp.rows, inp.windows.seqLen, byteLength);
  if (end > MAX_SPAN_OFFSET) throw new Error(`${source}: --spans: the ${inp.rows} windows cover ${end} bytes of text, more than the 4 GiB uint32 byte offsets can index; precompute fewer windows (--max-windows)`);
  const info: SpanInfo = {
    unit: SPAN_UNIT, dtype: end <= 0xffff ? 'uint16' : 'uint32', tokenizer: SPAN_TOKENIZER_FILE, eos_id: inp.tokenizer.eosId, bos_id: meta.bos.id ?? null,
    text_bytes: end, train_documents: meta.splits.train.documents, train_bytes: meta.splits.train.bytes,
  };
  return { info, rows: { byteLength, starts } };
}

/**
 * The top-k graph plus the `hidden` output when `hidden_layers` asks for it (lib/onnx/hidden-graph.ts),
 * and the manifest's record of it.
 * @throws Error "<teacher>: no tensor for hidden layer 5 (looked for '…'); …" and the like, before anything is written.
 */
function withHiddenStates(cfg: PrecomputeConfig, teacher: Uint8Array, topk: Uint8Array): { graph: Uint8Array; hidden?: HiddenInfo } {
  if (cfg.hidden_layers.length === 0) return { graph: topk }; // hidden_outputs / hidden_dim alone: refused up front
  const names = cfg.hidden_outputs.length > 0 ? cfg.hidden_outputs : undefined;
  const tensors = findHiddenTensors(teacher, cfg.hidden_layers, cfg.teacher, names);
  const D = hiddenSizeOf(teacher);
  if (D === undefined && cfg.hidden_dim > 0) throw new Error(`${cfg.teacher}: cannot read the teacher's hidden size (no float embedding table gathers input_ids) for --hidden-dim`);
  if (D === undefined) throw new Error(`${cfg.teacher}: cannot read the teacher's hidden size (no float embedding table gathers input_ids) to record the stored width`);
  const dim = cfg.hidden_dim;
  const projection = dim > 0 ? { dim, matrix: Float32Array.from(randomProjection(D, dim, cfg.hidden_seed)) } : undefined;
  const graph = addHiddenOutput(topk, { layers: cfg.hidden_layers, tensorNames: tensors, projection, source: cfg.teacher });
  return {
    graph,
    hidden: {
      layers: cfg.hidden_layers, width: dim > 0 ? dim : D, dtype: 'float16', tensors,
      projection: dim > 0 ? { kind: PROJECTION_KIND, seed: cfg.hidden_seed, rows: D, dim } : null,
    },
  };
}

/**
 * For a teacher whose logits width is symbolic: opens the session and measures the real width on
 * the first window, which replaces the embedding rows in `inp.teacherVocab`. @returns the open session.
 * @throws Error (session released) when the teacher's logits are narrower than the tokenizer.
 */
async function measureVocab(cfg: PrecomputeConfig, inp: PrecomputeInputs, graph: Uint8Array): Promise<OnnxSession> {
  const session = await openDerivedSession(cfg.teacher, graph, { device: cfg.device, quiet: cfg.quiet });
  try {
    const width = await measureLogitsWidth(session, inp.windows, 0, samplingOf(cfg));
    if (width < inp.tokenizer.vocabSize) {
      throw new Error(`${cfg.teacher}: teacher logits are ${width} wide (measured on the first window; the graph declares the dim symbolically), fewer than the tokenizer's ${inp.tokenizer.vocabSize} tokens (${inp.tokenizer.path})`);
    }
    inp.teacherVocab = width;
    return session;
  } catch (e) {
    await session.session.release();
    throw e;
  }
}

/** Wall and CPU seconds of the compute loop, and its time in forwards and (writer thread) writes. */
interface LoopResult { seconds: number; cpuSeconds: number; forward: number; write: number }

/**
 * Opens the teacher and computes the shards `todo` with a writer thread, showing progress. An
 * abort of `signal` ends the loop early without an error (the caller sees `signal.aborted`).
 */
async function teacherLoop(cfg: PrecomputeConfig, inp: PrecomputeInputs, graph: Uint8Array, out: DatasetOutput,
  todo: ShardSlice[], layout: WriteShardMeta, signal: AbortSignal, opened?: OnnxSession, spans?: SpanRows): Promise<LoopResult> {
  const sink = threadShardSink(); // starts loading while the session is created
  try {
    const session = opened ?? await openDerivedSession(cfg.teacher, graph, { device: cfg.device, quiet: cfg.quiet }); // finds external weight files
    out.setTeacherRun(session.executionProvider, session.inputNames);
    const L = inp.windows.seqLen, timing = { forward: 0, write: 0 };
    const progress = createProgress('precompute', todo.reduce((s, x) => s + x.rows, 0) * L, 'tokens', cfg.quiet);
    await sink.ready();
    const start = performance.now(), cpuStart = process.cpuUsage();
    try {
      await computeShards(session, inp.windows, todo, out, {
        batchSize: cfg.batch_size, realVocab: inp.tokenizer.vocabSize, tokenizer: inp.tokenizer.path, vocabWidth: inp.teacherVocab,
        layout, sink, timing, signal, noise: inp.noise, sampling: samplingOf(cfg), spans, onWindows: (n) => progress.update(n * L),
      });
    } catch (e) {
      if (!signal.aborted) throw e;
    } finally {
      progress.stop();
      await session.session.release();
    }
    const cpu = process.cpuUsage(cpuStart);
    return { seconds: (performance.now() - start) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, ...timing };
  } finally {
    await sink.close();
  }
}

function formatSummary(s: PrecomputeSummary): string {
  const who = s.worker.count > 1 ? ` (worker ${s.worker.index} of ${s.worker.count})` : '';
  const reused = s.reused_shards > 0 ? `, ${s.reused_shards} kept from an earlier run` : '';
  const next = s.interrupted ? `  interrupted: ${s.shards} shard(s) listed; run the same command again to continue`
    : s.complete ? '' : `  worker manifest written; when every worker is done: kd merge ${s.out}`;
  return [
    `precompute${who}: ${s.computed_windows} windows computed in ${s.seconds.toFixed(1)} s, ${s.tokens_per_s.toFixed(0)} tokens/s on ${s.execution_provider}`,
    `  ${s.shards} shard(s)${reused}: ${s.windows} windows, ${s.positions.toLocaleString('en-US')} positions, ${(s.bytes / 2 ** 20).toFixed(1)} MiB, ${s.bytes_per_position.toFixed(1)} bytes/position → ${s.out}`,
    ...(s.hidden_bytes_per_position > 0 ? [`  hidden states: ${s.hidden_bytes_per_position} bytes/position before compression`] : []),
    ...(next ? [next] : []), '',
  ].join('\n');
}

type Args = Record<string, unknown> & { config?: string; json?: boolean };

export const command: CommandModule<object, Args> = {
  command: 'precompute',
  describe: 'Run the ONNX teacher over the training windows and store its top-k soft labels as Parquet shards',
  builder: (y: Argv<object>) => y
    .option('config', { type: 'string', describe: 'JSON file of config keys (snake_case); flags override it' })
    .option('teacher', { type: 'string', describe: `teacher .onnx (default ${PRECOMPUTE_DEFAULTS.teacher})` })
    .option('prep', { type: 'string', describe: `prep output directory (default ${PRECOMPUTE_DEFAULTS.prep})` })
    .option('out', { type: 'string', describe: `logit dataset directory (default ${PRECOMPUTE_DEFAULTS.out})` })
    .option('k', { type: 'number', describe: `ids stored per position, mode topk (default ${PRECOMPUTE_DEFAULTS.k})` })
    .option('mode', { choices: ['topk', 'sampled'], describe: 'topk = the k largest logits; sampled = --samples draws from the teacher per position, for unbiased random-sampling KD (default topk)' })
    .option('samples', { type: 'number', describe: `draws per position in sampled mode (default ${PRECOMPUTE_DEFAULTS.samples})` })
    .option('sampling-temperature', { type: 'number', describe: 'τg of the draws, one of --temperatures (default 1)' })
    .option('sampling-seed', { type: 'number', describe: 'seed of the draws; with the window id it fixes every draw (default 0)' })
    .option('temperatures', { type: 'array', coerce: numberListFlag('temperatures'), describe: `temperatures whose log_z is stored (default ${PRECOMPUTE_DEFAULTS.temperatures.join(' ')})` })
    .option('batch-size', { type: 'number', describe: `windows per teacher forward (default ${PRECOMPUTE_DEFAULTS.batch_size})` })
    .option('rows-per-shard', { type: 'number', describe: `windows per shard file (default ${PRECOMPUTE_DEFAULTS.rows_per_shard})` })
    .option('max-windows', { type: 'number', describe: 'only the first N training windows, 0 = all (default 0)' })
    .option('device', { choices: ['auto', 'cpu', 'cuda'], describe: 'execution provider: auto = CUDA when it loads, else CPU (default auto)' })
    .option('codec', { choices: ['brotli', 'gzip'], describe: 'Parquet page codec: brotli (least CPU) or gzip (for readers without brotli, e.g. Spark) (default brotli)' })
    .option('layout', { choices: ['auto', 'packed', 'compact', 'lists'], describe: 'shard layout: packed = exact fp16 values; compact = varint id gaps + 8-bit value codes, lossy, about half the bytes; lists = exact, typed Parquet lists that any Parquet reader takes as they are; auto = compact in sampled mode, else packed (default auto)' })
    .option('value-step', { type: 'number', describe: 'layout compact: step δ of the value codes in nats, a power of two (default 0.0625)' })
    .option('shard-index', { type: 'number', describe: 'this worker\'s index i in a split run: it writes shards j with j mod N = i (default: SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, else 0)' })
    .option('num-shards', { type: 'number', describe: 'number of workers N (default: SLURM_ARRAY_TASK_COUNT or KD_NUM_SHARDS, else 1)' })
    .option('hidden-layers', { type: 'array', coerce: intListFlag('hidden-layers'), describe: 'also store the teacher\'s hidden states at these HF output_hidden_states indices (0 = embeddings, i = after decoder layer i), e.g. 2,4 (default none)' })
    .option('hidden-outputs', { type: 'array', coerce: stringListFlag, describe: 'graph tensor names of those states, one per layer, for graphs whose names kd does not recognise' })
    .option('hidden-dim', { type: 'number', describe: 'store h·P with a fixed seeded Gaussian projection P [hidden_size, d], 0 = none (default 0)' })
    .option('hidden-seed', { type: 'number', describe: 'seed of that projection (default 0)' })
    .option('spans', { type: 'boolean', describe: 'also store each position\'s byte span in the train text (column byte_spans) and the tokenizer.json, for a student with another tokenizer (kd train --loss uld)' })
    .option('overwrite', { type: 'boolean', describe: 'delete an existing dataset in --out instead of resuming it (single worker)' })
    .option('quiet', { type: 'boolean', describe: 'no progress bar, summary or warnings' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' }) as Argv<Args>,
  handler: async (argv) => {
    const fromFile = argv.config ? readConfigFile(argv.config) : {};
    const summary = await run({ ...fromFile, ...flagsToConfig(argv, Object.keys(CHECKS)) }, argv.config ?? 'precompute config');
    if (argv.json) process.stdout.write(JSON.stringify(summary) + '\n');
    if (summary.interrupted) process.exitCode = 130;
  },
};

type MergeArgs = { dirs: string[]; out?: string; json?: boolean; quiet?: boolean };

/** `kd merge DIR... [--out DIR]`: joins the worker manifests of a split precompute run. */
export const mergeCommand: CommandModule<object, MergeArgs> = {
  command: 'merge <dirs..>',
  describe: 'Join the per-worker manifests of a split precompute run into manifest.json (checks inputs match and no shard is missing or listed twice)',
  builder: (y: Argv<object>) => y
    .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'directories holding manifest.worker-*.json and their shards' })
    .option('out', { type: 'string', describe: 'output directory (default: the first DIR); shards from other DIRs are hard-linked or copied into it' })
    .option('quiet', { type: 'boolean', describe: 'no summary' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' }) as unknown as Argv<MergeArgs>,
  handler: async (argv) => {
    const r = await mergeDatasets(argv.dirs, argv.out ?? argv.dirs[0]);
    const m = r.manifest;
    if (!argv.quiet) process.stderr.write(`merge: ${r.sources.length} manifest(s) → ${join(r.out, 'manifest.json')}: ${m.shards.length} shards, ${m.totals.rows} windows, ${(m.totals.bytes / 2 ** 20).toFixed(1)} MiB${r.placed ? `, ${r.placed} shard(s) linked or copied in` : ''}\n`);
    if (argv.json) process.stdout.write(JSON.stringify({ out: r.out, sources: r.sources, placed: r.placed, shards: m.shards.length, totals: m.totals }) + '\n');
  },
};
