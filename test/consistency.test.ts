/**
 * Inputs that contradict each other are refused (issue 9): a teacher export carries its config and
 * tokenizer; precompute checks the prep's seq_len and tokenizer against them (also from an
 * onnxruntime-genai genai_config.json) and measures a symbolic logits width; train checks that its
 * validation windows and manifest belong to the logit dataset; exports refuse to replace files;
 * teacher compare explains a model without logits; `kd teacher <action> --help` is per action.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { saveCheckpoint } from '../lib/model/checkpoint.js';
import { initLlamaWeights } from '../lib/model/init.js';
import {
  addTopKOutputs, decodeModel, encodeModel, metadataOf, readOnnx, TOKENIZER_SHA256_KEY, writeOnnx,
} from '../lib/onnx/index.js';
import { openLogitDataset } from '../lib/shards/index.js';
import { run as exportStudent } from '../stages/export.js';
import { run as precompute } from '../stages/precompute.js';
import { run as prepRun } from '../stages/prep.js';
import { runCompare, runExport } from '../stages/teacher.js';
import { run as trainStudent } from '../stages/train.js';
import { makePrep, runKd, SEQ_LEN, teacherConfig, VOCAB, writeTeacher } from './precompute-fixture.js';

const CFG = { k: 8, max_windows: 16, rows_per_shard: 16, batch_size: 4, device: 'cpu' as const, quiet: true };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let dir: string, prep: string, tokenizer: string, ckpt: string;

beforeAll(async () => {
  ({ dir, prep } = await makePrep('consistency'));
  tokenizer = join(prep, 'tokenizer.json');
  ckpt = join(dir, 'ckpt');
  const cfg = teacherConfig();
  saveCheckpoint(ckpt, cfg, initLlamaWeights(cfg, 1), { tokenizer });
}, 120_000);

/** A copy of the prep's tokenizer.json with the ids of two tokens swapped: same size, other tokens. */
function otherTokenizer(path: string): string {
  const tok = JSON.parse(readFileSync(tokenizer, 'utf8'));
  const vocab = tok.model.vocab as Record<string, number>;
  const [a, b] = Object.keys(vocab).filter((t) => vocab[t] > 300).slice(0, 2);
  [vocab[a], vocab[b]] = [vocab[b], vocab[a]];
  writeFileSync(path, JSON.stringify(tok));
  return path;
}

describe('teacher export writes config.json and tokenizer.json beside the model', () => {
  it('beside model.onnx: the resolved config and the checkpoint tokenizer, whose sha256 is also in metadata_props', () => {
    const out = join(dir, 'export-a', 'model.onnx');
    const r = runExport({ checkpoint: ckpt, out });
    expect(r).toMatchObject({ config: join(dir, 'export-a', 'config.json'), tokenizer: join(dir, 'export-a', 'tokenizer.json') });
    expect(JSON.parse(readFileSync(r.config, 'utf8'))).toMatchObject({ max_position_embeddings: 64, vocab_size: VOCAB, hidden_size: 64 });
    expect(readFileSync(r.tokenizer!).equals(readFileSync(tokenizer))).toBe(true);
    expect(metadataOf(readOnnx(out))[TOKENIZER_SHA256_KEY]).toBe(sha(readFileSync(tokenizer)));
  });

  it('so precompute refuses a prep whose seq_len exceeds the exported context', async () => {
    const short = join(dir, 'ckpt-short');
    const cfg = teacherConfig({ max_position_embeddings: SEQ_LEN / 2 });
    saveCheckpoint(short, cfg, initLlamaWeights(cfg, 1), { tokenizer });
    const out = join(dir, 'export-short', 'model.onnx');
    runExport({ checkpoint: short, out });
    await expect(precompute({ ...CFG, teacher: out, prep, out: join(dir, 'logits-short') })).rejects.toThrow(
      `${join(dir, 'export-short', 'config.json')}: max_position_embeddings ${SEQ_LEN / 2} is smaller than the windows' seq_len ${SEQ_LEN}`);
    expect(existsSync(join(dir, 'logits-short'))).toBe(false);
  });

  it('a checkpoint without tokenizer.json exports with a one-line warning and no tokenizer record', () => {
    const bare = join(dir, 'ckpt-bare');
    const cfg = teacherConfig();
    saveCheckpoint(bare, cfg, initLlamaWeights(cfg, 1));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let r;
    try {
      r = runExport({ checkpoint: bare, out: join(dir, 'export-bare', 'model.onnx') });
      expect(err.mock.calls.map((c) => String(c[0]))).toEqual([`kd: ${join(bare, 'tokenizer.json')}: not found; the export carries no tokenizer, so precompute cannot check that a prep uses the teacher's\n`]);
    } finally {
      err.mockRestore();
    }
    expect(r.tokenizer).toBeNull();
    expect(existsSync(join(dir, 'export-bare', 'tokenizer.json'))).toBe(false);
    expect(metadataOf(readOnnx(r.out))[TOKENIZER_SHA256_KEY]).toBeUndefined();
  });

  it('an --out that is a directory is refused, also with --overwrite', () => {
    mkdirSync(join(dir, 'a-dir.onnx'), { recursive: true });
    expect(() => runExport({ checkpoint: ckpt, out: join(dir, 'a-dir.onnx'), overwrite: true })).toThrow(`${join(dir, 'a-dir.onnx')}: is a directory, not a file to write`);
  });

  it('kd export (student) puts the tokenizer sha256 into the ONNX too', () => {
    const r = exportStudent({ checkpoint: ckpt, out: join(dir, 'student-export') });
    expect(metadataOf(readOnnx(r.onnx.path))[TOKENIZER_SHA256_KEY]).toBe(sha(readFileSync(tokenizer)));
    expect(existsSync(join(dir, 'student-export', 'onnx', 'config.json'))).toBe(true);
  });
});

