/**
 * Self-distillation rounds (born-again networks, Furlanello et al. 2018, §3): the student of round r,
 * exported to ONNX, is the teacher of round r + 1; every round precomputes its own logit dataset
 * from its teacher and trains a fresh student of the same architecture from it. This file owns the
 * rounds' bookkeeping (which files each round reads and writes, and the check that each round's
 * logit dataset really came from the previous round's student); the stages do the work.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sha256File } from '../shards/manifest.js';

/** One round's files. */
export interface SelfDistillRound {
  /** 1-based round number. */
  round: number;
  /** The .onnx that precomputes this round's soft labels: the first teacher, then round r − 1's student. */
  teacher: string;
  /** This round's logit dataset (kd precompute --out). */
  logits: string;
  /** This round's student checkpoint (kd train --out). */
  student: string;
  /** kd export --out of the student; `onnx` is the model inside it, the next round's teacher. */
  exportDir: string;
  onnx: string;
}

/**
 * The number of rounds from the text given as `make self-distill ROUNDS=…` (`--rounds …`): digits
 * only, so 'abc', '', '1.5', '0', '-1' and '1e1' are refused rather than read as NaN or rounded.
 * @param text the argument as given; undefined when `--rounds` was last on the command line
 * @throws Error "self-distill: ROUNDS=abc is not a positive integer (e.g. make self-distill ROUNDS=3)"
 */
export function parseRounds(text: string | undefined): number {
  const given = text ?? '';
  if (!/^[0-9]+$/.test(given) || Number(given) < 1 || !Number.isSafeInteger(Number(given))) {
    throw new Error(`self-distill: ROUNDS=${given === '' ? ' (empty)' : given} is not a positive integer (e.g. make self-distill ROUNDS=3)`);
  }
  return Number(given);
}

/**
 * The rounds' files under `root`: round r in `<root>/round-r/{logits,student,export}`.
 * @param firstTeacher the .onnx of round 1's teacher (the shipped teacher, exported)
 * @throws Error when rounds is not a positive integer
 */
export function selfDistillRounds(rounds: number, root: string, firstTeacher: string): SelfDistillRound[] {
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`self-distill: ROUNDS must be a positive integer, got '${rounds}'`);
  const out: SelfDistillRound[] = [];
  for (let r = 1; r <= rounds; r++) {
    const dir = join(root, `round-${r}`), exportDir = join(dir, 'export');
    out.push({ round: r, teacher: r === 1 ? firstTeacher : out[r - 2].onnx, logits: join(dir, 'logits'), student: join(dir, 'student'), exportDir, onnx: join(exportDir, 'onnx', 'model.onnx') });
  }
  return out;
}

/**
 * Checks that `round.logits/manifest.json` names `round.teacher` (same path and same bytes): the
 * soft labels of round r were computed by round r − 1's student, not by a stale teacher.
 * @returns the manifest's teacher entry
 * @throws Error "<manifest>: round r was precomputed by <path> (sha256 …), not <teacher>" otherwise
 */
export async function checkRoundTeacher(round: SelfDistillRound): Promise<{ path: string; sha256: string }> {
  const file = join(round.logits, 'manifest.json');
  const { teacher } = JSON.parse(readFileSync(file, 'utf8')) as { teacher: { path: string; sha256: string } };
  const want = await sha256File(round.teacher);
  if (resolve(teacher.path) !== resolve(round.teacher) || teacher.sha256 !== want)
    throw new Error(`${file}: round ${round.round} was precomputed by ${teacher.path} (sha256 ${teacher.sha256.slice(0, 12)}…), not ${round.teacher} (sha256 ${want.slice(0, 12)}…)`);
  return teacher;
}

/** Runs one `kd` command line (without `kd`), e.g. via a child process or in-process. */
export type KdRunner = (args: string[]) => Promise<unknown>;

/**
 * Runs the rounds in order: precompute from the round's teacher, check the manifest names it, train
 * a fresh student, export it to ONNX for the next round.
 * @param precomputeArgs / trainArgs extra flags for every round (prep, k, config, steps, …)
 * @param onRound called after each round's export (for progress and tables)
 * @throws the stages' errors, and checkRoundTeacher's
 */
export async function runSelfDistillRounds(plan: SelfDistillRound[], kd: KdRunner, precomputeArgs: string[], trainArgs: string[], onRound: (r: SelfDistillRound) => Promise<void> = async () => {}): Promise<void> {
  for (const r of plan) {
    await kd(['precompute', ...precomputeArgs, '--teacher', r.teacher, '--out', r.logits]);
    await checkRoundTeacher(r);
    await kd(['train', ...trainArgs, '--data', r.logits, '--out', r.student, '--overwrite']);
    await kd(['export', '--checkpoint', r.student, '--out', r.exportDir, '--overwrite']);
    await onRound(r);
  }
}
