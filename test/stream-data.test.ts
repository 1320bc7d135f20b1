// Streamed training data: the epoch order (pure function of seed, epoch, shard rows, G), compact
// shard blocks equal to readShard's rows, the prefetching stream (thread and inline) equal to an
// in-memory reference, bounded buffers, shard errors, positional window reads, and exact resume of
// the trainer on a streamed dataset (a resume with another G refused).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../lib/backend/select.js';
import { readWindows, openWindowFile, writeWindows } from '../lib/data/windows.js';
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import { blockBytes } from '../lib/shards/block.js';
import {
  openLogitDataset, readShard, shardFileName, writeManifest, writeShard, type LogitManifest, type LogitRow, type ShardLayout,
} from '../lib/shards/index.js';
import { readShardBlock } from '../lib/shards/reader.js';
import { Batch } from '../lib/train/batch.js';
import { resolveTrainConfig } from '../lib/train/config.js';
import { validationData, windowData } from '../lib/train/data.js';
import { makeLossFn } from '../lib/train/loss.js';
import { streamData } from '../lib/train/stream-data.js';
import { bufferRowOrder, bufferUnitsFor, epochPlan, locate, unitRowOf } from '../lib/train/stream-order.js';
import { train } from '../lib/train/trainer.js';
import { mulberry32 } from '../lib/util/random.js';
import { FP16, FP32, makeRows, oldLayoutFixtures } from './shard-rows.js';
import { fakeTokenizer, readMetrics, syntheticData } from './synthetic.js';

const root = mkdtempSync(join(tmpdir(), 'kd-stream-'));
const TEMPS = [1, 2, 4];
const LAYOUT: ShardLayout = { seqLen: 8, k: 6, numTemps: TEMPS.length, idDtype: 'uint16', valueDtype: 'float16' };
const V = 40;

/** Plausible top-k rows: sorted fp16 logits (first 0), log_z = log(Σ top-k exp(z/τ) + 1) (some tail mass). */
function teacherRows(n: number, firstId: number, seed: number): LogitRow[] {
  const r = mulberry32(seed), { seqLen: L, k } = LAYOUT, T = TEMPS.length;
  return Array.from({ length: n }, (_, i) => {
    const z = new Float32Array(L * k), logZ = new Float32Array(L * T);
    for (let p = 0; p < L; p++) {
      let v = 0;
      for (let j = 0; j < k; j++) { z[p * k + j] = v; v -= r() * 2; }
    }
    const zr = decodeHalf(encodeHalf(z));
    for (let p = 0; p < L; p++) TEMPS.forEach((tau, t) => {
      let s = 1;
      for (let j = 0; j < k; j++) s += Math.exp(zr[p * k + j] / tau);
      logZ[p * T + t] = Math.log(s);
    });
    return {
      sample_id: BigInt(firstId + i),
      input_ids: Uint32Array.from({ length: L }, () => Math.floor(r() * V)),
      target_ids: Int32Array.from({ length: L }, () => (r() < 0.1 ? -100 : Math.floor(r() * V))),
      topk_ids: Uint32Array.from({ length: L * k }, () => Math.floor(r() * V)),
      topk_logits: zr,
      log_z: logZ,
    };
  });
}

/** A logit dataset of shards with the given row counts; returns its directory and all rows in dataset order. */
async function writeDataset(name: string, shardRows: number[], seed = 1): Promise<{ dir: string; rows: LogitRow[] }> {
  const dir = mkdtempSync(join(root, name));
  const rows: LogitRow[] = [], shards: LogitManifest['shards'] = [];
  for (const [i, n] of shardRows.entries()) {
    const part = teacherRows(n, rows.length, seed * 1000 + i);
    const file = shardFileName(i);
    const res = await writeShard(join(dir, file), part, LAYOUT);
    shards.push({ file, rows: n, first_sample_id: part[0].sample_id.toString(), bytes: res.bytes, sha256: res.sha256 });
    rows.push(...part);
  }
  const total = rows.length;
  await writeManifest(dir, {
    format: 'kd-logits', version: 1,
    teacher: { path: 'teacher.onnx', sha256: 'a'.repeat(64), dtype: 'fp32', execution_provider: 'cpu', input_names: ['input_ids'], output_names: ['logits'] },
    tokenizer: { sha256: 'b'.repeat(64), vocab_size: V, real_vocab_size: V },
    windows: { source: 'windows/train.bin', sha256: 'c'.repeat(64) },
    seq_len: LAYOUT.seqLen, k: LAYOUT.k, mode: 'topk', temperatures: TEMPS,
    encoding: { ids: 'uint16', values: 'float16', layout: 'packed-le-split' },
    shards, totals: { rows: total, positions: total * LAYOUT.seqLen, bytes: shards.reduce((a, s) => a + s.bytes, 0) },
    tool_version: '0.1.0', created_at: '2025-01-01T00:00:00Z',
  });
  return { dir, rows };
}

