import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { readWindows } from '../lib/data/windows.js';
import { TeacherStats } from '../lib/logits/stats.js';
import { openOnnxSession, runLogits } from '../lib/onnx/index.js';
import { DUCKDB_MACROS } from '../lib/shards/index.js';
import { run as precompute } from '../stages/precompute.js';
import { formatSummary, run as inspect, type InspectSummary } from '../stages/inspect.js';
import { makePrep, SEQ_LEN, VOCAB, writeTeacher } from './precompute-fixture.js';

const K = 8, WINDOWS = 24;
let dir: string, out: string, summary: InspectSummary;
/** Dense float64 reference per position from the teacher's full logits: top-k mass and entropy. */
let ref: { mass: number[]; entropy: number[] };

beforeAll(async () => {
  let prep: string;
  ({ dir, prep } = await makePrep('inspect'));
  // Embeddings scaled down from the fixture's: a flatter teacher, so the tail is not negligible.
  const teacher = writeTeacher(join(dir, 'teacher.onnx'), undefined, 4, (w) => w.get('model.embed_tokens.weight')!.data.forEach((x, i, a) => { a[i] = x * 0.25; }));
  out = join(dir, 'logits');
  await precompute({ teacher, prep, out, k: K, max_windows: WINDOWS, rows_per_shard: 10, batch_size: 4, device: 'cpu', quiet: true });
  summary = await inspect(out, { quiet: true });

  const w = readWindows(prep, 'train'), L = SEQ_LEN;
  const ids = new BigInt64Array(WINDOWS * L);
  for (let r = 0; r < WINDOWS; r++) for (let t = 0; t < L; t++) ids[r * L + t] = BigInt(w.ids[r * (L + 1) + t]);
  const { logits } = await runLogits(await openOnnxSession(teacher, { device: 'cpu' }), ids, WINDOWS, L);
  ref = { mass: [], entropy: [] };
  for (let p = 0; p < WINDOWS * L; p++) {
    const z = Array.from(logits.subarray(p * VOCAB, (p + 1) * VOCAB));
    const max = Math.max(...z), lse = max + Math.log(z.reduce((s, x) => s + Math.exp(x - max), 0));
    const logp = z.map((x) => x - lse);
    ref.entropy.push(-logp.reduce((s, l) => s + Math.exp(l) * l, 0));
    ref.mass.push([...logp].sort((a, b) => b - a).slice(0, K).reduce((s, l) => s + Math.exp(l), 0));
  }
});

const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;

describe('kd inspect', () => {
  it('counts rows, positions and bytes per position from the files', () => {
    const bytes = ['shard-00000.parquet', 'shard-00001.parquet', 'shard-00002.parquet'].reduce((s, f) => s + statSync(join(out, f)).size, 0);
    expect(summary).toMatchObject({ rows: WINDOWS, positions: WINDOWS * SEQ_LEN, bytes, k: K, vocab_size: VOCAB, shards_ok: 3 });
    expect(summary.bytes_per_position).toBeCloseTo(bytes / (WINDOWS * SEQ_LEN), 9);
    expect(summary.shards.map((s) => [s.file, s.rows, s.ok])).toEqual([['shard-00000.parquet', 10, true], ['shard-00001.parquet', 10, true], ['shard-00002.parquet', 4, true]]);
  });

  it('top-k mass (mean, 5th percentile, min) matches the dense teacher up to fp16 rounding', () => {
    const t = summary.teacher_stats;
    expect(t.positions).toBe(WINDOWS * SEQ_LEN);
    expect(mean(ref.mass)).toBeGreaterThan(0.1); // a real tail: the test would be weak at mass ≈ 1
    expect(mean(ref.mass)).toBeLessThan(0.95);
    expect(t.topk_mass.mean).toBeCloseTo(mean(ref.mass), 3);
    const sorted = [...ref.mass].sort((a, b) => a - b);
    expect(Math.abs(t.topk_mass.p05 - sorted[Math.ceil(0.05 * sorted.length) - 1])).toBeLessThan(2e-3);
    expect(t.topk_mass.min).toBeCloseTo(sorted[0], 2);
  });

  it('brackets the true mean entropy between its lower and upper bound', () => {
    const { lower, upper } = summary.teacher_stats.entropy_nats!, h = mean(ref.entropy);
    expect(lower).toBeLessThanOrEqual(h + 1e-3);
    expect(upper).toBeGreaterThanOrEqual(h - 1e-3);
    expect(upper - lower).toBeGreaterThan(0);
    expect(upper).toBeLessThanOrEqual(Math.log(VOCAB));
  });

  it('prints a one-screen summary', () => {
    const text = formatSummary(summary);
    expect(text.split('\n').length).toBeLessThan(15);
    expect(text).toContain(`rows        ${WINDOWS} windows × ${SEQ_LEN} = ${WINDOWS * SEQ_LEN} positions`);
    expect(text).toContain('shards      3 of 3 intact');
  });
});

