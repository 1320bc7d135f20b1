/**
 * Cross-tokenizer distillation end to end at tiny size: a teacher prep (BPE 512, 32-token windows)
 * and a student prep with its own BPE (300, 24-token windows) over the same 40 Brown documents;
 * `kd precompute --spans`, then `kd train --loss uld` on the student prep. Checks the stored spans
 * against the tokenizer's own decoding, the pairing (aligned positions have read the same text),
 * that α = 0 trains on exactly the same windows, and the refusals (no spans, other text, wrong loss).
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { readWindows } from '../lib/data/windows.js';
import { convertDataset } from '../lib/shards/convert.js';
import { layoutOf, mergeDatasets, openLogitDataset, readManifest, readShard, sha256File } from '../lib/shards/index.js';
import { tokenByteLengths } from '../lib/tokenizer/byte-lengths.js';
import { loadTokenizer } from '../lib/tokenizer/tokenizer.js';
import { crossTokenizerData, openCrossTokenizer } from '../lib/train/cross-tokenizer.js';
import { shardData } from '../lib/train/shard-data.js';
import { run as precompute } from '../stages/precompute.js';
import { run as prepStage } from '../stages/prep.js';
import { run as trainStage } from '../stages/train.js';
import { fileHashes, makePrep, SEQ_LEN, writeTeacher } from './precompute-fixture.js';

let dir = '', prep = '', student = '', teacher = '';
const at = (name: string) => join(dir, name);
const common = () => ({ teacher, prep, k: 8, max_windows: 6, rows_per_shard: 4, batch_size: 2, quiet: true, device: 'cpu' });
const tiny = () => ({ prep: student, max_steps: 3, batch_size: 2, quiet: true, backend: 'cpu', eval_windows: 2, warmup_steps: 1, model: { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 } });
const metrics = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.loss !== undefined);

beforeAll(async () => {
  await initBackend('cpu');
  ({ dir, prep } = await makePrep('xtok'));
  student = at('student');
  await prepStage({ out: student, max_documents: 40, vocab_size: 300, seq_len: 24, quiet: true });
  await prepStage({ out: at('other'), max_documents: 30, vocab_size: 300, seq_len: 24, quiet: true });
  teacher = writeTeacher(at('teacher.onnx'));
  await precompute({ ...common(), spans: true, out: at('spans') });
  await precompute({ ...common(), out: at('plain') });
}, 240_000);

describe('kd precompute --spans', () => {
  it("stores each input token's byte span in the train text: contiguous across windows, the tokenizer's own decoding as reference", async () => {
    const m = await readManifest(at('spans'));
    const w = readWindows(prep, 'train'), L = SEQ_LEN, tok = loadTokenizer(join(prep, 'tokenizer.json'));
    expect(m.spans).toMatchObject({ unit: 'utf-8 bytes', dtype: 'uint16', tokenizer: 'tokenizer.json', eos_id: tok.eosId, bos_id: null, train_documents: w.meta.splits.train.documents, train_bytes: w.meta.splits.train.bytes });
    expect(await sha256File(at('spans/tokenizer.json'))).toBe(m.tokenizer.sha256);
    const rows = (await Promise.all(m.shards.map((e) => readShard(join(at('spans'), e.file), layoutOf(m))))).flat();
    expect(rows).toHaveLength(6);
    const len = tokenByteLengths(tok.path);
    for (let r = 0; r < rows.length; r++) {
      const sp = rows[r].byte_spans!;
      // the window starts after the decoded text of every stream token before it (the reference: HF decode, EOS skipped)
      const before = await tok.decode(w.ids.subarray(0, r * (L + 1)).filter((_, i) => i % (L + 1) !== L), true);
      expect(sp[0]).toBe(Buffer.byteLength(before));
      for (let t = 0; t < L; t++) {
        expect(sp[2 * t + 1] - sp[2 * t]).toBe(len[rows[r].input_ids[t]]);
        if (t > 0) expect(sp[2 * t]).toBe(sp[2 * t - 1]);
      }
      if (r > 0) expect(sp[0]).toBe(rows[r - 1].byte_spans![2 * L - 1]);
    }
    const last = rows[5];
    expect(m.spans!.text_bytes).toBe(last.byte_spans![2 * L - 1] + len[last.target_ids[L - 1]]);
  });

  it('two workers in separate directories merge into the one-worker dataset, tokenizer.json included', async () => {
    await precompute({ ...common(), spans: true, out: at('w0'), shard_index: 0, num_shards: 2 });
    await precompute({ ...common(), spans: true, out: at('w1'), shard_index: 1, num_shards: 2 });
    await mergeDatasets([at('w0'), at('w1')], at('joined'));
    expect(fileHashes(at('joined'))).toEqual(fileHashes(at('spans')));
    expect((await readManifest(at('joined'))).spans).toEqual((await readManifest(at('spans'))).spans);
    expect(await sha256File(at('joined/tokenizer.json'))).toBe(await sha256File(at('spans/tokenizer.json')));
  }, 60_000);

  it('spans survive the compact layout and kd convert; layout lists, which has no such column, is refused', async () => {
    const spansOf = async (d: string) => {
      const m = await readManifest(d);
      return (await Promise.all(m.shards.map((e) => readShard(join(d, e.file), layoutOf(m))))).flat().map((r) => Array.from(r.byte_spans!));
    };
    const packed = await spansOf(at('spans'));
    await precompute({ ...common(), spans: true, layout: 'compact', out: at('spans-compact') });
    expect(await spansOf(at('spans-compact'))).toEqual(packed);
    await convertDataset(at('spans'), at('converted'), 'compact', { toolVersion: 'test' });
    expect(await spansOf(at('converted'))).toEqual(packed);
    expect(await sha256File(at('converted/tokenizer.json'))).toBe(await sha256File(at('spans/tokenizer.json')));
    await expect(precompute({ ...common(), spans: true, layout: 'lists', out: at('spans-lists') })).rejects.toThrow(/byte spans are stored in the packed and compact layouts, not in --layout lists/);
    await expect(convertDataset(at('spans'), at('lists'), 'lists', { toolVersion: 'test' })).rejects.toThrow(/stores byte spans, which layout lists does not hold/);
  }, 60_000);

  it('refuses --spans on a prep with token noise (the teacher would read other text than the spans describe)', async () => {
    await prepStage({ out: at('noisy'), max_documents: 40, tokenizer: join(prep, 'tokenizer.json'), seq_len: SEQ_LEN, token_noise: 0.1, quiet: true });
    await expect(precompute({ ...common(), prep: at('noisy'), spans: true, out: at('noisy-logits') })).rejects.toThrow(/--spans with a prep that has token noise is not supported/);
  });
});

describe('kd train with a student tokenizer other than the teacher\'s', () => {
  it('pairs every teacher window with the student window at its first byte; aligned positions have read the same text', async () => {
    const ds = await openLogitDataset(at('spans'));
    const studentTok = loadTokenizer(join(student, 'tokenizer.json')), teacherTok = loadTokenizer(join(prep, 'tokenizer.json'));
    const opened = await openCrossTokenizer({ dataDir: at('spans'), manifest: ds.manifest, studentPrep: student, studentEos: studentTok.eosId });
    const data = crossTokenizerData(await shardData(ds), opened, student);
    const b = await data.batchAt(0, 0, 0, 6), t = b.teacher!, Lt = SEQ_LEN, Ls = 24;
    // the teacher windows' input ids by their first byte (the batch carries the student's ids)
    const rows = (await Promise.all(ds.manifest.shards.map((e) => readShard(join(at('spans'), e.file), layoutOf(ds.manifest))))).flat();
    const inputsAt = new Map(rows.map((r) => [r.byte_spans![0], r.input_ids]));
    expect([b.B, b.L, t.ids.length]).toEqual([6, Ls, 6 * Lt * 8]);
    let aligned = 0;
    for (let w = 0; w < 6; w++) {
      for (let j = 0; j < Ls; j++) {
        const p = b.align![w * Ls + j];
        if (p < 0) continue;
        aligned++;
        expect(Math.floor(p / Lt)).toBe(w); // the same window
        // the student's inputs 0..j and the teacher's inputs 0..p end at the same byte: one text is a suffix of the other
        const s = await studentTok.decode(b.inputIds.subarray(w * Ls, w * Ls + j + 1), true);
        const teacherText = await teacherTok.decode(inputsAt.get(t.spans![w * Lt * 2])!.subarray(0, (p % Lt) + 1), true);
        expect(s.length > teacherText.length ? s.endsWith(teacherText) : teacherText.endsWith(s), `window ${w}, student position ${j}`).toBe(true);
      }
    }
    expect(aligned / (6 * Ls)).toBeGreaterThan(0.5);
    await data.close();
  }, 60_000);

  it('trains with ULD at the aligned positions and CE everywhere; α = 0 trains on exactly the same windows', async () => {
    const s = await trainStage({ ...tiny(), data: at('spans'), loss: 'uld', alpha: 0.5, temperature: 1, backend: 'wasm', out: at('uld') }); // the demo's backend
    expect(s.steps).toBe(3);
    const uld = metrics(at('uld'));
    // per student token: ULD ∈ [0, 2] on the aligned share of positions (τ = 1: τ² = 1), so in (0, 2)
    for (const r of uld) { expect(r.kd).toBeGreaterThan(0.01); expect(r.kd).toBeLessThan(2); expect(r.loss).toBeCloseTo(0.5 * r.kd + 0.5 * r.ce, 4); }
    await trainStage({ ...tiny(), data: at('spans'), alpha: 0, backend: 'wasm', out: at('ce') });
    const ce = metrics(at('ce'));
    expect(ce[0].kd).toBe(0);
    expect(ce[0].ce).toBeCloseTo(uld[0].ce, 5); // same init, same first batch of student windows
    const info = JSON.parse(readFileSync(join(at('uld'), 'train.json'), 'utf8'));
    expect(info.provenance.cross_tokenizer.student_tokenizer_sha256).toBe(loadTokenizer(join(student, 'tokenizer.json')).sha256);
    expect(info.provenance.cross_tokenizer.aligned_share_first_batch).toBeGreaterThan(0.5);
  }, 120_000);

  it('refuses a dataset without spans, another text, and a loss that needs the shared vocabulary, naming the files', async () => {
    await expect(trainStage({ ...tiny(), data: at('plain'), loss: 'uld', out: at('bad1') })).rejects.toThrow(/store no byte spans; precompute them with kd precompute --spans/);
    await expect(trainStage({ ...tiny(), prep: at('other'), data: at('spans'), loss: 'uld', out: at('bad2') }))
      .rejects.toThrow(new RegExp(`${at('other')}/windows.json: train split of \\d+ documents, \\d+ bytes, but the teacher windows in ${at('spans')}/manifest.json come from one of`));
    await expect(trainStage({ ...tiny(), data: at('spans'), loss: 'forward_kl', out: at('bad3') })).rejects.toThrow(/a student with its own tokenizer is distilled with --loss uld/);
    await expect(trainStage({ ...tiny(), prep, data: at('spans'), loss: 'uld', out: at('bad4') })).rejects.toThrow(/loss 'uld' is for a student whose tokenizer differs from the teacher's/);
  }, 60_000);

  it('refuses a window whose text differs byte for byte, naming the offset (student train.bin edited)', async () => {
    const edited = at('student-edited');
    cpSync(student, edited, { recursive: true });
    const len = tokenByteLengths(join(student, 'tokenizer.json')), bin = join(edited, 'train.bin');
    const ids = new Uint16Array(new Uint8Array(readFileSync(bin)).buffer);
    const old = ids[5], other = len.findIndex((n, id) => n === len[old] && id !== old); // same length, other bytes: only the text changes
    ids[5] = other;
    writeFileSync(bin, ids);
    await expect(trainStage({ ...tiny(), prep: edited, data: at('spans'), loss: 'uld', batch_size: 6, out: at('bad5') }))
      .rejects.toThrow(new RegExp(`${edited}/train.bin: cannot pair with the teacher window at byte 0 of the train text: the texts differ at byte \\d+`));
  }, 60_000);
});

