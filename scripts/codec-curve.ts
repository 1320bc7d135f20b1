#!/usr/bin/env -S npx tsx
/**
 * Bytes per position against KL error of kd's top-k value codecs, measured on the shipped teacher:
 * one teacher pass keeps the exact fp32 top-64 of WINDOWS windows; each (k, codec) variant is then
 * written as a real shard (writeShard, BROTLI-1) and its bytes counted, and its KL error is
 * KL(exact ‖ stored) per position over the k + 1 tail-mode buckets at τ = 1 (lib/logits/codec-error.ts).
 * Variants: `packed` fp16 (kd's default, error = fp16 rounding) and `compact` at value steps
 * δ = 2^-1 … 2^-7. DistillKit's published budget point (~114 B/token, k = 50, its own KL unknown)
 * is drawn as a reference line.
 *
 *   npx tsx scripts/codec-curve.ts [prep dir = runs/prep] [out dir = runs/codecs]
 *
 * Writes <out>/curve.json, curve.md and curve.{svg,png}.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { addKlError, emptyKlTotals } from '../lib/logits/codec-error.js';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import { writeChart } from '../lib/metrics/charts.js';
import { addTopKOutputs, openOnnxSession } from '../lib/onnx/index.js';
import { loadPrecomputeInputs } from '../lib/precompute/inputs.js';
import { teacherRows } from '../lib/precompute/teacher-rows.js';
import { writeShard, type LogitRow, type WriteShardMeta } from '../lib/shards/index.js';

const prep = process.argv[2] ?? 'runs/prep', outDir = process.argv[3] ?? 'runs/codecs';
const teacher = 'runs/teacher/model.onnx', WINDOWS = 512, KMAX = 64, TEMPS = [1, 2, 4];
const KS = [8, 16, 32, 64], STEPS = [1, 2, 3, 4, 5].map((m) => 2 ** -m);
/** DistillKit's compressed top-k at its budget settings (k = 50), bytes per token, as published. */
const DISTILLKIT_BYTES = 114;

const inp = await loadPrecomputeInputs({ teacher, prep, k: KMAX, max_windows: WINDOWS }, 'codec-curve');
const session = await openOnnxSession(addTopKOutputs(inp.teacherBytes, { k: KMAX, temperatures: TEMPS, source: teacher }), { device: 'cpu', source: teacher });
console.error(`codec-curve: teacher top-${KMAX} of ${inp.rows} windows …`);
const exact = await teacherRows(session, inp.windows, 0, inp.rows, { batchSize: 8, realVocab: inp.tokenizer.vocabSize });
const L = inp.windows.seqLen, positions = inp.rows * L;

/** The first k slots of every position (slots are sorted by descending logit). */
function truncate(rows: LogitRow[], k: number): LogitRow[] {
  const slice = <T extends Uint32Array | Float32Array>(a: T): T => {
    const out = new (a.constructor as new (n: number) => T)(L * k);
    for (let t = 0; t < L; t++) out.set(a.subarray(t * KMAX, t * KMAX + k), t * k);
    return out;
  };
  return rows.map((r) => ({ ...r, topk_ids: slice(r.topk_ids), topk_logits: slice(r.topk_logits) }));
}