/** The batch the old in-memory path built from LogitRows (Int32/Float32 copies). */
function referenceBatch(rows: LogitRow[]): Batch {
  const { seqLen: L, k } = LAYOUT, T = TEMPS.length, B = rows.length, N = B * L;
  const inputIds = new Int32Array(N), targets = new Int32Array(N), ids = new Int32Array(N * k), logits = new Float32Array(N * k), logZ = new Float32Array(N * T);
  rows.forEach((r, b) => {
    inputIds.set(r.input_ids, b * L); targets.set(r.target_ids, b * L); ids.set(r.topk_ids, b * L * k);
    logits.set(r.topk_logits, b * L * k); logZ.set(r.log_z, b * L * T);
  });
  return { B, L, inputIds, targets, teacher: { k, temperatures: TEMPS, ids, logits, logZ } };
}

/** Dataset row index of epoch position p, straight from the order's definition. */
function rowAt(shardRows: number[], G: number, seed: number, epoch: number, p: number): number {
  const plan = epochPlan({ unitRows: shardRows, bufferUnits: G }, seed, epoch);
  const { buffer, offset } = locate(plan, p);
  const buf = plan.buffers[buffer], { slot, row } = unitRowOf(buf, bufferRowOrder(plan, buffer)[offset]);
  return shardRows.slice(0, buf.units[slot]).reduce((a, b) => a + b, 0) + row;
}

describe('stream order', () => {
  const spec = { unitRows: [5, 3, 7, 1, 4, 6], bufferUnits: 2 };

  it('visits every row once per epoch, buffers hold G consecutive shards of a seeded shard permutation', () => {
    const plan = epochPlan(spec, 3, 0);
    expect(plan.rows).toBe(26);
    expect(plan.buffers.map((b) => b.units.length)).toEqual([2, 2, 2]);
    expect(plan.buffers.flatMap((b) => b.units).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    const seen = Array.from({ length: 26 }, (_, p) => rowAt(spec.unitRows, 2, 3, 0, p));
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 26 }, (_, i) => i));
    // positions of buffer b only hold rows of b's shards
    const starts = [0, 5, 8, 15, 16, 20, 26];
    const shardOf = (row: number) => starts.findIndex((s, i) => row >= s && row < starts[i + 1]);
    for (const [b, buf] of plan.buffers.entries()) {
      for (let o = 0; o < buf.rows; o++) expect(buf.units).toContain(shardOf(seen[buf.start + o]));
      expect(b === 0 ? buf.start : buf.start).toBe(plan.starts[b]);
    }
  });

  it('is a pure function of (seed, epoch): equal when repeated, different across epochs and seeds', () => {
    const order = (seed: number, epoch: number) => Array.from({ length: 26 }, (_, p) => rowAt(spec.unitRows, 2, seed, epoch, p));
    expect(order(3, 1)).toEqual(order(3, 1));
    expect(order(3, 1)).not.toEqual(order(3, 0));
    expect(order(4, 1)).not.toEqual(order(3, 1));
    expect(() => locate(epochPlan(spec, 3, 0), 26)).toThrow("position 26 outside the epoch's 26 rows");
  });

  it('G is as many shards as the budget holds, at least one', () => {
    expect(bufferUnitsFor([100, 100, 80], 250)).toBe(2);
    expect(bufferUnitsFor([100, 100, 80], 50)).toBe(1);
    expect(bufferUnitsFor([100, 100, 80], 1e9)).toBe(3);
  });
});

