/**
 * Peak RSS of `kd train` as the logit dataset grows (issue 10: RAM must not grow with the dataset).
 *
 *   node --import tsx scripts/stream-rss.ts [--demo runs/logits] [--prep runs/prep] [--out runs/stream-rss]
 *     [--windows 78125] [--steps 40] [--keep]
 *
 * Builds, under --out, logit datasets of 1/8 and 1/2 of the demo dataset (its rows re-written
 * through the shard writer, 1024-row shards like the demo's) and a synthetic dataset of --windows
 * windows × 128 positions (default 78,125 = 10 M positions; vocab 4096, k 32, the demo's
 * temperatures; random sorted top-k rows with consistent log_z, written by lib/shards/writer.ts
 * with a manifest in the demo's format, ~1.3 GB), reused when already there. Then runs `kd train`
 * (a child process: pipelines/configs/student.json, --steps steps, 16 evaluation windows) on each and
 * on the demo dataset itself, and prints each run's peak RSS (train.json summary.peak_rss_bytes)
 * and the ratio max/min (the goal: < 1.1). Results also go to <out>/stream-rss.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeHalf, decodeHalf } from '../lib/logits/fp16.js';
import {
  openLogitDataset, readListedShard, readManifest, shardFileName, writeManifest, writeShard, type LogitManifest, type LogitRow,
} from '../lib/shards/index.js';
import { mulberry32 } from '../lib/util/random.js';

const { values: args } = parseArgs({
  options: {
    demo: { type: 'string', default: 'runs/logits' }, prep: { type: 'string', default: 'runs/prep' },
    out: { type: 'string', default: 'runs/stream-rss' }, windows: { type: 'string', default: '78125' },
    steps: { type: 'string', default: '40' }, keep: { type: 'boolean', default: false },
  },
});
const ROWS_PER_SHARD = 1024;
const out = args.out!, demo = args.demo!;
mkdirSync(out, { recursive: true });

/** Writes `rows` (an iterator of shard-sized parts) as a dataset in `dir` with the demo manifest's identity. */
async function writeDataset(dir: string, base: LogitManifest, parts: AsyncIterable<LogitRow[]> | Iterable<LogitRow[]>): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const layout = { seqLen: base.seq_len, k: base.k, numTemps: base.temperatures.length, idDtype: base.encoding.ids, valueDtype: base.encoding.values } as const;
  const shards: LogitManifest['shards'] = [];
  for await (const part of parts) {
    const file = shardFileName(shards.length);
    const res = await writeShard(join(dir, file), part, layout);
    shards.push({ file, rows: res.rows, first_sample_id: part[0].sample_id.toString(), bytes: res.bytes, sha256: res.sha256 });
    if (shards.length % 10 === 0) process.stderr.write(`  ${dir}: ${shards.length} shards\n`);
  }
  const rows = shards.reduce((a, s) => a + s.rows, 0);
  const { plan: _plan, ...rest } = base;
  await writeManifest(dir, {
    ...rest, shards, created_at: new Date().toISOString(),
    totals: { rows, positions: rows * base.seq_len, bytes: shards.reduce((a, s) => a + s.bytes, 0) },
  });
}

/** The first `n` rows of the demo dataset, in 1024-row shards. */
async function* demoPrefix(n: number): AsyncGenerator<LogitRow[]> {
  const ds = await openLogitDataset(demo);
  let left = n;
  for (const s of ds.shards) {
    if (left <= 0) return;
    const rows = await readListedShard(s, ds.layout);
    for (let at = 0; at < rows.length && left > 0; at += ROWS_PER_SHARD) {
      const part = rows.slice(at, at + Math.min(ROWS_PER_SHARD, left));
      left -= part.length;
      yield part;
    }
  }
}

