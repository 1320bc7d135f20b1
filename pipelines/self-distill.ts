#!/usr/bin/env -S npx tsx
/**
 * make self-distill ROUNDS=n (§8.2, born-again networks): round 1 distils the shipped teacher into a
 * student; the student of round r, exported to ONNX, is the teacher of round r + 1, each round
 * precomputing its own logits (lib/selfdistill/rounds.ts). Beside every round, a CE-only student
 * trained for the same total steps (r × 128) from the same init. Writes runs/self-distill/report.{md,json}
 * and adds the rows self_distill_round_N to runs/techniques/report.json when it exists.
 */
import { $, fs } from 'zx';
import { join } from 'node:path';
import { gapClosed, techniquesMarkdown, type TechniqueEntry } from '../lib/metrics/techniques.js';
import { parseRounds, runSelfDistillRounds, selfDistillRounds, type SelfDistillRound } from '../lib/selfdistill/rounds.js';

$.verbose = false;
const kd = ['node', 'pipelines/kd.js'];
const root = 'runs/self-distill';
const prep = join(root, 'prep');
const argIndex = process.argv.indexOf('--rounds');
const ROUNDS = roundsOrExit(argIndex > 0 ? process.argv[argIndex + 1] : '3');
/** Steps of every round's student (as make techniques). */
const STEPS = 128;
const started = Date.now();
const plan = selfDistillRounds(ROUNDS, root, 'runs/teacher/model.onnx');
await fs.remove(root);

const json = (s: string) => JSON.parse(s.slice(s.indexOf('{')));
const say = (m: string) => console.error(`self-distill: ${m} (${((Date.now() - started) / 60000).toFixed(1)} min)`);
await $`${kd} prep --out runs/self-distill/prep --tokenizer data/teacher/tokenizer.json --overwrite --quiet`;
await $`${kd} teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite`;

// The rounds, one after another; the CE-only students (which need no teacher) beside them.
const roundSeconds: number[] = [];
let t0 = Date.now();
const rounds = runSelfDistillRounds(plan, (args) => $`${[...kd, ...args]}`, // the lines' flags are parsed by test/self-distill.test.ts
  ['--config', 'pipelines/configs/precompute.json', '--prep', prep, '--quiet'],
  ['--config', 'pipelines/configs/student.json', '--prep', prep, '--max-steps', String(STEPS), '--epochs', '100', '--quiet'],
  async (r) => { roundSeconds.push((Date.now() - t0) / 1000); t0 = Date.now(); say(`round ${r.round} of ${ROUNDS} trained and exported`); });
const ceOnly = (async () => {
  await waitFor(join(plan[0].logits, 'manifest.json')); // the CE students read round 1's windows
  const windows = plan[0].logits;
  for (const r of plan) {
    const steps = r.round * STEPS, out = ceDir(r);
    await $`${kd} train --config pipelines/configs/student.json --prep ${prep} --data ${windows} --alpha 0 --max-steps ${steps} --epochs 100 --out ${out} --overwrite --quiet`;
    say(`CE-only student of ${r.round * STEPS} steps trained`);
  }
})();
await Promise.all([rounds, ceOnly]);

/** `--rounds`' value, or one line on stderr and exit code 1 (no stack trace) when it is not a count. */
function roundsOrExit(text: string | undefined): number {
  try { return parseRounds(text); } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
function ceDir(r: SelfDistillRound): string { return join(root, `ce-only-${r.round * STEPS}`); }
async function waitFor(file: string): Promise<void> {
  while (!(await fs.pathExists(file))) await new Promise((res) => setTimeout(res, 2000));
}

// Every model on the same validation documents; the teacher once.
const teacherPpl = json((await $`${kd} eval --prep ${prep} --teacher runs/teacher/model.onnx --out runs/self-distill/eval/teacher --quiet --json`).stdout).teacher.ppl as number;
const entries: TechniqueEntry[] = [];
for (const r of plan) {
  const ce = ceDir(r), student = r.student, out = join(root, 'eval', `round-${r.round}`);
  const e = json((await $`${kd} eval --prep ${prep} --baseline ${ce} --distilled ${student} --out ${out} --quiet --json`).stdout);
  const manifest = await fs.readJson(join(r.logits, 'manifest.json'));
  entries.push({
    name: `self_distill_round_${r.round}`, val_ppl: e.distilled.ppl, gap_closed: gapClosed(e.distilled.ppl, e.baseline.ppl, teacherPpl),
    bytes_per_position: manifest.totals.bytes / manifest.totals.positions, seconds: roundSeconds[r.round - 1],
    description: `§8.2: round ${r.round}, teacher ${r.round === 1 ? 'the shipped teacher' : `round ${r.round - 1}'s student`}; CE-only at ${r.round * STEPS} steps: ${e.baseline.ppl.toFixed(2)}`,
    teacher: manifest.teacher.path, teacher_sha256: manifest.teacher.sha256, total_steps: r.round * STEPS, ce_only_ppl: e.baseline.ppl,
  });
}

const minutes = (Date.now() - started) / 60000;
const header = [
  `# Self-distillation, ${ROUNDS} rounds (make self-distill)`, '',
  `Teacher (round 1) ${teacherPpl.toFixed(2)} validation perplexity. Every round: a fresh student, ${STEPS} steps × 16 × 128 tokens (pipelines/configs/student.json);`,
  `gap closed = ln(ppl_CE / ppl) / ln(ppl_CE / ppl_teacher) against the CE-only student of the same total steps. Finished in ${minutes.toFixed(1)} min.`,
];
await fs.outputJson(join(root, 'report.json'), { teacher_ppl: teacherPpl, rounds: ROUNDS, steps: STEPS, minutes, entries }, { spaces: 2 });
await fs.outputFile(join(root, 'report.md'), techniquesMarkdown(entries, header));
const techniques = 'runs/techniques/report.json';
if (await fs.pathExists(techniques)) {
  const t = await fs.readJson(techniques);
  t.entries = [...t.entries.filter((x: TechniqueEntry) => !x.name.startsWith('self_distill_round_')), ...entries];
  await fs.outputJson(techniques, t, { spaces: 2 });
}
console.error(techniquesMarkdown(entries, header));
console.error(`self-distill: done in ${minutes.toFixed(1)} min; report in ${root}/report.md`);
