/**
 * Rehearsal of `kd prep` on a corpus of real size (issue 10): a generated 1 GB JSONL corpus
 * (scripts/make-corpus.ts) prepared with the shipped tokenizer, then tokenizer training on a
 * seeded sample measured on its own. Each step runs `kd prep` as a child process; printed: wall
 * seconds, tokens/s and peak RSS (the child's own maxRSS, and the largest of any process under it,
 * such as the BPE trainer, sampled every 200 ms from /proc). Goal: prep's peak RSS < 1.5 GB.
 *
 *   node --import tsx scripts/rehearse-corpus.ts [--bytes 1e9] [--out runs/rehearse/corpus]
 *     [--tokenizer data/teacher/tokenizer.json] [--train-documents 40000] [--sample-bytes 33554432]
 *
 * Disk: the corpus (1 GB) plus ~1 GB of windows under --out. Results also go to <out>/rehearse-corpus.json.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeCorpus } from './make-corpus.js';

const { values: args } = parseArgs({ options: {
  bytes: { type: 'string', default: '1e9' }, out: { type: 'string', default: 'runs/rehearse/corpus' },
  tokenizer: { type: 'string', default: 'data/teacher/tokenizer.json' },
  'train-documents': { type: 'string', default: '40000' }, 'sample-bytes': { type: 'string', default: String(32 << 20) },
} });
const out = args.out!;
const corpus = join(out, 'corpus.jsonl');

/** Peak VmHWM (bytes) of `pid` and every process below it, sampled from /proc. */
function descendantsPeak(pid: number, peaks: Map<number, number>): void {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch { /* gone */ }
  }
  for (const todo = [pid]; todo.length > 0;) {
    const p = todo.pop()!;
    try {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (hwm) peaks.set(p, Math.max(peaks.get(p) ?? 0, Number(hwm[1]) * 1024));
    } catch { /* gone */ }
    todo.push(...(children.get(p) ?? []));
  }
}

/** The child prints its own maxRSS on exit (exact, unlike sampling). */
const PRELOAD = `data:text/javascript,process.on('exit',()=>process.stderr.write('\\nkd-max-rss '+process.resourceUsage().maxRSS*1024+'\\n'))`;

interface StepResult { step: string; seconds: number; peak_rss_bytes: number; peak_rss_any_bytes: number; summary: Record<string, unknown> }

async function kdPrep(step: string, prepArgs: string[]): Promise<StepResult> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', PRELOAD, 'pipelines/kd.js', 'prep', ...prepArgs, '--json', '--overwrite'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (b) => { stdout += b; });
  child.stderr.on('data', (b) => { stderr += b; process.stderr.write(b); });
  const peaks = new Map<number, number>();
  const timer = setInterval(() => descendantsPeak(child.pid!, peaks), 200);
  const code = await new Promise<number | null>((res) => child.on('close', res));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${step}: kd prep exited with ${code}`);
  const own = Number(/kd-max-rss (\d+)/.exec(stderr)?.[1] ?? 0);
  const summary = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  return { step, seconds: (performance.now() - t0) / 1000, peak_rss_bytes: own, peak_rss_any_bytes: Math.max(own, ...peaks.values()), summary };
}

const bytes = Number(args.bytes);
if (!existsSync(corpus) || statSync(corpus).size < bytes) {
  process.stderr.write(`rehearse-corpus: generating ${bytes} bytes → ${corpus}\n`);
  makeCorpus(corpus, bytes, 1);
}
const size = statSync(corpus).size;
const results: StepResult[] = [];
results.push(await kdPrep('prep 1 GB, shipped tokenizer', ['--corpus', corpus, '--tokenizer', args.tokenizer!, '--out', join(out, 'prep')]));
results.push(await kdPrep('prep with BPE training on a seeded sample', ['--corpus', corpus, '--max-documents', args['train-documents']!,
  '--tokenizer-sample-bytes', args['sample-bytes']!, '--vocab-size', '4096', '--out', join(out, 'prep-trained')]));

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
process.stdout.write(`\ncorpus ${corpus}: ${(size / 1e9).toFixed(2)} GB\n`);
for (const r of results) {
  const s = r.summary as { timing: { count: number; tokenizer: number; tokenize: number }; tokens_per_s: number; splits: Record<string, { tokens: number; windows: number }> };
  const tokens = s.splits.train.tokens + s.splits.validation.tokens;
  process.stdout.write(`${r.step}: ${r.seconds.toFixed(0)} s (count ${s.timing.count.toFixed(0)} s, tokenizer ${s.timing.tokenizer.toFixed(0)} s, tokenize ${s.timing.tokenize.toFixed(0)} s), `
    + `${tokens.toLocaleString('en-US')} tokens at ${Math.round(s.tokens_per_s).toLocaleString('en-US')} tokens/s, peak RSS ${gib(r.peak_rss_bytes)} (largest process under it ${gib(r.peak_rss_any_bytes)})\n`);
}
const main = results[0];
process.stdout.write(`peak RSS of kd prep on ${(size / 1e9).toFixed(2)} GB: ${gib(main.peak_rss_bytes)} (goal < 1.5 GB: ${main.peak_rss_bytes < 1.5e9 ? 'met' : 'NOT met'})\n`);
writeFileSync(join(out, 'rehearse-corpus.json'), JSON.stringify({ corpus, bytes: size, results }, null, 2) + '\n');
if (main.peak_rss_bytes >= 1.5e9) process.exitCode = 1;
