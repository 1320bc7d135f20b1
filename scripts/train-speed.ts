/**
 * Training speed of the demo student with the memory plan's settings against the trainer before
 * recomputation, blocked attention and chunked loss existed (issue "A 1.1B student trains on one
 * 24 GB GPU": small models, where the plan turns them off, must not slow by more than 5 %).
 *
 * Alternating rounds, each `kd train` in its own process on the same prep and logit dataset:
 *  - `now`: this tree, `--recompute auto` (the plan: off, unblocked, unchunked for this student);
 *  - `before`: a git worktree of `--before` (default 486d1ff, the commit before that work);
 *  - `recompute on`: this tree with recomputation forced, to show what it would cost.
 * tokens/s of a run is the mean over its steps after the first (warm-up); ratios are taken within
 * a round and the median over rounds is printed, so a busy machine slows both sides alike.
 *
 *   node --import tsx scripts/train-speed.ts [--prep runs/prep] [--data runs/logits] [--rounds 3] [--steps 16] [--before REV] [--backend wasm]
 * Needs git and the repository's history (a full clone). Prints JSON lines, then a table.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';

/** One round's tokens/s per variant. */
export type SpeedRound = Record<'now' | 'before' | 'recompute_on', number>;

/** The comparison's result: every round and the median ratios. */
export interface SpeedComparison {
  before: string;
  rounds: SpeedRound[];
  /** Median over rounds of now / before (goal ≥ 0.95). */
  now_over_before: number;
  /** Median over rounds of recompute on / now. */
  recompute_over_now: number;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

/** Mean tokens/s over the steps after the first, from a run's metrics.jsonl. */
function runTokensPerSecond(cwd: string, prep: string, data: string, out: string, steps: number, backend: string, extra: string[]): Promise<number> {
  return promisify(execFile)(process.execPath, ['pipelines/kd.js', 'train', '--config', 'pipelines/configs/student.json', '--prep', prep, '--data', data, '--out', out,
    '--overwrite', '--max-steps', String(steps), '--eval-every', '0', '--eval-windows', '8', '--backend', backend, '--quiet', ...extra], { cwd, maxBuffer: 1 << 24 })
    .then(() => {
      const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.tokens_per_s);
      return records.slice(1).reduce((s, r) => s + r.tokens_per_s, 0) / (records.length - 1);
    });
}

/**
 * Measures {@link SpeedComparison} in alternating rounds.
 * @param prep, data absolute or working-directory-relative paths of a prep and its logit dataset
 * @throws Error when git cannot make the worktree of `before` (e.g. a shallow clone).
 */
export async function compareTrainingSpeed(prep: string, data: string, opts: { before?: string; rounds?: number; steps?: number; backend?: string; log?: (s: string) => void } = {}): Promise<SpeedComparison> {
  const before = opts.before ?? '486d1ff', rounds = opts.rounds ?? 3, steps = opts.steps ?? 16, backend = opts.backend ?? 'wasm', log = opts.log ?? (() => {});
  const tmp = mkdtempSync(join(tmpdir(), 'kd-train-speed-')), tree = join(tmp, 'before');
  try {
    execFileSync('git', ['worktree', 'add', '--detach', tree, before], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`train speed: cannot check out ${before} (${String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n').pop()}); a full clone is needed`);
  }
  try {
    symlinkSync(resolve('node_modules'), join(tree, 'node_modules'));
    const [p, d] = [resolve(prep), resolve(data)];
    const out: SpeedRound[] = [];
    for (let r = 0; r < rounds; r++) {
      const round = {
        before: await runTokensPerSecond(tree, p, d, join(tmp, 'run-before'), steps, backend, []),
        now: await runTokensPerSecond(process.cwd(), p, d, join(tmp, 'run-now'), steps, backend, ['--recompute', 'auto']),
        recompute_on: await runTokensPerSecond(process.cwd(), p, d, join(tmp, 'run-recompute'), steps, backend, ['--recompute', 'on']),
      };
      out.push(round);
      log(JSON.stringify({ round: r + 1, ...Object.fromEntries(Object.entries(round).map(([k, v]) => [k, Math.round(v)])), now_over_before: Number((round.now / round.before).toFixed(3)) }));
    }
    return {
      before, rounds: out,
      now_over_before: median(out.map((r) => r.now / r.before)),
      recompute_over_now: median(out.map((r) => r.recompute_on / r.now)),
    };
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', tree], { stdio: 'ignore' });
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('train-speed.ts')) {
  const { values: a } = parseArgs({ options: {
    prep: { type: 'string', default: 'runs/prep' }, data: { type: 'string', default: 'runs/logits' }, rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '16' }, before: { type: 'string', default: '486d1ff' }, backend: { type: 'string', default: 'wasm' },
  } });
  if (!existsSync(join(a.data!, 'manifest.json'))) throw new Error(`${a.data}: no logit dataset (run make prep && make precompute first)`);
  const c = await compareTrainingSpeed(a.prep!, a.data!, { before: a.before, rounds: Number(a.rounds), steps: Number(a.steps), backend: a.backend, log: console.log });
  const tps = (k: keyof SpeedRound) => Math.round(median(c.rounds.map((r) => r[k]))).toLocaleString('en-US');
  console.log(`| demo student on ${a.backend} | tokens/s (median of ${c.rounds.length} rounds) |`);
  console.log('|---|---:|');
  console.log(`| before (${c.before}) | ${tps('before')} |`);
  console.log(`| now, memory plan (recompute off, unblocked, unchunked) | ${tps('now')} |`);
  console.log(`| now, --recompute on | ${tps('recompute_on')} |`);
  console.log(`now / before: ${c.now_over_before.toFixed(3)} (goal ≥ 0.95); recompute on / now: ${c.recompute_over_now.toFixed(3)}`);
}
