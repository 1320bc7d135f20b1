import { beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run as prep } from '../stages/prep.js';
import { runExport, runTrain as trainTeacher } from '../stages/teacher.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStudent } from '../stages/train.js';
import { run as evaluate } from '../stages/eval.js';
import { run as exportStudent } from '../stages/export.js';
import { loadCheckpoint } from '../lib/model/checkpoint.js';
import { openOnnxSession, runLogits } from '../lib/onnx/session.js';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

// The tiny pipeline of e2e.test.ts (40 Brown documents, vocab 512, seq_len 32, a few steps).
const dir = mkdtempSync(join(tmpdir(), 'kd-eval-report-'));
const p = join(dir, 'prep');
const logits = join(dir, 'logits');
const model = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };

beforeAll(async () => {
  await prep({ out: p, max_documents: 40, vocab_size: 512, seq_len: 32, quiet: true });
  await trainTeacher({ prep: p, out: join(dir, 'teacher'), model, max_steps: 10, batch_size: 8, lr: 1e-2, warmup_steps: 2, eval_windows: 16, quiet: true, backend: 'wasm' });
  runExport({ checkpoint: join(dir, 'teacher'), out: join(dir, 'teacher.onnx') });
  await precompute({ teacher: join(dir, 'teacher.onnx'), prep: p, out: logits, k: 8, max_windows: 32, rows_per_shard: 32, quiet: true, device: 'cpu' });
  const student = { prep: p, data: logits, model, max_steps: 4, batch_size: 8, eval_every: 2, eval_windows: 16, quiet: true, backend: 'wasm' as const };
  await trainStudent({ ...student, alpha: 0, out: join(dir, 'baseline') });
  await trainStudent({ ...student, alpha: 0.8, temperature: 2, out: join(dir, 'distilled') });
}, 120_000);

describe('kd eval plots', () => {
  it('writes PNG plots linked from report.md and states k, teacher and backend', async () => {
    const out = join(dir, 'report');
    const report = await evaluate({ prep: p, out, data: logits, teacher: join(dir, 'teacher.onnx'), baseline: join(dir, 'baseline'), distilled: join(dir, 'distilled'), max_windows: 8, stride: 0, quiet: true });
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    for (const f of ['training_curves.png', 'perplexity.png', 'topk_mass.png']) {
      expect(existsSync(join(out, f))).toBe(true);
      expect([...readFileSync(join(out, f)).subarray(0, 8)]).toEqual(PNG_MAGIC);
      expect(md).toContain(`](${f})`);
    }
    const c = report.conditions as { logits: { k: number; teacher: string; topk_mass: { mean: number } }; training_backend: Record<string, string> };
    expect(c.logits.k).toBe(8);
    expect(c.logits.teacher).toBe(join(dir, 'teacher.onnx'));
    expect(c.logits.topk_mass.mean).toBeGreaterThan(0);
    expect(c.logits.topk_mass.mean).toBeLessThanOrEqual(1);
    expect(c.training_backend).toEqual({ baseline: 'wasm', distilled: 'wasm' });
    expect(md).toMatch(/top-8/);
  }, 120_000);

  it('without --data there is no top-k plot', async () => {
    const out = join(dir, 'report-nodata');
    await evaluate({ prep: p, out, teacher: join(dir, 'teacher.onnx'), max_windows: 4, stride: 0, quiet: true });
    expect(existsSync(join(out, 'perplexity.png'))).toBe(true);
    expect(existsSync(join(out, 'topk_mass.png'))).toBe(false);
    expect(existsSync(join(out, 'training_curves.png'))).toBe(false);
    // The report is there now: a second eval into the same --out is refused before evaluating
    // (a missing model would otherwise be the error), and replaced with --overwrite.
    const before = readFileSync(join(out, 'report.json'), 'utf8');
    await expect(evaluate({ prep: p, out, teacher: join(dir, 'missing.onnx'), quiet: true })).rejects
      .toThrow(new Error(`${out}: holds an eval report already (report.json, report.md); --overwrite replaces it, or choose another --out`));
    expect(readFileSync(join(out, 'report.json'), 'utf8')).toBe(before);
    const again = await evaluate({ prep: p, out, teacher: join(dir, 'teacher.onnx'), max_windows: 2, stride: 0, overwrite: true, quiet: true });
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).conditions.scoring).toBe((again.conditions as { scoring: string }).scoring);
    expect((again.conditions as { scoring: string }).scoring).toBe('2 packed validation windows of 32 tokens');
  }, 60_000);

  it('an --out that is a file, or under one, is refused before evaluating', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'not a directory\n');
    for (const out of [file, join(file, 'report')]) {
      await expect(evaluate({ prep: p, out, teacher: join(dir, 'missing.onnx'), quiet: true })).rejects
        .toThrow(new Error(`${file}: is a file, expected the report directory (--out)`));
    }
    await expect(evaluate({ prep: p, out: file, teacher: join(dir, 'missing.onnx'), overwrite: true, quiet: true })).rejects
      .toThrow(`${file}: is a file, expected the report directory (--out)`);
  });

  it('a model that cannot be evaluated leaves no output directory; a short context is named', async () => {
    const out = join(dir, 'report-bad');
    await expect(evaluate({ prep: p, out, teacher: join(dir, 'missing.onnx'), quiet: true })).rejects.toThrow(`${join(dir, 'missing.onnx')}: model not found`);
    expect(existsSync(out)).toBe(false);
    const short = join(dir, 'short');
    mkdirSync(short);
    copyFileSync(join(dir, 'teacher.onnx'), join(short, 'model.onnx'));
    const teacherConfig = JSON.parse(readFileSync(join(dir, 'teacher', 'config.json'), 'utf8'));
    writeFileSync(join(short, 'config.json'), JSON.stringify({ ...teacherConfig, max_position_embeddings: 16 }));
    await expect(evaluate({ prep: p, out, teacher: join(short, 'model.onnx'), quiet: true })).rejects
      .toThrow(`${join(short, 'config.json')}: max_position_embeddings 16 is smaller than the windows' seq_len 32`);
    expect(existsSync(out)).toBe(false);
  });
});

