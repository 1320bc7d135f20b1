/**
 * Counts the memory plan's coefficients (lib/memory/coefficients.ts) on real steps: trains one
 * optimizer step of many small random configurations (layers, widths, heads, vocab, L, B, top-k,
 * α, dropout, attention blocks, loss chunks, tied or not), measures each peak of live buffers
 * (lib/memory/measure.ts), and fits the floats kept per feature by non-negative least squares on
 * the relative error. Prints the table to paste and each configuration's planned/measured ratio.
 *
 *   node --import tsx scripts/calibrate-memory.ts --backend wasm --recompute off [--configs 40]
 * Both backends share saved tensors' buffers (on wasm through kd's Identity kernel,
 * lib/backend/wasm-kernels.ts): they count the 'shares' table; the 'copies' table was counted
 * with the stock wasm kernels, which copy them (kept for a wasm backend kd cannot patch).
 */
import yargs from 'yargs';
import { initBackend } from '../lib/backend/select.js';
import { savedTensorsOf } from '../lib/memory/budget.js';
import { LlamaConfig, resolveLlamaConfig } from '../lib/model/config.js';
import { FEATURE_NAMES } from '../lib/memory/coefficients.js';
import { PlanInput, planFeatures } from '../lib/memory/plan.js';
import { measureStepPeak, StepSettings } from '../lib/memory/step-peak.js';
import { countParameters } from '../lib/model/config.js';
import { mulberry32 } from '../lib/util/random.js';

const argv = yargs(process.argv.slice(2))
  .option('backend', { choices: ['wasm', 'cpu'] as const, default: 'wasm' as const })
  .option('recompute', { choices: ['on', 'off'] as const, default: 'off' as const })
  .option('configs', { type: 'number', default: 40 })
  .option('seed', { type: 'number', default: 1 })
  .strict().parseSync();

/** A random small configuration whose activations dominate (small vocab relative to L·B). */
export function randomCase(rand: () => number, recompute: boolean): { model: LlamaConfig; s: StepSettings } {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  const KV = pick([1, 2]), G = pick([1, 2, 4]), hd = pick([4, 6, 8]), H = KV * G;
  const L = pick([16, 24, 32, 48, 64]), B = pick([1, 2, 3]);
  const model = resolveLlamaConfig({
    vocab_size: pick([96, 160, 256, 400, 1200]), hidden_size: pick([24, 32, 48]), intermediate_size: pick([40, 64, 96]), num_hidden_layers: pick([1, 2, 3]),
    num_attention_heads: H, num_key_value_heads: KV, head_dim: hd, max_position_embeddings: 256, tie_word_embeddings: rand() < 0.5,
  });
  const N = B * L;
  const s: StepSettings = {
    seqLen: L, batchSize: B, k: pick([4, 8]), mode: pick(['tail', 'renormalize'] as const), alpha: pick([0, 0.8, 1]), dropout: rand() < 0.3 ? 0.1 : 0,
    memory: { recompute, attentionQueryBlock: rand() < 0.5 ? Infinity : Math.max(4, L / 4), lossChunk: rand() < 0.5 ? Infinity : Math.ceil(N / 3) },
  };
  return { model, s };
}

/** The plan's input for a measured case. */
export function planInputOf(model: LlamaConfig, s: StepSettings, saved: PlanInput['saved']): PlanInput {
  return {
    model, seqLen: s.seqLen, batchSize: s.batchSize, gradAccum: s.gradAccum ?? 1, memory: s.memory!,
    loss: { k: s.k ?? 8, mode: s.mode ?? 'tail', alpha: s.alpha ?? 0.8 }, dropout: (s.dropout ?? 0) > 0, gradClip: true, saved,
  };
}

/** Non-negative least squares by cyclic coordinate descent on the normal equations. */
function nnls(A: number[][], b: number[], iters = 20000): number[] {
  const m = A[0].length, AtA = Array.from({ length: m }, (_, i) => Array.from({ length: m }, (_, j) => A.reduce((s, r) => s + r[i] * r[j], 0)));
  const Atb = Array.from({ length: m }, (_, i) => A.reduce((s, r, k) => s + r[i] * b[k], 0));
  const x = new Array(m).fill(0);
  for (let it = 0; it < iters; it++) {
    for (let i = 0; i < m; i++) {
      if (AtA[i][i] === 0) continue;
      let r = Atb[i];
      for (let j = 0; j < m; j++) if (j !== i) r -= AtA[i][j] * x[j];
      x[i] = Math.max(0, r / AtA[i][i]);
    }
  }
  return x;
}

await initBackend(argv.backend);
const saved = savedTensorsOf(argv.backend);
const rand = mulberry32(argv.seed);
const rows: { x: number[]; act: number; peak: number; fixed: number; name: string }[] = [];
for (let i = 0; i < argv.configs; i++) {
  const { model, s } = randomCase(rand, argv.recompute === 'on');
  const m = await measureStepPeak(model, s);
  const P = countParameters(model);
  const f = planFeatures(planInputOf(model, s, saved));
  const fixed = 4 * P; // weights, m, v and the gradients
  rows.push({ x: FEATURE_NAMES.map((n) => f[n]), act: m.peakBytes / 4 - fixed, peak: m.peakBytes / 4, fixed, name: JSON.stringify({ ...s, model: undefined, V: model.vocab_size, d: model.hidden_size, f: model.intermediate_size, n: model.num_hidden_layers, H: model.num_attention_heads, KV: model.num_key_value_heads, hd: model.head_dim, tie: model.tie_word_embeddings }) });
  process.stderr.write('.');
}
process.stderr.write('\n');
// Relative error: each row divided by its measured peak.
const coef = nnls(rows.map((r) => r.x.map((v) => v / r.peak)), rows.map((r) => r.act / r.peak));
const table = Object.fromEntries(FEATURE_NAMES.map((n, i) => [n, Number(coef[i].toFixed(3))]));
console.log(JSON.stringify(table));
let worst = 0;
for (const r of rows) {
  const planned = r.fixed + r.x.reduce((s, v, i) => s + v * coef[i], 0);
  const ratio = planned / r.peak;
  worst = Math.max(worst, Math.abs(ratio - 1));
  if (Math.abs(ratio - 1) > 0.08) console.log(ratio.toFixed(3), r.name);
}
console.log(`worst |planned/measured − 1| = ${(100 * worst).toFixed(1)} % over ${rows.length} configurations`);