describe('precompute reads the context length from genai_config.json (onnxruntime-genai)', () => {
  it('model.context_length below seq_len is refused; search.max_length (a generation default) is not a limit', async () => {
    const sub = join(dir, 'genai');
    mkdirSync(sub, { recursive: true });
    const teacher = writeTeacher(join(sub, 'model.onnx'));
    const genai = (context: number) => writeFileSync(join(sub, 'genai_config.json'),
      JSON.stringify({ model: { type: 'llama', context_length: context, vocab_size: VOCAB }, search: { max_length: 20 } }));
    genai(SEQ_LEN - 1);
    const out = join(dir, 'logits-genai');
    await expect(precompute({ ...CFG, teacher, prep, out })).rejects.toThrow(
      `${join(sub, 'genai_config.json')}: model.context_length ${SEQ_LEN - 1} is smaller than the windows' seq_len ${SEQ_LEN} (${join(prep, 'windows.json')}); use a model with a longer context or kd prep --seq-len ≤ ${SEQ_LEN - 1}`);
    expect(existsSync(out)).toBe(false);
    genai(4096);
    expect((await precompute({ ...CFG, max_windows: 4, teacher, prep, out })).windows).toBe(4);
  });
});

describe('precompute refuses a prep tokenizer that is not the teacher\'s', () => {
  it('the same vocabulary size but other tokens (tokenizer.json beside the teacher), naming both files', async () => {
    const sub = join(dir, 'other-tok');
    mkdirSync(sub, { recursive: true });
    const teacher = writeTeacher(join(sub, 'model.onnx'));
    otherTokenizer(join(sub, 'tokenizer.json'));
    const out = join(dir, 'logits-other-tok');
    const err = await precompute({ ...CFG, teacher, prep, out }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^${tokenizer}: not the teacher's tokenizer \\(${join(sub, 'tokenizer.json')}; sha256 [0-9a-f]{12}… vs [0-9a-f]{12}…\\): the teacher's soft labels would name other tokens; make the prep with the teacher's tokenizer \\(kd prep --tokenizer ${join(sub, 'tokenizer.json')}\\)$`));
    expect(existsSync(out)).toBe(false);
    // The same tokenizer saved with other formatting is the same tokenizer.
    writeFileSync(join(sub, 'tokenizer.json'), JSON.stringify(JSON.parse(readFileSync(tokenizer, 'utf8')), null, 4));
    const ok = await precompute({ ...CFG, max_windows: 4, teacher, prep, out });
    expect(ok.windows).toBe(4);
    const m = (await openLogitDataset(out)).manifest;
    expect(m.teacher.tokenizer_sha256).toBe(sha(readFileSync(join(sub, 'tokenizer.json'))));
  });

  it('the sha256 in the ONNX metadata_props, when no tokenizer.json is beside it', async () => {
    const model = decodeModel(readOnnx(writeTeacher(join(dir, 'meta-tok.onnx'))));
    model.metadataProps = [{ key: TOKENIZER_SHA256_KEY, value: sha(readFileSync(otherTokenizer(join(dir, 'other-tokenizer.json')))) }];
    const teacher = join(dir, 'meta', 'model.onnx');
    mkdirSync(join(dir, 'meta'), { recursive: true });
    writeOnnx(teacher, encodeModel(model));
    await expect(precompute({ ...CFG, teacher, prep, out: join(dir, 'logits-meta') })).rejects
      .toThrow(`${tokenizer}: not the teacher's tokenizer (${teacher} metadata_props ${TOKENIZER_SHA256_KEY}; sha256`);
  });

  it('a teacher without any tokenizer record runs with a one-line warning (and the manifest says null)', async () => {
    const sub = join(dir, 'no-tok');
    mkdirSync(sub, { recursive: true });
    const teacher = writeTeacher(join(sub, 'model.onnx'));
    const out = join(dir, 'logits-no-tok');
    const r = await runKd(['precompute', '--teacher', teacher, '--prep', prep, '--out', out, '--k', '8', '--max-windows', '4', '--device', 'cpu']);
    expect(r.code).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('kd: warning'));
    expect(warnings).toEqual([`kd: warning: ${teacher}: no tokenizer.json beside it and no ${TOKENIZER_SHA256_KEY} in its metadata; cannot check that ${tokenizer} is the teacher's tokenizer`]);
    expect((await openLogitDataset(out)).manifest.teacher.tokenizer_sha256).toBeNull();
  }, 60_000);
});