describe('readShardBlock', () => {
  it('holds exactly the values readShard decodes (split layout, uint16/fp16 and uint32/fp32) in 146 B/pos at k 32, T 3', async () => {
    for (const [layout, vocab] of [[FP16, 32000], [FP32, 150000]] as const) {
      const rows = makeRows(5, layout, vocab, 7, 11n);
      const path = join(root, `block-${layout.idDtype}.parquet`);
      await writeShard(path, rows, layout);
      const block = await readShardBlock(path, layout);
      const back = await readShard(path, layout);
      expect(block.rows).toBe(5);
      expect(block.firstSampleId).toBe(11n);
      expect(block.inputIds).toBeInstanceOf(layout.idDtype === 'uint16' ? Uint16Array : Uint32Array);
      expect(Array.from(block.inputIds)).toEqual(back.flatMap((r) => Array.from(r.input_ids)));
      expect(Array.from(block.targets)).toEqual(back.flatMap((r) => Array.from(r.target_ids)));
      expect(Array.from(block.topkIds)).toEqual(back.flatMap((r) => Array.from(r.topk_ids)));
      const logits = layout.valueDtype === 'float16' ? decodeHalf(block.topkLogits) : block.topkLogits;
      expect(Array.from(logits)).toEqual(back.flatMap((r) => Array.from(r.topk_logits)));
      expect(Array.from(block.logZ)).toEqual(back.flatMap((r) => Array.from(r.log_z)));
    }
    expect(blockBytes({ seqLen: 128, k: 32, numTemps: 3, idDtype: 'uint16', valueDtype: 'float16' }, 1) / 128).toBe(146);
  });

  it('reads the packed-le shards of earlier kd versions', async () => {
    const fixtures = fileURLToPath(new URL('./fixtures/shards/', import.meta.url));
    for (const f of oldLayoutFixtures()) {
      const block = await readShardBlock(join(fixtures, f.file), f.layout);
      expect(Array.from(block.topkIds)).toEqual(f.rows.flatMap((r) => Array.from(r.topk_ids)));
      expect(Array.from(block.targets)).toEqual(f.rows.flatMap((r) => Array.from(r.target_ids)));
      expect(Array.from(block.logZ)).toEqual(f.rows.flatMap((r) => Array.from(r.log_z)));
    }
  });

  it('refuses a shard whose bytes are not the listed ones (sha256) and a truncated one, in one line naming it', async () => {
    const path = join(root, 'block-FP16.parquet');
    await writeShard(path, makeRows(3, FP16, 32000, 8), FP16);
    await expect(readShardBlock(path, FP16, { sha256: 'f'.repeat(64) })).rejects.toThrow(new RegExp(`^${path}: shard does not match manifest \\(sha256 [0-9a-f]{12}… expected ffffffffffff…: a shard from another dataset, or damaged\\)$`));
    const cut = join(root, 'block-cut.parquet');
    await writeFile(cut, (await readFile(path)).subarray(0, 200));
    await expect(readShardBlock(cut, FP16)).rejects.toThrow(`${cut}: truncated or corrupt shard (no PAR1 footer: file cut short?)`);
    await expect(readShardBlock(path, { ...FP16, k: 4 })).rejects.toThrow(`${path}: shard does not match manifest (k=8 expected 4)`);
  });
});

describe('streamData', () => {
  const shardRows = [5, 3, 7, 1, 4, 6];
  let ds: Awaited<ReturnType<typeof writeDataset>>;
  beforeAll(async () => { ds = await writeDataset('ds-', shardRows); });
  const perShard = blockBytes(LAYOUT, 7);

  it('gives, in the thread and inline, exactly the batches of the order over the decoded rows; G recorded; ≤ 2 buffers held', async () => {
    const opened = await openLogitDataset(ds.dir);
    for (const thread of [true, false]) {
      const data = streamData(opened, { bufferBytes: 2 * perShard, thread });
      expect(data.order).toEqual({ kind: 'shard-buffers', shards: 6, buffer_shards: 2, rows: 26 });
      for (const epoch of [0, 1]) {
        for (let start = 0; start + 4 <= 26; start += 4) {
          const got = await data.batchAt(9, epoch, start, 4);
          const want = referenceBatch([0, 1, 2, 3].map((i) => ds.rows[rowAt(shardRows, 2, 9, epoch, start + i)]));
          expect(got).toEqual(want);
        }
      }
      // every shard once per epoch (+ epoch 2's first buffer when the last batch leaves room to prefetch it)
      expect(data.stats().loads).toBeGreaterThanOrEqual(2 * 6);
      expect(data.stats().loads).toBeLessThanOrEqual(2 * 6 + 2);
      expect(data.stats().maxHeld).toBe(2);
      await data.close();
    }
  });

  it('starts mid-epoch (a resume) with the batch an uninterrupted pass gives there', async () => {
    const opened = await openLogitDataset(ds.dir);
    const a = streamData(opened, { bufferBytes: perShard });
    const seq: Batch[] = [];
    for (let start = 0; start + 3 <= 26; start += 3) seq.push(await a.batchAt(2, 1, start, 3));
    const b = streamData(opened, { bufferBytes: perShard });
    expect(await b.batchAt(2, 1, 15, 3)).toEqual(seq[5]);
    expect(await b.batchAt(2, 1, 18, 3)).toEqual(seq[6]);
    await a.close(); await b.close();
  });

  it('a damaged shard fails the batch that needs it with one line naming the shard', async () => {
    const bad = mkdtempSync(join(root, 'bad-'));
    for (const f of ['manifest.json', ...shardRows.map((_, i) => shardFileName(i))]) await copyFile(join(ds.dir, f), join(bad, f));
    const victim = join(bad, shardFileName(2)), bytes = readFileSync(victim);
    bytes[100] ^= 0xff; // same size: caught by the sha256
    writeFileSync(victim, bytes);
    const data = streamData(await openLogitDataset(bad), { bufferBytes: 100 * perShard });
    await expect(data.batchAt(0, 0, 0, 4)).rejects.toThrow(new RegExp(`^${victim}: shard does not match manifest \\(sha256 [0-9a-f]{12}… expected [0-9a-f]{12}…: a shard from another dataset, or damaged\\)$`));
    await data.close();
  });
});

