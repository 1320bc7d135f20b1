#!/usr/bin/env -S npx tsx
/**
 * make techniques: the seed article's optimisation techniques — data augmentation (§5.3),
 * hidden-state distillation (§5.4), quantization-aware training (§5.5), and the next steps of §8 —
 * ensemble distillation from two teachers, the student → teacher cascade — each trained against the
 * same baseline and plain distilled student, at the same steps (128; the demo trains 192) and tokens, from
 * the same cached logits plus what the technique adds; every student is scored by kd eval on the
 * same clean validation documents. Writes runs/techniques/report.{md,json}.
 *
 * Every step is a `kd` stage; up to two run at a time (a TF.js wasm process uses one core).
 * KD_TECHNIQUES_REUSE=1 keeps the steps a previous run finished (their `.done.json`), for reruns.
 */
import { $, fs } from 'zx';
import { pool, stepRunner, stdoutJson } from '../lib/cli/pipeline-steps.js';
import { join } from 'node:path';
import { gapClosed, techniquesMarkdown, type TechniqueEntry } from '../lib/metrics/techniques.js';
import type { CascadePoint } from '../lib/metrics/cascade.js';

/** What `kd cascade --json` prints. */
interface CascadeReport { student: { flops_per_token: number }; teacher: { flops_per_token: number }; points: CascadePoint[] }

$.verbose = false;
const kd = ['node', 'pipelines/kd.js'];
const root = 'runs/techniques';
const reuse = process.env.KD_TECHNIQUES_REUSE === '1';
const started = Date.now();
/** Steps of every student (the demo trains 192; fewer keep `make techniques` within 45 minutes). */
const STEPS = 128;
const QAT_START = STEPS / 2;
if (!reuse) await fs.remove(root);
await fs.mkdirp(root);

const step = stepRunner(root, 'techniques', reuse);


const json = stdoutJson;

// Data: the clean prep, and one prep per augmentation (the teacher then sees what the student sees).
const prep = {
  clean: await step('prep', () => $`${kd} prep --out runs/techniques/prep --tokenizer data/teacher/tokenizer.json --overwrite --quiet`),
  crop: await step('prep-crop', () => $`${kd} prep --out runs/techniques/prep-crop --tokenizer data/teacher/tokenizer.json --crop-rate 0.5 --crop-min-tokens 64 --crop-max-tokens 512 --overwrite --quiet`),
  noise: await step('prep-noise', () => $`${kd} prep --out runs/techniques/prep-noise --tokenizer data/teacher/tokenizer.json --token-noise 0.1 --overwrite --quiet`),
  unigram: await step('prep-noise-unigram', () => $`${kd} prep --out runs/techniques/prep-noise-unigram --tokenizer data/teacher/tokenizer.json --token-noise 0.1 --token-noise-distribution unigram --overwrite --quiet`),
  mix: await step('prep-mix', () => $`${kd} prep --out runs/techniques/prep-mix --tokenizer data/teacher/tokenizer.json --corpus brown/informative:0.5 --corpus brown/imaginative:0.5 --mix-by tokens --overwrite --quiet`),
};
await step('teacher-export', () => $`${kd} teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite`);