/**
 * A teacher whose `logits` dim is symbolic and whose embedding has `embedRows` rows while its
 * lm_head has `vocab` rows (so only a run shows the real width).
 */
function symbolicTeacher(name: string, vocab: number, embedRows: number): string {
  const cfg = teacherConfig({ vocab_size: vocab, tie_word_embeddings: false });
  const model = decodeModel(readOnnx(writeTeacher(join(dir, `${name}-src.onnx`), cfg)));
  const g = model.graph!;
  const logits = g.output!.find((o) => o.name === 'logits')!;
  logits.type!.tensorType!.shape!.dim![2] = { dimParam: 'vocab' };
  const embed = g.initializer!.find((t) => t.name === 'model.embed_tokens.weight')!;
  const raw = embed.rawData!, D = cfg.hidden_size;
  const wide = new Uint8Array(embedRows * D * 4);
  wide.set(raw.subarray(0, Math.min(raw.length, wide.length)));
  embed.rawData = wide;
  embed.dims = [embedRows, D];
  const path = join(dir, `${name}.onnx`);
  writeOnnx(path, encodeModel(model));
  return path;
}

describe('a teacher with a symbolic logits dim narrower than its embedding', () => {
  it('is recorded with the width measured on the first batch, not the embedding rows', async () => {
    const teacher = symbolicTeacher('narrow-head', VOCAB, 576);
    const out = join(dir, 'logits-symbolic');
    await precompute({ ...CFG, max_windows: 8, teacher, prep, out });
    expect((await openLogitDataset(out)).manifest.tokenizer).toMatchObject({ vocab_size: VOCAB, real_vocab_size: VOCAB });
  });

  it('is refused when the measured width is below the tokenizer\'s', async () => {
    const teacher = symbolicTeacher('too-narrow', 500, VOCAB);
    const out = join(dir, 'logits-too-narrow');
    await expect(precompute({ ...CFG, teacher, prep, out })).rejects.toThrow(
      `${teacher}: teacher logits are 500 wide (measured on the first window; the graph declares the dim symbolically), fewer than the tokenizer's ${VOCAB} tokens (${tokenizer})`);
    expect(existsSync(out)).toBe(false);
  });
});