describe('TeacherStats', () => {
  it('is exact when the top-k holds all the mass, and uses τ = 1 when stored', () => {
    const s = new TeacherStats(2, [2, 1], 2);
    const lz = Math.log(1 + Math.exp(-1)); // logits [0, −1] at τ = 1
    s.add(Float32Array.from([0, -1]), Float32Array.from([Math.log(1 + Math.exp(-0.5)), lz]));
    const r = s.result(), p = [1 / (1 + Math.exp(-1)), Math.exp(-1) / (1 + Math.exp(-1))];
    expect(r.temperature).toBe(1);
    expect(r.topk_mass.mean).toBeCloseTo(1, 6);
    expect(r.entropy_nats.lower).toBeCloseTo(-p[0] * Math.log(p[0]) - p[1] * Math.log(p[1]), 6);
    expect(r.entropy_nats.upper).toBeCloseTo(r.entropy_nats.lower, 6);
  });

  it('is exact at the upper bound for an even tail and at the lower bound for a tail of p_k-sized entries', () => {
    const stats = (z: number[], k: number) => {
      const lse = Math.log(z.reduce((a, x) => a + Math.exp(x), 0)); // max z = 0
      const s = new TeacherStats(k, [1], z.length);
      s.add(Float32Array.from(z.slice(0, k)), Float32Array.from([lse]));
      const p = z.map((x) => Math.exp(x - lse));
      return { r: s.result(), h: -p.reduce((a, q) => a + (q > 0 ? q * Math.log(q) : 0), 0), mass: p[0] + p[1] };
    };
    const even = stats([0, -1, -2, -2, -2], 2); // tail: three equal entries
    expect(even.r.topk_mass.mean).toBeCloseTo(even.mass, 6);
    expect(even.r.entropy_nats.upper).toBeCloseTo(even.h, 6);
    expect(even.r.entropy_nats.lower).toBeLessThan(even.h - 0.05);
    const packed = stats([0, -1, -1, -Infinity], 2); // tail: one entry equal to p_k, one empty
    expect(packed.r.entropy_nats.lower).toBeCloseTo(packed.h, 6);
    expect(packed.r.entropy_nats.upper).toBeGreaterThan(packed.h + 0.01);
  });
});

describe('README', () => {
  it('its DuckDB example runs against the shards and agrees with kd inspect', async () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const sql = /<!-- duckdb-topk-mass -->\n```sql\n([\s\S]+?)```/.exec(readme)![1].replaceAll('runs/logits', out);
    const con = await (await DuckDBInstance.create(':memory:')).connect();
    for (const stmt of DUCKDB_MACROS) await con.run(stmt);
    const [row] = (await con.runAndReadAll(sql)).getRowObjectsJS();
    expect(row.positions).toBe(BigInt(WINDOWS * SEQ_LEN));
    expect(row.mean_topk_mass as number).toBeCloseTo(summary.teacher_stats.topk_mass.mean, 5);
    expect(Math.abs((row.p05_topk_mass as number) - summary.teacher_stats.topk_mass.p05)).toBeLessThan(2e-5);
  });

  it('its Slurm array and Kubernetes Indexed Job agree on the worker count and run precompute and merge', () => {
    const job = parseYaml(readFileSync(new URL('../pipelines/k8s/precompute-job.yaml', import.meta.url), 'utf8'));
    const args: string[] = job.spec.template.spec.containers[0].args;
    expect([job.spec.completionMode, job.spec.completions, args[args.indexOf('--num-shards') + 1]]).toEqual(['Indexed', 4, '4']);
    expect(job.spec.template.spec.containers[0].command).toEqual(['node', 'pipelines/kd.js', 'precompute']);
    expect(parseYaml(readFileSync(new URL('../pipelines/k8s/merge-job.yaml', import.meta.url), 'utf8')).spec.template.spec.containers[0].command)
      .toEqual(['node', 'pipelines/kd.js', 'merge', '/data/logits']);
    const sbatch = readFileSync(new URL('../pipelines/slurm/precompute.sbatch', import.meta.url), 'utf8');
    expect(sbatch).toMatch(/^#SBATCH --array=0-3$/m);
    expect(sbatch).toMatch(/\$KD precompute --config "\$CONFIG" --out "\$OUT"/);
    expect(sbatch).toMatch(/--dependency="afterok:\$\{array%%;\*\}"[^\n]*\n[^\n]*\$KD merge '\$OUT'/);
  });
});
