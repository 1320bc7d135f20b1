#!/usr/bin/env -S npx tsx
/**
 * make xtok: cross-tokenizer distillation on the demo. A student with its own byte-level BPE
 * (2048 entries, trained by kd prep on the same Brown corpus) learns from the shipped teacher
 * (tokenizer of 4096) through ULD at the byte-aligned positions plus CE (lib/train/uld-loss.ts),
 * beside a CE-only student on exactly the same student windows. Every student: 128 steps with
 * pipelines/configs/student.json (as make techniques); bits per byte by kd eval on the student
 * prep's validation documents, the teacher's on its own prep (the same documents: same corpus,
 * seed and split). Writes runs/xtok/report.{md,json}.
 *
 * KD_XTOK_REUSE=1 keeps the steps a previous run finished (their `.done.json`), for reruns.
 */
import { $, fs } from 'zx';
import { stepRunner, stdoutJson } from '../lib/cli/pipeline-steps.js';
import { join } from 'node:path';

$.verbose = false;
const kd = ['node', 'pipelines/kd.js'];
const root = 'runs/xtok';
const reuse = process.env.KD_XTOK_REUSE === '1';
const started = Date.now();
/** Steps of every student (as make techniques). */
const STEPS = 128;
if (!reuse) await fs.remove(root);
await fs.mkdirp(root);

const step = stepRunner(root, 'xtok', reuse);
const json = stdoutJson;

// Data: the teacher's windows (its tokenizer) and the student's (a BPE of 2048 trained on the same train split).
await step('prep-teacher', () => $`${kd} prep --out runs/xtok/prep --tokenizer data/teacher/tokenizer.json --overwrite --quiet`);
await step('prep-student', () => $`${kd} prep --out runs/xtok/student-prep --vocab-size 2048 --overwrite --quiet`);
await step('teacher-export', () => $`${kd} teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite`);
const logits = await step('precompute', () => $`${kd} precompute --config pipelines/configs/precompute.json --prep runs/xtok/prep --out runs/xtok/logits --spans --quiet`);

// Students, two at a time (a TF.js wasm process uses one core): CE only, and ULD + CE at two weights.
const jobs = [
  () => step('train-baseline', () => $`${kd} train --config pipelines/configs/student.json --prep runs/xtok/student-prep --data runs/xtok/logits --alpha 0 --max-steps ${STEPS} --epochs 100 --out runs/xtok/baseline --overwrite --quiet`),
  () => step('train-uld-0.5', () => $`${kd} train --config pipelines/configs/student.json --prep runs/xtok/student-prep --data runs/xtok/logits --loss uld --alpha 0.5 --max-steps ${STEPS} --epochs 100 --out runs/xtok/uld-0.5 --overwrite --quiet`),
  () => step('train-uld-0.9', () => $`${kd} train --config pipelines/configs/student.json --prep runs/xtok/student-prep --data runs/xtok/logits --loss uld --max-steps ${STEPS} --epochs 100 --out runs/xtok/uld-0.9 --overwrite --quiet`),
];
const trained: { seconds: number; stdout: string }[] = [];
for (let i = 0; i < jobs.length; i += 2) trained.push(...(await Promise.all(jobs.slice(i, i + 2).map((j) => j()))));

// Evaluation on the same validation documents: the students on their prep, the teacher on its own.
const evalStudents = await step('eval-students', () => $`${kd} eval --prep runs/xtok/student-prep --baseline runs/xtok/baseline --distilled runs/xtok/uld-0.5 --out runs/xtok/eval/uld-0.5 --quiet --json`);
const evalHigh = await step('eval-uld-0.9', () => $`${kd} eval --prep runs/xtok/student-prep --distilled runs/xtok/uld-0.9 --out runs/xtok/eval/uld-0.9 --quiet --json`);
const evalTeacher = await step('eval-teacher', () => $`${kd} eval --prep runs/xtok/prep --teacher runs/teacher/model.onnx --out runs/xtok/eval/teacher --quiet --json`);

type Scored = { bpb: number; ppl: number; scored_bytes: number; scored_tokens: number; parameters: number };
const s = json(evalStudents.stdout), high = json(evalHigh.stdout), t = json(evalTeacher.stdout);
/** Share of student positions aligned with a teacher position, measured by kd train on its first batch (16 × 128 positions). */
const aligned = await Promise.all(['uld-0.5', 'uld-0.9'].map(async (d) => (await fs.readJson(join(root, d, 'train.json'))).provenance.cross_tokenizer.aligned_share_first_batch as number));
const rows = [
  { model: 'teacher (shipped, 4.0 M)', tokenizer: 'teacher BPE 4096', loss: '—', ...pick(t.teacher) },
  { model: 'student baseline', tokenizer: 'own BPE 2048', loss: 'CE (α = 0)', seconds: trained[0].seconds, ...pick(s.baseline) },
  { model: 'student ULD', tokenizer: 'own BPE 2048', loss: 'α = 0.5: 0.5·ULD + 0.5·CE', seconds: trained[1].seconds, aligned: aligned[0], ...pick(s.distilled) },
  { model: 'student ULD', tokenizer: 'own BPE 2048', loss: 'α = 0.9: 0.9·ULD + 0.1·CE', seconds: trained[2].seconds, aligned: aligned[1], ...pick(high.distilled) },
];
function pick(m: Scored) { return { bpb: m.bpb, ppl: m.ppl, scored_bytes: m.scored_bytes, scored_tokens: m.scored_tokens, parameters: m.parameters }; }

const minutes = (Date.now() - started) / 60000;
const md = [
  '# Cross-tokenizer distillation (make xtok)', '',
  `Teacher: the shipped teacher, tokenizer of 4096; students: ${(s.baseline.parameters / 1e6).toFixed(2)} M parameters with their own byte-level BPE of 2048, ${STEPS} steps × 16 × 128 tokens (pipelines/configs/student.json, τ = 1), on the same student windows; top-32 teacher logits of the first 3072 teacher windows with byte spans (${logits.seconds.toFixed(0)} s). Bits per byte on the same validation documents (${s.baseline.scored_bytes} bytes). Finished in ${minutes.toFixed(1)} min.`, '',
  '| model | tokenizer | loss | val bits/byte | val PPL (own tokens) | aligned positions (first batch) | train s |',
  '|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.model} | ${r.tokenizer} | ${r.loss} | ${r.bpb.toFixed(3)} | ${r.ppl.toFixed(1)} | ${'aligned' in r && r.aligned !== undefined ? `${(100 * r.aligned).toFixed(1)} %` : '—'} | ${'seconds' in r && r.seconds !== undefined ? r.seconds.toFixed(0) : '—'} |`),
].join('\n') + '\n';
await fs.outputJson(join(root, 'report.json'), { steps: STEPS, minutes, rows }, { spaces: 2 });
await fs.outputFile(join(root, 'report.md'), md);
console.error(md);
console.error(`xtok: done in ${minutes.toFixed(1)} min; report in ${root}/report.md`);
