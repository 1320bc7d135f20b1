import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run as prep } from '../stages/prep.js';
import { runExport, runTrain as trainTeacher } from '../stages/teacher.js';
import { run as precompute } from '../stages/precompute.js';
import { run as trainStudent } from '../stages/train.js';
import { run as evaluate } from '../stages/eval.js';

// The real pipeline on a small slice of the shipped corpus: every stage, every output.
describe('end to end: prep → teacher → precompute → train → eval', () => {
  it('runs on 40 Brown documents and reports finite, ordered results', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kd-e2e-'));
    const p = join(dir, 'prep');
    await prep({ out: p, max_documents: 40, vocab_size: 512, seq_len: 32, quiet: true });
    const model = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
    const teacher = await trainTeacher({ prep: p, out: join(dir, 'teacher'), model, max_steps: 30, batch_size: 8, lr: 1e-2, warmup_steps: 5, eval_windows: 16, quiet: true, backend: 'wasm' });
    expect(teacher.val_loss).toBeLessThan(Math.log(512)); // learned something beyond uniform
    const onnx = join(dir, 'teacher.onnx');
    runExport({ checkpoint: join(dir, 'teacher'), out: onnx });
    const logits = join(dir, 'logits');
    const pre = await precompute({ teacher: onnx, prep: p, out: logits, k: 8, max_windows: 48, rows_per_shard: 32, quiet: true, device: 'cpu' });
    expect(pre.shards).toBe(2);
    expect(readdirSync(logits).sort()).toEqual(['manifest.json', 'shard-00000.parquet', 'shard-00001.parquet']);
    renameSync(onnx, `${onnx}.away`); // training must not need the teacher
    const student = { prep: p, data: logits, model, max_steps: 4, batch_size: 8, eval_windows: 16, quiet: true, backend: 'wasm' as const };
    const baseline = await trainStudent({ ...student, alpha: 0, out: join(dir, 'baseline') });
    const distilled = await trainStudent({ ...student, alpha: 0.8, temperature: 2, out: join(dir, 'distilled') });
    renameSync(`${onnx}.away`, onnx);
    // A finished run is never overwritten by accident.
    await expect(trainStudent({ ...student, alpha: 0, out: join(dir, 'baseline') })).rejects.toThrow(/holds a training run already; --resume continues it, --overwrite starts afresh/);
    expect(baseline.steps).toBe(4);
    expect(distilled.steps).toBe(4);
    for (const out of ['baseline', 'distilled']) {
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'train.json', 'metrics.jsonl', 'epoch-1/model.safetensors']) {
        expect(existsSync(join(dir, out, f))).toBe(true);
      }
    }
    const report = await evaluate({ prep: p, out: join(dir, 'report'), teacher: onnx, baseline: join(dir, 'baseline'), distilled: join(dir, 'distilled'), max_windows: 16, stride: 0, quiet: true });
    const json = JSON.parse(readFileSync(join(dir, 'report', 'report.json'), 'utf8'));
    for (const role of ['teacher', 'baseline', 'distilled']) {
      expect(Number.isFinite(json[role].ppl)).toBe(true);
      expect(json[role].parameters).toBeGreaterThan(0);
      expect(json[role].tokens_per_s).toBeGreaterThan(0);
    }
    // The trained teacher beats the 4-step students; ONNX Runtime agrees with the trainer's TF.js number.
    expect(json.teacher.ppl).toBeLessThan(json.baseline.ppl);
    expect(Math.log(json.teacher.ppl)).toBeCloseTo(teacher.val_loss, 3);
    expect(report.conditions).toBeDefined();
    expect(readFileSync(join(dir, 'report', 'report.md'), 'utf8')).toMatch(/\| teacher \|/);
  });
});
