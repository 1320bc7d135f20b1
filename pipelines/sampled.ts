#!/usr/bin/env -S npx tsx
/**
 * make sampled: random-sampling KD (Anshumann et al., ACL 2025) against top-k KD on the demo, at
 * (a) the same slots per position (n = k = 12) and (b) about the same bytes per position, plus the
 * compact codec's cost in perplexity (top-32 exact vs compact). Every student as in make techniques:
 * 128 steps × 16 × 128 tokens, same init and config; all scored by kd eval on the same validation
 * documents. Writes runs/sampled/report.{md,json}. KD_SAMPLED_REUSE=1 keeps finished steps.
 */
import { $, fs } from 'zx';
import { pool, stepRunner, stdoutJson } from '../lib/cli/pipeline-steps.js';
import { join } from 'node:path';
import { gapClosed, techniquesMarkdown, type TechniqueEntry } from '../lib/metrics/techniques.js';

$.verbose = false;
const kd = ['node', 'pipelines/kd.js'];
const root = 'runs/sampled';
const prep = join(root, 'prep');
const reuse = process.env.KD_SAMPLED_REUSE === '1';
const started = Date.now();
const STEPS = 128;
if (!reuse) await fs.remove(root);
await fs.mkdirp(root);

const step = stepRunner(root, 'sampled', reuse);

const json = stdoutJson;

await step('prep', () => $`${kd} prep --out runs/sampled/prep --tokenizer data/teacher/tokenizer.json --overwrite --quiet`);
await step('teacher-export', () => $`${kd} teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite`);

/**
 * The datasets: name → what it stores. Precompute runs one at a time (onnxruntime uses both cores).
 * The sampled ones name the config's other keys as flags: its k is for top-k mode (refused with --mode sampled).
 */
const datasets: Record<string, { what: string; run: () => Promise<{ stdout: string }> }> = {
  'topk-32': { what: 'top-32, exact fp16 (the demo default)', run: () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/sampled/prep --out runs/sampled/topk-32 --quiet --json` },
  'topk-12': { what: 'top-12, exact fp16', run: () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/sampled/prep --k 12 --out runs/sampled/topk-12 --quiet --json` },
  'topk-14': { what: 'top-14, exact fp16 (≈ the bytes of sampled n = 12)', run: () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/sampled/prep --k 14 --out runs/sampled/topk-14 --quiet --json` },
  'sampled-12': { what: 'n = 12 draws at τg = 1, exact fp16', run: () => $`${kd} precompute --teacher runs/teacher/model.onnx --prep runs/sampled/prep --max-windows 3072 --out runs/sampled/sampled-12 --mode sampled --samples 12 --layout packed --quiet --json` },
  'sampled-12-compact': { what: 'n = 12 draws at τg = 1, compact codec (δ = 1/16)', run: () => $`${kd} precompute --teacher runs/teacher/model.onnx --prep runs/sampled/prep --max-windows 3072 --out runs/sampled/sampled-12-compact --mode sampled --samples 12 --layout compact --quiet --json` },
  'topk-20-compact': { what: 'top-20, compact codec (≈ the bytes of compact sampled n = 12)', run: () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/sampled/prep --k 20 --out runs/sampled/topk-20-compact --layout compact --quiet --json` },
  'topk-32-compact': { what: 'top-32, compact codec (δ = 1/16)', run: () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/sampled/prep --out runs/sampled/topk-32-compact --layout compact --quiet --json` },
};
const precomputed: Record<string, { seconds: number; stdout: string }> = {};
for (const [name, d] of Object.entries(datasets)) precomputed[name] = await step(`precompute-${name}`, d.run);

/** kd train of one student from dataset `name` (α = 0.9, τ = 1, forward KL, tail mode: student.json). */
const train = (name: string) => () => {
  const data = join(root, name), out = join(root, 'students', name);
  return step(`train-${name}`, () => $`${kd} train --config pipelines/configs/student.json --prep runs/sampled/prep --data ${data} --max-steps ${STEPS} --epochs 100 --out ${out} --overwrite --quiet`);
};
const names = Object.keys(datasets);
const trained = await pool([
  () => step('train-baseline', () => $`${kd} train --config pipelines/configs/student.json --prep runs/sampled/prep --data runs/sampled/topk-32 --alpha 0 --max-steps ${STEPS} --epochs 100 --out runs/sampled/students/baseline --overwrite --quiet`),
  ...names.map(train),
]);

const reference = json((await step('eval-reference', () => $`${kd} eval --prep runs/sampled/prep --teacher runs/teacher/model.onnx --baseline runs/sampled/students/baseline --out runs/sampled/eval/reference --overwrite --quiet --json`)).stdout);
const evals = await pool(names.map((name) => () => {
  const student = join(root, 'students', name), out = join(root, 'eval', name);
  return step(`eval-${name}`, () => $`${kd} eval --prep runs/sampled/prep --distilled ${student} --out ${out} --overwrite --quiet --json`);
}));
const teacherPpl = reference.teacher.ppl as number, baselinePpl = reference.baseline.ppl as number;

const entries: TechniqueEntry[] = [{ name: 'baseline', val_ppl: baselinePpl, gap_closed: 0, bytes_per_position: 0, seconds: trained[0].seconds, description: 'CE only (α = 0)' }];
for (const [i, name] of names.entries()) {
  const data = join(root, name);
  const inspect = json((await $`${kd} inspect ${data} --json --quiet`).stdout);
  const ppl = json(evals[i].stdout).distilled.ppl as number;
  const extra = [
    inspect.sampling ? `${inspect.sampling.mean_distinct_ids.toFixed(2)} distinct ids` : '',
    inspect.codec_error ? `KL error ${inspect.codec_error.kl_mean.toExponential(1)}` : '',
  ].filter(Boolean).join(', ');
  entries.push({
    name, val_ppl: ppl, gap_closed: gapClosed(ppl, baselinePpl, teacherPpl), bytes_per_position: inspect.bytes_per_position,
    seconds: precomputed[name].seconds + trained[i + 1].seconds, description: `${datasets[name].what}${extra ? `; ${extra}` : ''}`,
    precompute_seconds: precomputed[name].seconds, ...(inspect.sampling ? { mean_distinct_ids: inspect.sampling.mean_distinct_ids } : {}),
    ...(inspect.codec_error ? { kl_error: inspect.codec_error.kl_mean } : {}),
  });
}

const minutes = (Date.now() - started) / 60000;
const header = [
  '# Sampled vs top-k KD on the demo (make sampled)', '',
  `Teacher ${teacherPpl.toFixed(2)}, baseline ${baselinePpl.toFixed(2)} validation perplexity; gap closed = ln(ppl_baseline / ppl) / ln(ppl_baseline / ppl_teacher).`,
  `Every student: ${STEPS} steps × 16 × 128 tokens, α = 0.9, τ = 1, forward KL (pipelines/configs/student.json); seconds = precompute + training. Finished in ${minutes.toFixed(1)} min.`,
];
await fs.outputJson(join(root, 'report.json'), { teacher_ppl: teacherPpl, baseline_ppl: baselinePpl, steps: STEPS, minutes, entries }, { spaces: 2 });
await fs.outputFile(join(root, 'report.md'), techniquesMarkdown(entries, header));
console.error(techniquesMarkdown(entries, header));
console.error(`sampled: done in ${minutes.toFixed(1)} min; report in ${root}/report.md`);