// Soft labels (onnxruntime uses both cores: one at a time).
const logits = {
  plain: await step('precompute', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep --out runs/techniques/logits --quiet`),
  hidden: await step('precompute-hidden', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep --out runs/techniques/logits-hidden --hidden-layers 2 --quiet`),
  hiddenProjected: await step('precompute-hidden-projected', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep --out runs/techniques/logits-hidden-64 --hidden-layers 2 --hidden-dim 64 --quiet`),
  crop: await step('precompute-crop', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep-crop --out runs/techniques/logits-crop --quiet`),
  noise: await step('precompute-noise', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep-noise --out runs/techniques/logits-noise --quiet`),
  unigram: await step('precompute-noise-unigram', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep-noise-unigram --out runs/techniques/logits-noise-unigram --quiet`),
  mix: await step('precompute-mix', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep-mix --out runs/techniques/logits-mix --quiet`),
};
// §8.1: a second teacher (data/teacher-b, qwen2) over the same windows, for the ensemble.
await step('teacher-b-export', () => $`${kd} teacher export --checkpoint data/teacher-b --out runs/teacher-b/model.onnx --overwrite`);
const logitsB = await step('precompute-teacher-b', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/techniques/prep --teacher runs/teacher-b/model.onnx --out runs/techniques/logits-b --quiet`);

// Students: the same config, steps and tokens (STEPS × 16 × 128; epochs only bound a smaller cropped set).
const trainJobs: Record<string, () => Promise<{ seconds: number; stdout: string }>> = {
  'baseline': () => step('train-baseline', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits --alpha 0 --max-steps ${STEPS} --epochs 100 --out runs/techniques/baseline --overwrite --quiet`),
  'distilled': () => step('train-distilled', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits --max-steps ${STEPS} --epochs 100 --out runs/techniques/distilled --overwrite --quiet`),
  'crop': () => step('train-crop', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep-crop --data runs/techniques/logits-crop --max-steps ${STEPS} --epochs 100 --out runs/techniques/crop --overwrite --quiet`),
  'noise': () => step('train-noise', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep-noise --data runs/techniques/logits-noise --max-steps ${STEPS} --epochs 100 --out runs/techniques/token-noise --overwrite --quiet`),
  'noise-unigram': () => step('train-noise-unigram', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep-noise-unigram --data runs/techniques/logits-noise-unigram --max-steps ${STEPS} --epochs 100 --out runs/techniques/token-noise-unigram --overwrite --quiet`),
  'mix': () => step('train-mix', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep-mix --data runs/techniques/logits-mix --max-steps ${STEPS} --epochs 100 --out runs/techniques/mix --overwrite --quiet`),
  'hidden': () => step('train-hidden', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits-hidden --feature-layers 1:2 --max-steps ${STEPS} --epochs 100 --out runs/techniques/hidden --overwrite --quiet`),
  'hidden-cosine': () => step('train-hidden-cosine', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits-hidden --feature-layers 1:2 --feature-loss cosine --feature-beta 1 --max-steps ${STEPS} --epochs 100 --out runs/techniques/hidden-cosine --overwrite --quiet`),
  'hidden-projected': () => step('train-hidden-projected', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits-hidden-64 --feature-layers 1:2 --max-steps ${STEPS} --epochs 100 --out runs/techniques/hidden-64 --overwrite --quiet`),
  'qat-int8': () => step('train-qat-int8', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits --qat int8 --qat-start ${QAT_START} --max-steps ${STEPS} --epochs 100 --out runs/techniques/qat-int8 --overwrite --quiet`),
  'teacher-b': () => step('train-teacher-b', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits-b --max-steps ${STEPS} --epochs 100 --out runs/techniques/teacher-b-student --overwrite --quiet`),
  'ensemble': () => step('train-ensemble', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits --ensemble runs/techniques/logits-b:0.5 --max-steps ${STEPS} --epochs 100 --out runs/techniques/ensemble --overwrite --quiet`),
  'qat-int4': () => step('train-qat-int4', () => $`${kd} train --config pipelines/configs/student.json --prep runs/techniques/prep --data runs/techniques/logits --qat int4 --qat-start ${QAT_START} --max-steps ${STEPS} --epochs 100 --out runs/techniques/qat-int4 --overwrite --quiet`),
};
const trainNames = Object.keys(trainJobs);
const trained = await pool(trainNames.map((n) => trainJobs[n]));
const trainSeconds = (name: string) => trained[trainNames.indexOf(name)].seconds;

// Post-training quantization of the plain student and export of the QAT students.
const exports = {
  ptq8: await step('export-ptq-int8', () => $`${kd} export --checkpoint runs/techniques/distilled --out runs/techniques/export/ptq-int8 --dtype int8 --overwrite`),
  ptq4: await step('export-ptq-int4', () => $`${kd} export --checkpoint runs/techniques/distilled --out runs/techniques/export/ptq-int4 --dtype int4 --overwrite`),
  qat8: await step('export-qat-int8', () => $`${kd} export --checkpoint runs/techniques/qat-int8 --out runs/techniques/export/qat-int8 --dtype int8 --overwrite`),
  qat4: await step('export-qat-int4', () => $`${kd} export --checkpoint runs/techniques/qat-int4 --out runs/techniques/export/qat-int4 --dtype int4 --overwrite`),
  fp32: await step('export-fp32', () => $`${kd} export --checkpoint runs/techniques/distilled --out runs/techniques/export/fp32 --overwrite`),
};

/** kd eval of one student (checkpoint or .onnx) into eval/<name>. */
const evalJob = (name: string, model: string) => () => {
  const out = join(root, 'eval', name);
  return step(`eval-${name}`, () => $`${kd} eval --prep runs/techniques/prep --distilled ${model} --out ${out} --overwrite --quiet --json`);
};

// Evaluation: every model on the clean prep's validation documents (same windows, same stride).
const evals = await pool([
  () => step('eval-reference', () => $`${kd} eval --prep runs/techniques/prep --teacher runs/teacher/model.onnx --baseline runs/techniques/baseline --distilled runs/techniques/distilled --out runs/techniques/eval/reference --overwrite --quiet --json`),
  ...['crop', 'token-noise', 'token-noise-unigram', 'mix', 'hidden', 'hidden-cosine', 'hidden-64'].map((d) => evalJob(d, join(root, d))),
  ...['fp32', 'ptq-int8', 'qat-int8', 'ptq-int4', 'qat-int4'].map((d) => evalJob(d, join(root, 'export', d, 'onnx', 'model.onnx'))),
  () => step('eval-teacher-b', () => $`${kd} eval --prep runs/techniques/prep --teacher runs/teacher-b/model.onnx --distilled runs/techniques/teacher-b-student --out runs/techniques/eval/teacher-b --overwrite --quiet --json`),
  evalJob('ensemble', join(root, 'ensemble')),
]);
// §8.3: the exported distilled student answers where confident, teacher A elsewhere.
const cascade = await step('cascade', () => $`${kd} cascade --student runs/techniques/export/fp32/onnx/model.onnx --teacher runs/teacher/model.onnx --prep runs/techniques/prep --out runs/techniques/cascade --device cpu --overwrite --quiet --json`);
const reference = json(evals[0].stdout);
const ppl = (i: number) => json(evals[i].stdout).distilled as { ppl: number; tokens_per_s: number; weights_bytes: number };
const teacherPpl = reference.teacher.ppl as number, baselinePpl = reference.baseline.ppl as number;

const bpp = async (dir: string) => json((await $`${kd} inspect ${dir} --json`).stdout).bytes_per_position as number;
const bytes = { plain: await bpp('runs/techniques/logits'), hidden: await bpp('runs/techniques/logits-hidden'), hidden64: await bpp('runs/techniques/logits-hidden-64'), crop: await bpp('runs/techniques/logits-crop'), noise: await bpp('runs/techniques/logits-noise'), unigram: await bpp('runs/techniques/logits-noise-unigram'), mix: await bpp('runs/techniques/logits-mix') };

const entry = (name: string, val_ppl: number, bytes_per_position: number, seconds: number, description: string, extra: Record<string, unknown> = {}): TechniqueEntry =>
  ({ name, val_ppl, gap_closed: gapClosed(val_ppl, baselinePpl, teacherPpl), bytes_per_position, seconds, description, ...extra });
const q = (i: number) => ({ onnx_bytes: ppl(i).weights_bytes, tokens_per_s: ppl(i).tokens_per_s });
const entries: TechniqueEntry[] = [
  entry('baseline', baselinePpl, 0, trainSeconds('baseline'), 'CE only (α = 0)'),
  entry('distilled', reference.distilled.ppl, bytes.plain, trainSeconds('distilled'), 'top-32 forward KL, α = 0.9, τ = 1'),
  entry('crop', ppl(1).ppl, bytes.crop, prep.crop.seconds + logits.crop.seconds + trainSeconds('crop'), '§5.3: half the train documents cropped to 64–512 tokens'),
  entry('token_noise', ppl(2).ppl, bytes.noise, prep.noise.seconds + logits.noise.seconds + trainSeconds('noise'), '§5.3: 10 % of input positions replaced, uniform'),
  entry('token_noise_unigram', ppl(3).ppl, bytes.unigram, prep.unigram.seconds + logits.unigram.seconds + trainSeconds('noise-unigram'), '§5.3: 10 % of input positions replaced, unigram'),
  entry('mix', ppl(4).ppl, bytes.mix, prep.mix.seconds + logits.mix.seconds + trainSeconds('mix'), '§5.3: Brown informative 0.5 + imaginative 0.5 by tokens'),
  entry('hidden_mse', ppl(5).ppl, bytes.hidden, logits.hidden.seconds + trainSeconds('hidden'), '§5.4: + 0.01·MSE(W·h_s1, h_t2)'),
  entry('hidden_cosine', ppl(6).ppl, bytes.hidden, logits.hidden.seconds + trainSeconds('hidden-cosine'), '§5.4: + 1·(1 − cos(W·h_s1, h_t2))'),
  entry('hidden_mse_projected_64', ppl(7).ppl, bytes.hidden64, logits.hiddenProjected.seconds + trainSeconds('hidden-projected'), '§5.4: as hidden_mse, teacher state projected to 64'),
  entry('export_fp32', ppl(8).ppl, bytes.plain, exports.fp32.seconds, 'the distilled student exported fp32', q(8)),
  entry('ptq_int8', ppl(9).ppl, bytes.plain, exports.ptq8.seconds, '§5.5: distilled, then int8 per channel (QDQ)', q(9)),
  entry('qat_int8', ppl(10).ppl, bytes.plain, trainSeconds('qat-int8') + exports.qat8.seconds, `§5.5: int8 fake-quant from step ${QAT_START}, exported int8`, q(10)),
  entry('ptq_int4', ppl(11).ppl, bytes.plain, exports.ptq4.seconds, '§5.5: distilled, then int4 blocks of 32 (MatMulNBits)', q(11)),
  entry('qat_int4', ppl(12).ppl, bytes.plain, trainSeconds('qat-int4') + exports.qat4.seconds, `§5.5: int4 fake-quant from step ${QAT_START}, exported int4`, q(12)),
  entry('teacher_b_student', ppl(13).ppl, bytes.plain, logitsB.seconds + trainSeconds('teacher-b'), `§8.1: distilled from teacher B alone (qwen2, ppl ${json(evals[13].stdout).teacher.ppl.toFixed(2)})`, { teacher_b_ppl: json(evals[13].stdout).teacher.ppl }),
  entry('ensemble', ppl(14).ppl, 2 * bytes.plain, logitsB.seconds + trainSeconds('ensemble'), '§8.1: 0.5·teacher A + 0.5·teacher B, tails spread uniformly'),
  cascadeEntry(json(cascade.stdout), cascade.seconds),
];

/** The cascade's row: its entropy point closest to half the positions routed, and every curve point. */
function cascadeEntry(c: CascadeReport, seconds: number): TechniqueEntry {
  const half = c.points.filter((p) => p.confidence === 'entropy').reduce((a, b) => (Math.abs(b.teacher_share - 0.5) < Math.abs(a.teacher_share - 0.5) ? b : a));
  const mflops = (f: number) => (f / 1e6).toFixed(2);
  return entry('cascade', half.ppl, bytes.plain, seconds,
    `§8.3: entropy > ${half.threshold.toFixed(2)} nats → teacher A (${(100 * half.teacher_share).toFixed(0)} % of positions), ${mflops(half.flops_per_token)} vs ${mflops(c.teacher.flops_per_token)} MFLOPs/token`,
    { teacher_share: half.teacher_share, flops_per_token: half.flops_per_token, student_flops_per_token: c.student.flops_per_token, teacher_flops_per_token: c.teacher.flops_per_token, points: c.points });
}

const minutes = (Date.now() - started) / 60000;
const header = [
  '# Optimisation techniques on the demo (make techniques)', '',
  `Teacher ${teacherPpl.toFixed(2)}, baseline ${baselinePpl.toFixed(2)} validation perplexity; gap closed = ln(ppl_baseline / ppl) / ln(ppl_baseline / ppl_teacher).`,
  `Every student: ${STEPS} steps × 16 × 128 tokens, the same init and config (pipelines/configs/student.json); validation always on the clean documents.`,
  `Finished in ${minutes.toFixed(1)} min.`,
];
// make self-distill's rows (§8.2), when it has run, stay in the report.
const selfDistill = 'runs/self-distill/report.json';
if (await fs.pathExists(selfDistill)) entries.push(...(await fs.readJson(selfDistill)).entries);
const report = { teacher_ppl: teacherPpl, baseline_ppl: baselinePpl, steps: STEPS, minutes, entries };
await fs.outputFile(join(root, 'report.json'), JSON.stringify(report, null, 2) + '\n');
await fs.outputFile(join(root, 'report.md'), techniquesMarkdown(entries, header));
console.error(techniquesMarkdown(entries, header));
console.error(`techniques: done in ${minutes.toFixed(1)} min; report in ${root}/report.md`);