describe('kd export', () => {
  it('fp32 ONNX logits equal the TF.js model (≤ 1e-4); the HF copy is complete', async () => {
    const out = join(dir, 'export-fp32');
    const r = exportStudent({ checkpoint: join(dir, 'distilled'), out, dtype: 'fp32' });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) expect(existsSync(join(out, 'hf', f))).toBe(true);
    const tf = await import('@tensorflow/tfjs-core');
    const { initBackend } = await import('../lib/backend/select.js');
    const { LlamaModel } = await import('../lib/model/llama.js');
    await initBackend('cpu');
    const { cfg, weights } = loadCheckpoint(join(dir, 'distilled'));
    const B = 2, L = 16, ids = Array.from({ length: B * L }, (_, i) => (i * 37 + 5) % cfg.vocab_size);
    const m = new LlamaModel(cfg, weights);
    const expected = tf.tidy(() => m.forward(tf.tensor2d(ids, [B, L], 'int32')).dataSync() as Float32Array);
    m.variables().forEach((v) => v.dispose());
    const { logits: got } = await runLogits(await openOnnxSession(r.onnx.path, { device: 'cpu' }), Int32Array.from(ids), B, L);
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
    expect(got.length).toBe(expected.length);
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
    // The F16 HF copy reloads with the same names and shapes.
    const f16 = exportStudent({ checkpoint: join(dir, 'distilled'), out: join(dir, 'export-f16'), dtype: 'fp16', safetensors_dtype: 'F16' });
    const back = loadCheckpoint(f16.safetensors.dir);
    expect([...back.weights.keys()].sort()).toEqual([...weights.keys()].sort());
  }, 60_000);

  it('int4 ONNX runs and gives finite logits', async () => {
    const r = exportStudent({ checkpoint: join(dir, 'distilled'), out: join(dir, 'export-int4'), dtype: 'int4', block_size: 16 });
    const { logits: got, dims } = await runLogits(await openOnnxSession(r.onnx.path, { device: 'cpu' }), Int32Array.from({ length: 16 }, (_, i) => i + 3), 1, 16);
    expect(dims).toEqual([1, 16, 512]);
    expect(got.every(Number.isFinite)).toBe(true);
  }, 60_000);
});