/** Random top-k rows: ids < vocab, sorted fp16 logits (first 0), log_z = log(Σ exp(z/τ) + tail). */
function* syntheticParts(windows: number, m: LogitManifest, seed = 1): Generator<LogitRow[]> {
  const { seq_len: L, k, temperatures } = m, T = temperatures.length, V = m.tokenizer.real_vocab_size;
  const rand = mulberry32(seed);
  for (let first = 0; first < windows; first += ROWS_PER_SHARD) {
    const part: LogitRow[] = [];
    for (let w = first; w < Math.min(windows, first + ROWS_PER_SHARD); w++) {
      const ids = Uint32Array.from({ length: L + 1 }, () => Math.floor(rand() * V));
      const z = new Float32Array(L * k), logZ = new Float32Array(L * T);
      for (let p = 0; p < L; p++) { let v = 0; for (let j = 0; j < k; j++) { z[p * k + j] = v; v -= rand() * 0.5; } }
      const zr = decodeHalf(encodeHalf(z));
      for (let p = 0; p < L; p++) temperatures.forEach((tau, t) => {
        let s = 0.5; // mass beyond the top k
        for (let j = 0; j < k; j++) s += Math.exp(zr[p * k + j] / tau);
        logZ[p * T + t] = Math.log(s);
      });
      part.push({
        sample_id: BigInt(w), input_ids: ids.subarray(0, L), target_ids: Int32Array.from(ids.subarray(1)),
        topk_ids: Uint32Array.from({ length: L * k }, () => Math.floor(rand() * V)), topk_logits: zr, log_z: logZ,
      });
    }
    yield part;
  }
}

/** Builds a dataset unless a complete one (manifest.json) is there already. */
async function ensure(dir: string, build: () => Promise<void>): Promise<string> {
  if (existsSync(join(dir, 'manifest.json'))) return dir;
  const t0 = performance.now();
  await build();
  process.stderr.write(`  built ${dir} in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  return dir;
}

/** Runs kd train on `data` in a child process; returns its train.json. */
function trainOn(name: string, data: string): { summary: { peak_rss_bytes: number; seconds: number; steps: number }; data_order: Record<string, unknown> } {
  const runOut = join(out, `train-${name}`);
  execFileSync(process.execPath, [
    'pipelines/kd.js', 'train', '--config', 'pipelines/configs/student.json', '--prep', args.prep!, '--data', data, '--out', runOut,
    '--overwrite', '--epochs', '1000', '--max-steps', args.steps!, '--eval-every', '0', '--eval-windows', '16', '--quiet', // every set: --steps steps
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  return JSON.parse(readFileSync(join(runOut, 'train.json'), 'utf8'));
}

const base = await readManifest(demo);
const total = base.totals.rows, windows = Number(args.windows);
const sets: [string, string][] = [
  ['demo-1_8', await ensure(join(out, 'demo-1_8'), () => writeDataset(join(out, 'demo-1_8'), base, demoPrefix(Math.round(total / 8))))],
  ['demo-1_2', await ensure(join(out, 'demo-1_2'), () => writeDataset(join(out, 'demo-1_2'), base, demoPrefix(Math.round(total / 2))))],
  ['demo', demo],
  [`synthetic-${windows}`, await ensure(join(out, `synthetic-${windows}`), () => writeDataset(join(out, `synthetic-${windows}`), base, syntheticParts(windows, base)))],
];
const results = [];
for (const [name, dir] of sets) {
  const m = await readManifest(dir);
  const t = trainOn(name, dir);
  const disk = m.shards.reduce((a, s) => a + statSync(join(dir, s.file)).size, 0);
  results.push({ name, dir, rows: m.totals.rows, positions: m.totals.positions, shards: m.shards.length, disk_bytes: disk, data_order: t.data_order, steps: t.summary.steps, seconds: t.summary.seconds, peak_rss_bytes: t.summary.peak_rss_bytes });
  process.stderr.write(`  ${name}: peak RSS ${(t.summary.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB\n`);
}
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log('| dataset | windows | positions | shards | G | on disk MiB | peak RSS MiB |');
console.log('| ------- | ------: | --------: | -----: | -: | ----------: | -----------: |');
for (const r of results) console.log(`| ${r.name} | ${r.rows} | ${r.positions.toLocaleString('en-US')} | ${r.shards} | ${r.data_order.buffer_shards} | ${mib(r.disk_bytes)} | ${mib(r.peak_rss_bytes)} |`);
const peaks = results.map((r) => r.peak_rss_bytes), ratio = Math.max(...peaks) / Math.min(...peaks);
console.log(`max/min peak RSS: ${ratio.toFixed(3)} (goal < 1.1) over ${(Math.max(...results.map((r) => r.positions)) / Math.min(...results.map((r) => r.positions))).toFixed(0)}× the positions`);
writeFileSync(join(out, 'stream-rss.json'), JSON.stringify({ steps: Number(args.steps), results, ratio }, null, 2) + '\n');
if (!args.keep) for (const [name] of sets) rmSync(join(out, `train-${name}`), { recursive: true, force: true });
