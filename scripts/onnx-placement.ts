/**
 * Which precision each op of an ONNX model runs in on ONNX Runtime's CPU provider, after ORT's
 * optimizations (inserted Casts, fp16 weights stored as fp32). Usage:
 *   npx tsx scripts/onnx-placement.ts runs/teacher/model-fp16.onnx [more.onnx ...]
 */
import { cpuPlacement } from '../lib/onnx/placement.js';

for (const path of process.argv.slice(2)) {
  const r = await cpuPlacement(path);
  console.log(`${path}: ${r.insertedCasts} Casts inserted by ORT; weights (rank ≥ 2) ${JSON.stringify(r.weights)}`);
  for (const [op, sigs] of Object.entries(r.floatInputs)) if (sigs.some((s) => s !== '-')) console.log(`  ${op.padEnd(34)} ${sigs.join(' | ')}`);
}