describe('train checks that prep and manifest belong to the logit dataset', () => {
  let data: string, teacher: string;
  const model = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  const student = (over: Record<string, unknown>) => trainStudent({ prep, data, model, max_steps: 1, batch_size: 4, eval_windows: 4, quiet: true, backend: 'wasm', ...over });

  beforeAll(async () => {
    teacher = runExport({ checkpoint: ckpt, out: join(dir, 'train-teacher', 'model.onnx') }).out;
    data = join(dir, 'logits-train');
    await precompute({ ...CFG, teacher, prep, out: data });
  }, 120_000);

  it('the manifest records the validation windows\' sha256', async () => {
    const m = (await openLogitDataset(data)).manifest;
    expect(m.windows.validation_sha256).toBe(sha(readFileSync(join(prep, 'validation.bin'))));
  });

  it('an edited validation.bin is refused naming the file', async () => {
    const p2 = join(dir, 'prep-edited');
    cpSync(prep, p2, { recursive: true });
    const bin = readFileSync(join(p2, 'validation.bin'));
    bin[10] ^= 1;
    writeFileSync(join(p2, 'validation.bin'), bin);
    await expect(student({ prep: p2, out: join(dir, 'st-edited') })).rejects
      .toThrow(new RegExp(`^${join(p2, 'validation.bin')}: sha256 [0-9a-f]{12}… differs from windows.json`));
  });

  it('another prep with the same tokenizer is refused naming its windows.json', async () => {
    const p3 = join(dir, 'prep-other');
    await prepRun({ out: p3, max_documents: 40, tokenizer, seq_len: SEQ_LEN, seed: 7, quiet: true });
    await expect(student({ prep: p3, out: join(dir, 'st-other') })).rejects
      .toThrow(`${join(p3, 'windows.json')}: not the prep the logits in ${join(data, 'manifest.json')} were computed from (train windows sha256`);
  }, 60_000);

  it('validation windows swapped consistently (validation.bin and windows.json) are refused by the manifest\'s sha256', async () => {
    const p4 = join(dir, 'prep-swapped');
    cpSync(prep, p4, { recursive: true });
    const meta = JSON.parse(readFileSync(join(p4, 'windows.json'), 'utf8'));
    const bin = readFileSync(join(p4, 'validation.bin'));
    bin[10] ^= 1;
    writeFileSync(join(p4, 'validation.bin'), bin);
    meta.splits.validation.sha256 = sha(bin);
    writeFileSync(join(p4, 'windows.json'), JSON.stringify(meta));
    await expect(student({ prep: p4, out: join(dir, 'st-swapped') })).rejects
      .toThrow(`${join(p4, 'validation.bin')}: not the validation windows of the prep the logits in ${join(data, 'manifest.json')} were computed from`);
  });

  it('a dataset written before the validation sha256 was recorded still trains, with a one-line warning', async () => {
    const old = join(dir, 'logits-old');
    cpSync(data, old, { recursive: true });
    const m = JSON.parse(readFileSync(join(old, 'manifest.json'), 'utf8'));
    delete m.windows.validation_sha256;
    delete m.teacher.tokenizer_sha256;
    writeFileSync(join(old, 'manifest.json'), JSON.stringify(m));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const s = await student({ data: old, out: join(dir, 'st-old'), quiet: false });
      expect(s.steps).toBe(1);
      const lines = err.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('kd: warning'));
      expect(lines).toEqual([`kd: warning: ${join(old, 'manifest.json')}: records no validation windows' sha256 (written by an older kd); the validation windows of ${prep} are checked only against its windows.json\n`]);
    } finally {
      err.mockRestore();
    }
  }, 120_000);

  it('an edited manifest vocabulary is one line naming manifest.json (not a TF.js gather error)', async () => {
    const edited = join(dir, 'logits-vocab');
    cpSync(data, edited, { recursive: true });
    const m = JSON.parse(readFileSync(join(edited, 'manifest.json'), 'utf8'));
    m.tokenizer.real_vocab_size = 400;
    m.tokenizer.vocab_size = 400;
    writeFileSync(join(edited, 'manifest.json'), JSON.stringify(m));
    await expect(student({ data: edited, out: join(dir, 'st-vocab') })).rejects.toThrow(
      `${join(edited, 'manifest.json')}: tokenizer.real_vocab_size 400 is not the ${VOCAB} tokens of ${tokenizer} whose sha256 it records (edited manifest?)`);
  });
});