describe('window files by positional reads', () => {
  it('windowData reads the rows readWindows holds; validationData and errors name the file', () => {
    const dir = mkdtempSync(join(root, 'win-'));
    const doc = (n: number, s: number) => ({ id: `d${s}`, ids: Array.from({ length: n }, (_, i) => (i * 7 + s) % 50), bytes: n });
    writeWindows(dir, { seq_len: 4, eos_id: 0, vocab_size: 50, tokenizer_sha256: 'x', source: 't', seed: 0, val_fraction: 0.5 },
      { train: [doc(30, 1), doc(11, 2)], validation: [doc(13, 3)] });
    const set = readWindows(dir, 'train'), file = openWindowFile(dir, 'train');
    const fromFile = windowData(file), fromSet = windowData(set);
    expect(file.rows).toBe(set.rows);
    const rows = [3, 0, set.rows - 1, 5];
    expect(fromFile.batch(rows)).toEqual(fromSet.batch(rows));
    expect(Array.from(fromFile.batch([2]).inputIds)).toEqual(Array.from(set.ids.subarray(2 * 5, 2 * 5 + 4)));
    expect(validationData(dir).batch([0, 1])).toEqual(windowData(readWindows(dir, 'validation')).batch([0, 1]));
    expect(() => file.read(set.rows - 1, 2)).toThrow(`${join(dir, 'train.bin')}: windows ${set.rows - 1}..${set.rows} outside [0, ${set.rows})`);
    writeFileSync(join(dir, 'train.bin'), readFileSync(join(dir, 'train.bin')).subarray(0, 7));
    expect(() => openWindowFile(dir, 'train')).toThrow(`${join(dir, 'train.bin')}: truncated window file (expected ${set.rows * 10} bytes, found 7)`);
  });
});

describe('trainer on a streamed dataset', () => {
  const model = { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  const tokenizer = fakeTokenizer(join(root, 'tok'));
  const validation = syntheticData(6, LAYOUT.seqLen, V, 6, 2, false);
  let dir: string;
  beforeAll(async () => { await initBackend('wasm'); dir = (await writeDataset('trainds-', [9, 7, 8, 6], 5)).dir; });
  const common = { model, batch_size: 3, grad_accum: 2, epochs: 2, lr: 1e-2, warmup_steps: 1, alpha: 0.5, temperature: 2, eval_every: 3, save_every: 2, eval_windows: 6, quiet: true, backend: 'wasm' };
  async function run(over: Record<string, unknown>, bufferBytes: number, signal?: AbortController, stopAt = 0) {
    const cfg = resolveTrainConfig({ ...common, ...over });
    const data = streamData(await openLogitDataset(dir), { bufferBytes });
    return train(cfg, { train: data, validation, tokenizer, realVocab: V, lossFn: makeLossFn(cfg, V, TEMPS), provenance: {} },
      { signal: signal?.signal, onStep: (r) => { if (r.step === stopAt) signal?.abort(); } });
  }
  const losses = (out: string) => readMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).map((r) => ({ ...r, tokens_per_s: 0 }));

  it('resumes mid-epoch bit for bit; train.json records G; a resume with another G is refused', async () => {
    const G2 = 2 * blockBytes(LAYOUT, 9);
    const full = await run({ out: join(root, 'full') }, G2);
    expect(full.steps).toBe(10); // 30 rows / 6 per step = 5 per epoch
    const out = join(root, 'cut'), ctl = new AbortController();
    expect(await run({ out }, G2, ctl, 7)).toMatchObject({ steps: 7, interrupted: true });
    expect(await run({ out, resume: true }, G2)).toMatchObject({ steps: 10, interrupted: false });
    expect(losses(out)).toEqual(losses(join(root, 'full')));
    expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(root, 'full', 'model.safetensors')))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'train.json'), 'utf8')).data_order).toEqual({ kind: 'shard-buffers', shards: 4, buffer_shards: 2, rows: 30 });
    const other = join(root, 'otherG'), ctl2 = new AbortController();
    await run({ out: other }, G2, ctl2, 3);
    await expect(run({ out: other, resume: true }, 1)).rejects.toThrow(/trainer_state\.json: the run in .* was started with other settings \(data_order: \{"kind":"shard-buffers","shards":4,"buffer_shards":2,"rows":30\} → \{"kind":"shard-buffers","shards":4,"buffer_shards":1,"rows":30\}\)/);
  });
});
