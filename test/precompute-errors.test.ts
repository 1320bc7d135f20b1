import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readWindows } from '../lib/data/windows.js';
import { decodeModel, encodeModel, readOnnx, writeOnnx } from '../lib/onnx/index.js';
import { openLogitDataset, readManifestFile, workerManifestFile } from '../lib/shards/index.js';
import { run as precompute } from '../stages/precompute.js';
import { makePrep, runKd, SEQ_LEN, teacherConfig, VOCAB, writeTeacher } from './precompute-fixture.js';

const CFG = { k: 8, max_windows: 96, rows_per_shard: 16, batch_size: 4, device: 'cpu' as const, quiet: true };
let dir: string, prep: string, teacher: string;

beforeAll(async () => {
  ({ dir, prep } = await makePrep('errors'));
  teacher = writeTeacher(join(dir, 'teacher.onnx'));
});

/** `kd precompute` through the CLI: expects exit code 1 and exactly one stderr line `kd: <message>`. */
async function cliError(over: Record<string, string>): Promise<string> {
  const flags = { teacher, prep, out: join(dir, 'cli-out'), k: '8', 'max-windows': '32', device: 'cpu', ...over };
  const r = await runKd(['precompute', '--quiet', ...Object.entries(flags).flatMap(([f, v]) => [`--${f}`, v])]);
  expect(r.code).toBe(1);
  expect(r.stderr.endsWith('\n') && r.stderr.indexOf('\n') === r.stderr.length - 1).toBe(true);
  return r.stderr.replace(/^kd: /, '').trimEnd();
}

describe('precompute: bad inputs get one line (and exit code 1 through the CLI)', () => {
  it('a file that is not ONNX, and a missing one', async () => {
    const bad = join(dir, 'notes.onnx');
    writeFileSync(bad, 'these are my notes, not a model\n');
    expect(await cliError({ teacher: bad })).toMatch(new RegExp(`^${bad}: not an ONNX model \\(.+\\)$`));
    await expect(precompute({ ...CFG, teacher: join(dir, 'nope.onnx'), prep, out: join(dir, 'x') })).rejects.toThrow(`${join(dir, 'nope.onnx')}: ONNX file not found`);
  });

  it('an ONNX model without a logits output', async () => {
    const model = decodeModel(readOnnx(teacher));
    model.graph!.output![0].name = 'scores';
    for (const n of model.graph!.node!) n.output = n.output!.map((o) => (o === 'logits' ? 'scores' : o));
    const path = join(dir, 'scores.onnx');
    writeOnnx(path, encodeModel(model));
    expect(await cliError({ teacher: path })).toBe(`${path}: ONNX model has no 'logits' output (outputs: scores)`);
  });

  it('a teacher with a smaller vocabulary than the tokenizer, and k larger than the vocabulary', async () => {
    const small = writeTeacher(join(dir, 'small.onnx'), teacherConfig({ vocab_size: 500 }));
    const out = join(dir, 'x');
    await expect(precompute({ ...CFG, teacher: small, prep, out })).rejects
      .toThrow(`${small}: teacher vocabulary (500) is smaller than the tokenizer's (512, ${join(prep, 'tokenizer.json')})`);
    await expect(precompute({ ...CFG, teacher, prep, out, k: 600 })).rejects
      .toThrow(`precompute config: k = 600 is larger than the vocabulary (512 tokens in ${join(prep, 'tokenizer.json')})`);
    expect(await cliError({ k: '600', out })).toBe(`--k = 600 is larger than the vocabulary (512 tokens in ${join(prep, 'tokenizer.json')})`); // set by the flag: named
    expect(existsSync(out)).toBe(false); // refused before any output
  });

  it('a windows seq_len beyond the context in the config.json beside the teacher (as Optimum exports it)', async () => {
    const sub = join(dir, 'short-context');
    mkdirSync(sub, { recursive: true });
    const short = join(sub, 'model.onnx');
    copyFileSync(teacher, short);
    writeFileSync(join(sub, 'config.json'), JSON.stringify({ model_type: 'llama', max_position_embeddings: SEQ_LEN - 1 }));
    const out = join(dir, 'x-short');
    await expect(precompute({ ...CFG, teacher: short, prep, out })).rejects.toThrow(
      `${join(sub, 'config.json')}: max_position_embeddings ${SEQ_LEN - 1} is smaller than the windows' seq_len ${SEQ_LEN} (${join(prep, 'windows.json')}); use a model with a longer context or kd prep --seq-len ≤ ${SEQ_LEN - 1}`);
    expect(existsSync(out)).toBe(false);
    writeFileSync(join(sub, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_positions: SEQ_LEN }));
    expect((await precompute({ ...CFG, max_windows: 8, teacher: short, prep, out })).windows).toBe(8); // long enough: runs
  });

  it('repeated or non-positive temperatures', async () => {
    for (const temperatures of [[2, 1, 2], [1, 0]]) {
      await expect(precompute({ ...CFG, teacher, prep, out: join(dir, 'x-temps'), temperatures })).rejects
        .toThrow(`precompute config: temperatures = ${JSON.stringify(temperatures)} must be a non-empty list of distinct numbers > 0`);
    }
    expect(existsSync(join(dir, 'x-temps'))).toBe(false);
  });

  it('an empty window file', async () => {
    const p2 = join(dir, 'prep-empty');
    cpSync(prep, p2, { recursive: true });
    truncateSync(join(p2, 'train.bin'), 0);
    expect(await cliError({ prep: p2 })).toBe(`${join(p2, 'train.bin')}: empty window file`);
    expect(existsSync(join(dir, 'cli-out'))).toBe(false); // refused before any output
  });
});