interface Point { k: number; codec: string; value_step: number | null; bytes_per_position: number; kl_mean: number; kl_max: number }
const points: Point[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'kd-codec-curve-'));
for (const k of KS) {
  const rows = truncate(exact, k);
  const base: WriteShardMeta = { seqLen: L, k, numTemps: TEMPS.length, idDtype: 'uint16', valueDtype: 'float16' };
  const path = join(tmp, `k${k}.parquet`);
  await writeShard(path, rows, base);
  const fp16 = emptyKlTotals();
  for (const r of rows) addKlError(fp16, r.topk_ids, r.topk_logits, decodeHalf(encodeHalf(r.topk_logits)), r.log_z, k, 0, 1);
  points.push({ k, codec: 'packed fp16', value_step: null, bytes_per_position: statSync(path).size / positions, kl_mean: fp16.sum / fp16.positions, kl_max: fp16.max });
  for (const step of STEPS) {
    const res = await writeShard(path, rows, { ...base, layout: 'compact', valueStep: step, errorTemperature: 1 });
    const e = res.klError!;
    points.push({ k, codec: 'compact', value_step: step, bytes_per_position: res.bytes / positions, kl_mean: e.sum / e.positions, kl_max: e.max });
  }
  console.error(`codec-curve: k = ${k} done`);
}
rmSync(tmp, { recursive: true, force: true });
await session.session.release();

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'curve.json'), JSON.stringify({ teacher, prep, windows: inp.rows, temperatures: TEMPS, points }, null, 2) + '\n');
const table = [
  `Codecs on ${inp.rows} windows × ${L} of ${teacher} (${prep}), τ ∈ {${TEMPS.join(', ')}} stored; KL(exact ‖ stored) at τ = 1, nats per position.`, '',
  '| k | codec | δ | bytes/position | mean KL | max KL |', '|---:|---|---:|---:|---:|---:|',
  ...points.map((p) => `| ${p.k} | ${p.codec} | ${p.value_step === null ? '—' : `1/${1 / p.value_step}`} | ${p.bytes_per_position.toFixed(1)} | ${p.kl_mean.toExponential(2)} | ${p.kl_max.toExponential(2)} |`),
];
writeFileSync(join(outDir, 'curve.md'), table.join('\n') + '\n');
console.log(table.join('\n'));

const values = points.map((p) => ({ ...p, slots: `top-${p.k}` }));
const x = { field: 'bytes_per_position', type: 'quantitative', title: 'bytes per position (BROTLI-1 shards)', scale: { domain: [0, 200] as number[] } } as const;
const y = { field: 'kl_mean', type: 'quantitative', title: 'mean KL error per position (nats, log scale)', scale: { type: 'log' } } as const;
const color = { field: 'slots', type: 'nominal', title: 'slots', sort: KS.map((k) => `top-${k}`) } as const;
const spec: TopLevelSpec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: { text: 'Bytes per position against KL error of the stored top-k', subtitle: [`kd's codecs on the shipped teacher (V = ${inp.teacherVocab}), ${inp.rows} windows; KL(exact ‖ stored) at τ = 1 over k + 1 buckets`, 'lines: compact (varint id gaps + 8-bit value codes), δ = 1/2 … 1/32 right to left; squares: packed fp16 (kd\'s default)'], anchor: 'start', fontSize: 16, subtitleFontSize: 12 },
  width: 640, height: 380, background: 'white', padding: 12,
  layer: [
    { data: { values: values.filter((p) => p.codec === 'compact') }, mark: { type: 'line', point: { size: 40 }, strokeWidth: 2 }, encoding: { x, y, color, order: { field: 'bytes_per_position' } } },
    { data: { values: values.filter((p) => p.codec !== 'compact') }, mark: { type: 'point', shape: 'square', filled: true, size: 70 }, encoding: { x, y, color } },
    { data: { values: [{ x: DISTILLKIT_BYTES }] }, mark: { type: 'rule', strokeDash: [6, 4], color: '#888' }, encoding: { x: { field: 'x', type: 'quantitative' } } },
    { data: { values: [{ x: DISTILLKIT_BYTES, y: 3e-3 }] }, mark: { type: 'text', align: 'left', dx: 4, color: '#555', text: 'DistillKit k = 50 budget, ~114 B/token' }, encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } } },
    { data: { values: [{ y: 1e-3 }] }, mark: { type: 'rule', strokeDash: [2, 3], color: '#c33' }, encoding: { y: { field: 'y', type: 'quantitative' } } },
    { data: { values: [{ x: 200, y: 1e-3 }] }, mark: { type: 'text', align: 'right', dy: -8, color: '#c33', text: 'goal: 1e-3 nats' }, encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } } },
  ],
  config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif' },
};
const files = await writeChart(join(outDir, 'curve'), spec);
console.error(`codec-curve: ${files.png}, ${join(outDir, 'curve.md')}`);
