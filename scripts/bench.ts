/**
 * make bench: measured in one run, on the same windows and batch shape —
 *  1. bare teacher forward (full logits to JS, nothing written) vs precompute (top-k graph + shards):
 *     tokens/s of each and their ratio;
 *  2. bytes per position: raw (int32 id, fp32 value) pairs vs the stored columns before and after
 *     Parquet compression;
 *  3. student training tokens/s and achieved FLOP/s on the TF.js backend vs the machine's MatMul
 *     ceiling (onnxruntime CPU MatMul) as a ratio; peak RSS of the training process.
 * Needs runs/prep (make prep) and runs/teacher/model.onnx (make teacher-onnx).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWindows } from '../lib/data/windows.js';
import { countParameters, resolveLlamaConfig } from '../lib/model/config.js';
import { onnxMatMulGflops, openOnnxSession, runLogits } from '../lib/onnx/index.js';
import { rowBytes } from '../lib/shards/index.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStudent } from '../stages/train.js';

const prep = 'runs/prep', teacher = 'runs/teacher/model.onnx';
const WINDOWS = 256, BATCH = 8;
const out = mkdtempSync(join(tmpdir(), 'kd-bench-'));
const rows: string[][] = [];
const show = (name: string, value: string, note = '') => { rows.push([name, value, note]); console.error(`${name}: ${value} ${note}`); };

// 1. Bare forward vs precompute, same windows, same batch shape, both including session creation.
const w = readWindows(prep, 'train');
const L = w.seqLen;
let t0 = performance.now();
const bare = await openOnnxSession(teacher, { device: 'auto' });
for (let b0 = 0; b0 < WINDOWS; b0 += BATCH) {
  const ids = new BigInt64Array(BATCH * L);
  for (let b = 0; b < BATCH; b++) for (let t = 0; t < L; t++) ids[b * L + t] = BigInt(w.ids[(b0 + b) * (L + 1) + t]);
  await runLogits(bare, ids, BATCH, L);
}
const bareTps = (WINDOWS * L) / ((performance.now() - t0) / 1000);
await bare.session.release();
const pre = await precompute({ teacher, prep, out: join(out, 'logits'), max_windows: WINDOWS, batch_size: BATCH, quiet: true });
show('bare teacher forward', `${bareTps.toFixed(0)} tokens/s`, `(${WINDOWS} windows × ${L}, batch ${BATCH}, ${pre.execution_provider})`);
show('precompute', `${pre.tokens_per_s.toFixed(0)} tokens/s`, '(top-k graph, shards written)');
show('precompute / bare forward', (pre.tokens_per_s / bareTps).toFixed(3));

// 2. Storage per position.
const manifest = JSON.parse(readFileSync(join(out, 'logits', 'manifest.json'), 'utf8'));
const raw = manifest.k * 8;
const stored = rowBytes({ seqLen: L, k: manifest.k, numTemps: manifest.temperatures.length, idDtype: manifest.encoding.ids, valueDtype: manifest.encoding.values }) / L;
show('raw (int32 id, fp32 value) pairs', `${raw} bytes/position`, `(k = ${manifest.k})`);
show('stored columns, uncompressed', `${stored.toFixed(1)} bytes/position`, `(${(stored / raw).toFixed(2)} × raw; incl. input/target ids and ${manifest.temperatures.length} log_z)`);
show('stored, Parquet GZIP', `${pre.bytes_per_position.toFixed(1)} bytes/position`, `(${(pre.bytes_per_position / raw).toFixed(2)} × raw)`);

// 3. Student training throughput and FLOP/s vs the ONNX Runtime MatMul ceiling.
const studentCfg = JSON.parse(readFileSync('pipelines/configs/student.json', 'utf8'));
const summary = await trainStudent({ ...studentCfg, data: join(out, 'logits'), out: join(out, 'student'), max_steps: 6, eval_windows: 8, quiet: true });
const steps = readFileSync(join(out, 'student', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.tokens_per_s);
const tps = steps.slice(1).reduce((s, r) => s + r.tokens_per_s, 0) / (steps.length - 1); // first step compiles/warms up
const m = resolveLlamaConfig({ vocab_size: manifest.tokenizer.vocab_size, ...studentCfg.model });
const flopsPerToken = 6 * countParameters(m) + 12 * m.num_hidden_layers * m.hidden_size * L; // Kaplan et al. 2020, §2.1
const achieved = (tps * flopsPerToken) / 1e9;
const ceiling = await onnxMatMulGflops();
show(`student training (${summary.backend})`, `${tps.toFixed(0)} tokens/s`, `(${(countParameters(m) / 1e6).toFixed(2)} M params, batch ${studentCfg.batch_size}×${L}, α ${studentCfg.alpha})`);
show('achieved training FLOP/s', `${achieved.toFixed(2)} GFLOP/s`);
show('onnxruntime CPU MatMul ceiling', `${ceiling.toFixed(1)} GFLOP/s`, '(2048×1024 · 1024×1024)');
show('training / ceiling', (achieved / ceiling).toFixed(3));
show('peak RSS of this process', `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`, '(teacher session released before training)');

console.log(['| measure | value | note |', '|---|---:|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n'));
rmSync(out, { recursive: true, force: true });