describe('exports refuse to replace existing files', () => {
  it('kd teacher export --out notes.txt keeps the notes unless --overwrite', () => {
    const notes = join(dir, 'notes', 'notes.txt');
    mkdirSync(join(dir, 'notes'), { recursive: true });
    writeFileSync(notes, 'my notes\n');
    expect(() => runExport({ checkpoint: ckpt, out: notes })).toThrow(`${notes}: exists; --overwrite replaces it`);
    expect(readFileSync(notes, 'utf8')).toBe('my notes\n');
    expect(existsSync(join(dir, 'notes', 'config.json'))).toBe(false); // nothing written
    runExport({ checkpoint: ckpt, out: notes, overwrite: true });
    expect(metadataOf(readOnnx(notes), notes)[TOKENIZER_SHA256_KEY]).toBe(sha(readFileSync(tokenizer))); // an ONNX model now
  });

  it('a different config.json beside the --out is refused; an identical one is not', () => {
    const sub = join(dir, 'beside');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'config.json'), '{"mine": true}\n');
    expect(() => runExport({ checkpoint: ckpt, out: join(sub, 'model.onnx') })).toThrow(`${join(sub, 'config.json')}: exists; --overwrite replaces it`);
    expect(existsSync(join(sub, 'model.onnx'))).toBe(false);
    runExport({ checkpoint: ckpt, out: join(sub, 'model.onnx'), overwrite: true });
    runExport({ checkpoint: ckpt, out: join(sub, 'int4.onnx'), dtype: 'int4' }); // same config.json bytes: fp32 and int4 share it
    expect(existsSync(join(sub, 'int4.onnx'))).toBe(true);
  });

  it('kd export refuses an existing output (CLI: one line, exit 1, nothing written)', async () => {
    const out = join(dir, 'export-existing');
    mkdirSync(join(out, 'hf'), { recursive: true });
    writeFileSync(join(out, 'hf', 'model.safetensors'), 'not mine to lose');
    const r = await runKd(['export', '--checkpoint', ckpt, '--out', out]);
    expect([r.code, r.stderr]).toEqual([1, `kd: ${join(out, 'hf', 'model.safetensors')}: exists; --overwrite replaces it\n`]);
    expect(existsSync(join(out, 'onnx'))).toBe(false);
    expect(exportStudent({ checkpoint: ckpt, out, overwrite: true }).parameters).toBeGreaterThan(0);
  }, 60_000);
});

describe('teacher compare explains a model without logits', () => {
  it('a top-k graph made for precompute, and a model that is not a language model', async () => {
    const a = writeTeacher(join(dir, 'cmp-a.onnx'));
    const topk = join(dir, 'cmp-topk.onnx');
    writeOnnx(topk, addTopKOutputs(readOnnx(a), { k: 4, temperatures: [1] }));
    const opts = { prep, max_windows: 2, batch_size: 2, device: 'cpu', quiet: true };
    await expect(runCompare(a, topk, opts)).rejects.toThrow(
      `${topk}: ONNX model has no 'logits' output (outputs: topk_ids, topk_logits, log_z, logits_width): it is a top-k graph made for precompute, which keeps only the top-k of the logits; compare the exported models it was made from`);
    const model = decodeModel(readOnnx(a));
    model.graph!.output![0].name = 'scores';
    for (const n of model.graph!.node!) n.output = n.output!.map((o) => (o === 'logits' ? 'scores' : o));
    const scores = join(dir, 'cmp-scores.onnx');
    writeOnnx(scores, encodeModel(model));
    await expect(runCompare(scores, a, opts)).rejects.toThrow(
      `${scores}: ONNX model has no 'logits' output (outputs: scores): teacher compare needs two language models with a [batch, sequence, vocabulary] logits output`);
  });
});

describe('kd teacher <action> --help shows that action\'s options only', () => {
  it('export lists --overwrite and --dtype but not train\'s --lr; train lists --lr', async () => {
    const exp = await runKd(['teacher', 'export', '--help']);
    expect(exp.code).toBe(0);
    expect(exp.stdout).toContain('--overwrite');
    expect(exp.stdout).toContain('--dtype');
    expect(exp.stdout).not.toMatch(/--lr\b/);
    expect(exp.stdout).not.toContain('--max-windows');
    const tr = await runKd(['teacher', 'train', '--help']);
    expect(tr.stdout).toMatch(/--lr\b/);
    expect(tr.stdout).not.toContain('--external-data');
    const cmp = await runKd(['teacher', 'compare', '--help']);
    expect(cmp.stdout).toContain('--max-windows');
    expect(cmp.stdout).not.toContain('--dtype');
  }, 60_000);
});

