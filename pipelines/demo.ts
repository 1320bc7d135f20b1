#!/usr/bin/env -S npx tsx
/**
 * The demo: prep → teacher export → precompute → train (baseline and distilled, in parallel: each
 * TF.js wasm process uses one core) → eval. Every step is a `kd` stage with a config from
 * pipelines/configs/; the report lands in runs/demo/report.md.
 */
import { $, fs } from 'zx';

$.verbose = true;
const kd = ['node', 'pipelines/kd.js']; // one process: Ctrl-C reaches kd once (npx tsx re-sends it)
const started = Date.now();

await $`${kd} prep --out runs/prep --tokenizer data/teacher/tokenizer.json --overwrite`;
await $`${kd} teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite`;
await $`${kd} precompute --config pipelines/configs/precompute.json`;
await fs.remove('runs/demo');
await Promise.all([
  $`${kd} train --config pipelines/configs/student.json --alpha 0 --out runs/demo/baseline --quiet`,
  $`${kd} train --config pipelines/configs/student.json --out runs/demo/distilled`,
]);
await $`${kd} eval --teacher runs/teacher/model.onnx --baseline runs/demo/baseline --distilled runs/demo/distilled --data runs/logits --out runs/demo`;
console.error(`demo: done in ${((Date.now() - started) / 60000).toFixed(1)} min; report in runs/demo/report.md`);
