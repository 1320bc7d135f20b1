/** kd cascade end to end on random-weight models: the curve's ends are the two models' own perplexities. */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluateOnnx } from '../lib/metrics/onnx-eval.js';
import { forwardFlopsPerToken } from '../lib/metrics/cascade.js';
import { kdCli } from '../pipelines/cli.js';
import { run as cascade } from '../stages/cascade.js';
import { makePrep, SEQ_LEN, teacherConfig, writeTeacher } from './precompute-fixture.js';

let dir = '', prep = '', student = '', teacher = '';
const small = teacherConfig({ hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 });
const big = teacherConfig();

beforeAll(async () => {
  ({ dir, prep } = await makePrep('cascade'));
  // Each model with config.json beside it, as kd export writes them.
  for (const [name, c, seed] of [['s', small, 3], ['t', big, 4]] as const) {
    mkdirSync(join(dir, name));
    writeTeacher(join(dir, name, 'model.onnx'), c, seed);
    writeFileSync(join(dir, name, 'config.json'), JSON.stringify(c));
  }
  student = join(dir, 's', 'model.onnx');
  teacher = join(dir, 't', 'model.onnx');
  copyFileSync(student, join(dir, 'bare.onnx'));
}, 120_000);

describe('kd cascade', () => {
  it('routes nothing at the low end (the student\'s ppl), everything at the high end (the teacher\'s), with FLOPs between', async () => {
    const out = join(dir, 'out');
    const s = await cascade({ student, teacher, prep, out, max_windows: 6, batch_size: 4, device: 'cpu', quiet: true });
    const [es, et] = await Promise.all([student, teacher].map((m) => evaluateOnnx(m, { prep, batchSize: 4, maxWindows: 6, device: 'cpu' })));
    expect(s.scored_tokens).toBe(es.scored_tokens);
    const logClose = (a: number, b: number) => expect(Math.log(a)).toBeCloseTo(Math.log(b), 4);
    logClose(s.student.ppl, es.ppl);
    logClose(s.teacher.ppl, et.ppl);
    for (const c of ['max_prob', 'entropy']) {
      const pts = s.points.filter((p) => p.confidence === c);
      const none = pts.find((p) => p.teacher_share === 0)!, all = pts.find((p) => p.teacher_share === 1)!;
      logClose(none.ppl, es.ppl);
      logClose(all.ppl, et.ppl);
      expect(all.flops_per_token).toBe(forwardFlopsPerToken(small) + forwardFlopsPerToken(big));
      const mid = pts.filter((p) => p.teacher_share > 0 && p.teacher_share < 1);
      expect(mid.length).toBeGreaterThan(5);
      for (const p of mid) expect(p.flops_per_token).toBeCloseTo(none.flops_per_token + p.teacher_share * forwardFlopsPerToken(big), 0);
    }
    for (const f of ['cascade.json', 'cascade.md', 'cascade.png']) expect(existsSync(join(out, f))).toBe(true);
    // The ends are finite thresholds in cascade.json (JSON turns Infinity into null): 2 and ln V + 1.
    const written = JSON.parse(readFileSync(join(out, 'cascade.json'), 'utf8')).points as { confidence: string; threshold: number | null }[];
    expect(written.filter((p) => p.confidence === 'max_prob').map((p) => p.threshold).at(-1)).toBe(2);
    expect(written.filter((p) => p.confidence === 'entropy').map((p) => p.threshold).at(-1)).toBeCloseTo(Math.log(512) + 1, 12);
    await expect(cascade({ student, teacher, prep, out, max_windows: 6, device: 'cpu', quiet: true })).rejects.toThrow(/cascade.json exists: pass --overwrite/);
  }, 60_000);

  it('--config gives the settings, a flag overrides them; the report equals run()\'s', async () => {
    const direct = await cascade({ student, teacher, prep, out: join(dir, 'direct'), max_windows: 3, batch_size: 2, confidence: ['entropy'], device: 'cpu', quiet: true });
    const file = join(dir, 'cascade.json');
    writeFileSync(file, JSON.stringify({ student, teacher, prep, out: join(dir, 'via-config'), max_windows: 5, batch_size: 2, confidence: ['entropy'], device: 'cpu', quiet: true }));
    await (await kdCli(['cascade', '--config', file, '--max-windows', '3'])).parseAsync();
    const written = JSON.parse(readFileSync(join(dir, 'via-config', 'cascade.json'), 'utf8'));
    expect(direct.scored_tokens).toBe(3 * SEQ_LEN); // 3 windows, not the file's 5: the flag won
    expect(written.scored_tokens).toBe(direct.scored_tokens);
    expect(written.points).toEqual(JSON.parse(JSON.stringify(direct.points)));
    writeFileSync(file, JSON.stringify({ student, teacher, max_windows: -3 }));
    await expect(kdCli(['cascade', '--config', file]).then((c) => c.parseAsync())).rejects.toThrow(new Error(`${file}: max_windows = -3 must be an integer in [0, ${Number.MAX_SAFE_INTEGER}]`));
  }, 60_000);

  it('refuses a model without config.json and models of different vocab, naming the file', async () => {
    await expect(cascade({ student: join(dir, 'bare.onnx'), teacher, prep, out: join(dir, 'o2'), quiet: true })).rejects.toThrow(/bare.onnx: no config.json beside it/);
    const other = join(dir, 'v');
    mkdirSync(other);
    copyFileSync(student, join(other, 'model.onnx'));
    writeFileSync(join(other, 'config.json'), JSON.stringify({ ...small, vocab_size: 1000 }));
    await expect(cascade({ student: join(other, 'model.onnx'), teacher, prep, out: join(dir, 'o3'), quiet: true })).rejects.toThrow(/vocab_size 1000 is not the teacher's 512/);
    expect(existsSync(join(dir, 'o3'))).toBe(false);
  }, 60_000);
});