describe('precompute: teacher vocabulary wider than the tokenizer (padded rows)', () => {
  const padded = (fill: (row: Float32Array, w: Float32Array, D: number) => void) => {
    const cfg = teacherConfig({ vocab_size: 576, tie_word_embeddings: false });
    return writeTeacher(join(dir, `padded-${Math.random().toString(36).slice(2)}.onnx`), cfg, 3, (w) => {
      const head = w.get('lm_head.weight')!.data, D = cfg.hidden_size;
      for (let r = VOCAB; r < 576; r++) fill(head.subarray(r * D, (r + 1) * D), head, D);
    });
  };

  it('is accepted when padded rows stay out of the top-k; the manifest records both sizes', async () => {
    const t = padded((row) => row.fill(0)); // logit 0: below the real tokens the teacher favours
    const out = join(dir, 'padded-ok');
    await precompute({ ...CFG, teacher: t, prep, out, max_windows: 32 });
    const ds = await openLogitDataset(out);
    expect(ds.manifest.tokenizer).toMatchObject({ vocab_size: 576, real_vocab_size: 512 });
    const ids = (await ds.readAll()).flatMap((r) => [...r.topk_ids]);
    expect(Math.max(...ids)).toBeLessThan(VOCAB);
  });

  it('stops naming the window when a padded row reaches the top-k', async () => {
    const t = padded((row, head, D) => row.set(head.subarray(0, D).map((x) => x * 50)));
    const err = await precompute({ ...CFG, teacher: t, prep, out: join(dir, 'padded-bad') }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^${t}: the teacher ranks id (5[1-7]\\d) in its top-k \\(window \\d+, position \\d+\\) but ${join(prep, 'tokenizer.json')} has only 512 tokens: a teacher/tokenizer mismatch \\(make the prep with the teacher's tokenizer: kd prep --tokenizer <its tokenizer.json>\\) or padded vocabulary rows that carry mass$`));
  });
});

describe('precompute: a teacher emitting NaN', () => {
  it('stops naming the global window, and leaves nothing that looks complete', async () => {
    // Token X's embedding row is NaN: the first window containing X (in the second shard) breaks.
    const w = readWindows(prep, 'train'), L = SEQ_LEN;
    const firstWindow = new Map<number, number>();
    for (let r = 0; r < CFG.max_windows; r++) for (let t = 0; t < L; t++) {
      const id = w.ids[r * (L + 1) + t];
      if (!firstWindow.has(id)) firstWindow.set(id, r);
    }
    const [x, win] = [...firstWindow].find(([, r]) => r >= 18 && r < 32)!;
    const cfg = teacherConfig({ tie_word_embeddings: false });
    const nan = writeTeacher(join(dir, 'nan.onnx'), cfg, 1, (wt) => wt.get('model.embed_tokens.weight')!.data.fill(NaN, x * cfg.hidden_size, (x + 1) * cfg.hidden_size));
    const out = join(dir, 'nan-out');
    const err = await precompute({ ...CFG, teacher: nan, prep, out }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(new RegExp(`^${nan}: teacher logits are NaN/Inf at window ${win}, position \\d+$`));
    expect(readdirSync(out).sort()).toEqual(['manifest.worker-00000-of-00001.json', 'shard-00000.parquet']);
    const progress = await readManifestFile(join(out, workerManifestFile(0, 1)));
    expect([progress.complete, progress.shards.map((s) => s.file)]).toEqual([false, ['shard-00000.parquet']]);
    await expect(openLogitDataset(out)).rejects.toThrow(`${out}/manifest.json: not found, but 1 worker manifest(s) are`);
  });
});

describe('truncated and foreign shards (training and inspect)', () => {
  let good: string, other: string;
  beforeAll(async () => {
    good = join(dir, 'good');
    other = join(dir, 'other');
    await precompute({ ...CFG, teacher, prep, out: good });
    await precompute({ ...CFG, teacher: writeTeacher(join(dir, 'other.onnx'), teacherConfig(), 9), prep, out: other, k: 4 });
  });
  const copyOf = (name: string) => {
    const d = join(dir, `${name}-${Math.random().toString(36).slice(2)}`);
    cpSync(good, d, { recursive: true });
    return d;
  };
  const setEntry = (d: string, file: string, from: string) => {
    const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8'));
    const src = JSON.parse(readFileSync(join(from, 'manifest.json'), 'utf8')).shards.find((s: { file: string }) => s.file === file);
    const e = m.shards.find((s: { file: string }) => s.file === file);
    m.totals.bytes += src.bytes - e.bytes;
    Object.assign(e, { bytes: src.bytes, sha256: src.sha256 });
    writeFileSync(join(d, 'manifest.json'), JSON.stringify(m));
  };

  it('a truncated shard: training refuses it, kd inspect reports it and exits 1', async () => {
    const d = copyOf('trunc'), shard = join(d, 'shard-00002.parquet');
    const size = readFileSync(shard).length;
    truncateSync(shard, size - 100);
    await expect(openLogitDataset(d)).rejects.toThrow(`${shard}: truncated or corrupt shard (${size - 100} bytes, manifest says ${size})`);
    const r = await runKd(['inspect', d, '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`kd: ${d}: 1 of 6 shard(s) failed the integrity check: ${shard}: truncated or corrupt shard (${size - 100} bytes, manifest says ${size})\n`);
    const s = JSON.parse(r.stdout);
    expect([s.shards_ok, s.shards[2].ok, s.teacher_stats.positions]).toEqual([5, false, 80 * SEQ_LEN]);
  });

  it('a shard from another dataset: size, sha256, first sample id or k', async () => {
    const d1 = copyOf('foreign'), s1 = join(d1, 'shard-00001.parquet');
    copyFileSync(join(other, 'shard-00001.parquet'), s1);
    await expect(openLogitDataset(d1)).rejects.toThrow(new RegExp(`^${s1}: shard does not match manifest \\(\\d+ bytes, manifest says \\d+; a complete Parquet file: a shard from another dataset\\?\\)$`));

    const d2 = copyOf('swapped'), s2 = join(d2, 'shard-00001.parquet'); // same size, other bytes
    const bytes = readFileSync(s2);
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(s2, bytes);
    await expect((await openLogitDataset(d2)).readAll()).rejects.toThrow(new RegExp(`^${s2}: shard does not match manifest \\(sha256 [0-9a-f]{12}… expected [0-9a-f]{12}…: a shard from another dataset, or damaged\\)$`));

    const d3 = copyOf('moved'), s3 = join(d3, 'shard-00001.parquet'); // listed hash, wrong place
    copyFileSync(join(good, 'shard-00000.parquet'), s3);
    const m3 = JSON.parse(readFileSync(join(d3, 'manifest.json'), 'utf8'));
    const e0 = m3.shards[0];
    Object.assign(m3.shards[1], { bytes: e0.bytes, sha256: e0.sha256 });
    m3.totals.bytes = m3.shards.reduce((a: number, s: { bytes: number }) => a + s.bytes, 0);
    writeFileSync(join(d3, 'manifest.json'), JSON.stringify(m3));
    await expect((await openLogitDataset(d3)).readAll()).rejects.toThrow(`${s3}: shard does not match manifest (first_sample_id=0 expected 16)`);

    const d4 = copyOf('k4'), s4 = join(d4, 'shard-00001.parquet');
    copyFileSync(join(other, 'shard-00001.parquet'), s4);
    setEntry(d4, 'shard-00001.parquet', other);
    await expect((await openLogitDataset(d4)).readAll()).rejects.toThrow(`${s4}: shard does not match manifest (k=4 expected 8)`);
  });
});
