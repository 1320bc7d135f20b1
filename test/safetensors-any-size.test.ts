import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeBf16, encodeSafetensors, readSafetensors, SafetensorsFile, writeSafetensors } from '../lib/model/safetensors.js';
import { INDEX_FILE, parseByteSize, planShards, readCheckpointTensors, readIndex, shardName, SINGLE_FILE, writeShardedSafetensors } from '../lib/model/sharded.js';
import { NamedTensors } from '../lib/model/tensors.js';
import { mulberry32 } from '../lib/util/random.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kd-any-'));

function randomTensors(seed: number, shapes: [string, number[]][]): NamedTensors {
  const r = mulberry32(seed);
  return new Map(shapes.map(([name, shape]) => [name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1) }]));
}

/** The old reader (whole file, then slices): the reference the positional reads must equal. */
function wholeFileDecode(path: string): Map<string, { shape: number[]; bits: number[] }> {
  const buf = readFileSync(path), n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { shape: number[]; bits: number[] }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = new Uint8Array(buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]));
    const bits = e.dtype === 'F32' ? Array.from(new Uint32Array(bytes.buffer)) : Array.from(new Uint16Array(bytes.buffer), (h) => (h << 16) >>> 0);
    out.set(name, { shape: e.shape, bits });
  }
  return out;
}

const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** A safetensors file with a hand-written header (for corruption cases). */
function rawFile(dir: string, header: unknown, dataBytes: number, headerText = JSON.stringify(header)): string {
  const json = Buffer.from(headerText), len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const path = join(dir, 'bad.safetensors');
  writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return path;
}

describe('safetensors read per tensor, any size', () => {
  it('per-tensor positional reads equal the whole-file decode (F32 and BF16)', () => {
    const dir = tmp();
    const t = randomTensors(1, [['a', [3, 5]], ['b', [7]], ['c', [2, 2, 2]]]);
    for (const dtype of ['F32', 'BF16'] as const) {
      const path = join(dir, `${dtype}.safetensors`);
      writeSafetensors(path, t, dtype);
      const ref = wholeFileDecode(path), got = readSafetensors(path).tensors;
      expect([...got.keys()].sort()).toEqual([...ref.keys()].sort());
      for (const [name, r] of ref) {
        expect(got.get(name)!.shape).toEqual(r.shape);
        expect(bitsOf(got.get(name)!.data)).toEqual(r.bits);
      }
    }
  });

  it('BF16 round trip is bit-exact for all 65536 patterns (NaN, ±Inf, subnormals, -0 included)', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f32 = new Float32Array(Uint32Array.from(all, (h) => (h << 16) >>> 0).buffer);
    expect(Array.from(encodeBf16(f32))).toEqual(Array.from(all));
    const dir = tmp(), path = join(dir, 'all.safetensors');
    writeSafetensors(path, new Map([['all', { shape: [65536], data: f32 }]]), 'BF16');
    const back = readSafetensors(path).tensors.get('all')!.data;
    writeSafetensors(join(dir, 'again.safetensors'), new Map([['all', { shape: [65536], data: back }]]), 'BF16');
    expect(readFileSync(join(dir, 'again.safetensors')).equals(readFileSync(path))).toBe(true);
  });

  it('BF16 from float32 rounds to nearest even, overflows to Inf, and keeps NaN a NaN', () => {
    const u = Uint32Array.from([
      0x3f808000, // tie, even below: stays 0x3f80
      0x3f818000, // tie, odd below: up to 0x3f82
      0x3f808001, // above the tie: up
      0x7f7fffff, // float32 max: rounds to +Inf
      0x7f800001, // a NaN whose payload is in the low bits only: must not become Inf
      0xffc00001, // -NaN
      0x00000001, // smallest subnormal: rounds to +0
      0x80000000, // -0
    ]);
    expect(Array.from(encodeBf16(new Float32Array(u.buffer)), (h) => h.toString(16))).toEqual(['3f80', '3f82', '3f81', '7f80', '7fc0', 'ffc0', '0', '8000']);
  });

  it('header corruption: one-line errors naming the file', () => {
    const dir = tmp();
    const p = join(dir, 'short.safetensors');
    writeFileSync(p, Buffer.alloc(5));
    expect(() => readSafetensors(p)).toThrow(`${p}: not a safetensors file (5 bytes, shorter than the 8-byte header length)`);
    const big = Buffer.alloc(16);
    big.writeBigUInt64LE(10n ** 12n);
    writeFileSync(p, big);
    expect(() => readSafetensors(p)).toThrow(`${p}: not a safetensors file (header length 1000000000000 exceeds safetensors' limit of 100000000)`);
    big.writeBigUInt64LE(100n);
    writeFileSync(p, big);
    expect(() => readSafetensors(p)).toThrow(`${p}: not a safetensors file (header length 100 exceeds the file size 16)`);
    let f = rawFile(dir, {}, 0, '{"a": ');
    expect(() => readSafetensors(f)).toThrow(`${f}: not a safetensors file (header is not JSON)`);
    f = rawFile(dir, { a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8);
    expect(() => readSafetensors(f)).toThrow(`${f}: tensor 'a' has unsupported dtype I64 (supported: F32, F16, BF16)`);
    f = rawFile(dir, { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8);
    expect(() => readSafetensors(f)).toThrow(`${f}: tensor 'a': 8 bytes, but F32 [3] needs 12`);
    f = rawFile(dir, { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8);
    expect(() => readSafetensors(f)).toThrow(/bad.safetensors: truncated \(tensor 'a' ends at byte \d+, the file has \d+\)/);
    f = rawFile(dir, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12);
    expect(() => readSafetensors(f)).toThrow(`${f}: not a safetensors file (tensor 'b' starts at data byte 8, expected 4: tensors overlap or leave a gap)`);
    f = rawFile(dir, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8);
    expect(() => readSafetensors(f)).toThrow(`${f}: not a safetensors file (4 bytes after the last tensor)`);
    f = rawFile(dir, { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4);
    expect(() => readSafetensors(f)).toThrow(`${f}: tensor 'a': shape [-1] is not a list of non-negative integers`);
  });

  it('"not found" only for ENOENT; a directory and an unreadable file say what they are', () => {
    const dir = tmp();
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(`${join(dir, 'missing.safetensors')}: safetensors file not found`);
    const sub = join(dir, 'dir.safetensors');
    mkdirSync(sub);
    expect(() => readSafetensors(sub)).toThrow(`${sub}: is a directory, expected a file; name the file inside it`);
  });

  it('an unreadable file says permission denied, not "not found" (as root: checked by a child running as nobody)', () => {
    const dir = tmp(), p = join(dir, 'locked.safetensors');
    writeSafetensors(p, randomTensors(2, [['a', [2]]]));
    chmodSync(p, 0o000);
    chmodSync(dir, 0o755);
    const root = process.getuid?.() === 0;
    let message: string;
    if (!root) {
      try { readSafetensors(p); message = 'read'; } catch (e) { message = (e as Error).message; }
    } else {
      const code = `import('./lib/model/safetensors.ts').then((m) => { try { m.readSafetensors(${JSON.stringify(p)}); console.log('read'); } catch (e) { console.log(e.message); } })`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { uid: 65534, gid: 65534, encoding: 'utf8' });
      message = r.stdout.trim();
    }
    expect(message).toBe(`${p}: permission denied; choose a location you can write to (or read, for an input) or fix its permissions`);
  });

  it('raw() returns the stored bytes at their offsets', () => {
    const dir = tmp(), p = join(dir, 'x.safetensors');
    const t = randomTensors(3, [['a', [4]], ['b', [3]]]);
    writeSafetensors(p, t, 'F32');
    const f = new SafetensorsFile(p);
    try {
      const b = f.entries.find((e) => e.name === 'b')!;
      expect(Buffer.from(f.raw(b)).equals(Buffer.from(t.get('b')!.data.buffer))).toBe(true);
    } finally { f.close(); }
  });
});

describe('sharded checkpoints', () => {
  const shapes: [string, number[]][] = [['embed', [10, 8]], ['l0', [8, 8]], ['l1', [8, 8]], ['big', [40, 8]], ['norm', [8]]];

  it('plans shards in tensor order up to the limit, a tensor above it alone (huggingface_hub rule)', () => {
    const t = randomTensors(4, shapes); // F32 bytes: 320, 256, 256, 1280, 32
    const plan = planShards(t, 'F32', 600);
    expect(plan.map((s) => s.names)).toEqual([['embed', 'l0'], ['l1'], ['big'], ['norm']]);
    expect(plan.map((s) => s.file)).toEqual([1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`));
    expect(planShards(t, 'F32', 1e9)).toEqual([{ file: SINGLE_FILE, names: shapes.map(([n]) => n) }]);
    expect(shardName(0, 3)).toBe('model-00001-of-00003.safetensors');
  });

  it('writes shards + index (transformers layout) and reads them back equal', () => {
    const dir = tmp(), t = randomTensors(5, shapes);
    const w = writeShardedSafetensors(dir, t, 'F32', 600);
    expect(w.files).toEqual([...planShards(t, 'F32', 600).map((s) => s.file), INDEX_FILE]);
    const index = readIndex(dir);
    expect(index.metadata.total_size).toBe(320 + 256 + 256 + 1280 + 32);
    expect(Object.keys(index.weight_map)).toEqual(['big', 'embed', 'l0', 'l1', 'norm']);
    expect(index.weight_map.big).toBe('model-00003-of-00004.safetensors');
    const back = readCheckpointTensors(dir);
    for (const [name, x] of t) expect(bitsOf(back.get(name)!.data)).toEqual(bitsOf(x.data));
  });

  it('a new save replaces the previous set without mixing: single → sharded → other shard count → single', () => {
    const dir = tmp(), t = randomTensors(6, shapes);
    writeShardedSafetensors(dir, t, 'F32', 1e9);
    expect(readdirSync(dir).sort()).toEqual([SINGLE_FILE]);
    writeShardedSafetensors(dir, t, 'F32', 600);
    expect(readdirSync(dir).sort()).toEqual([INDEX_FILE, ...[1, 2, 3, 4].map((i) => shardName(i - 1, 4))].sort());
    writeShardedSafetensors(dir, t, 'BF16', 600); // 160, 128, 128, 640, 16 → 3 shards
    expect(readdirSync(dir).sort()).toEqual([INDEX_FILE, shardName(0, 3), shardName(1, 3), shardName(2, 3)].sort());
    writeShardedSafetensors(dir, t, 'BF16', 1e9);
    expect(readdirSync(dir).sort()).toEqual([SINGLE_FILE]);
    const back = readCheckpointTensors(dir);
    expect(bitsOf(back.get('l1')!.data)).toEqual(bitsOf(new Float32Array(Uint32Array.from(encodeBf16(t.get('l1')!.data), (h) => (h << 16) >>> 0).buffer)));
  });

  it('rewriting shards of the same names removes the old index first (never old index + new shards)', () => {
    const dir = tmp();
    writeShardedSafetensors(dir, randomTensors(7, shapes), 'F32', 600);
    // A save that fails after the first shard: the old index must not survive to list a mix.
    const t2 = randomTensors(8, shapes);
    const failing = new Map(t2);
    Object.defineProperty(failing, 'get', { value: (k: string) => { if (k === 'l1') throw new Error('disk gone'); return t2.get(k); } });
    expect(() => writeShardedSafetensors(dir, failing, 'F32', 600)).toThrow('disk gone');
    expect(existsSync(join(dir, INDEX_FILE))).toBe(false);
    expect(() => readCheckpointTensors(dir)).toThrow(`${join(dir, SINGLE_FILE)}: safetensors file not found`);
  });

  it('index errors name the file: missing shard, tensor in the wrong shard, tensor absent', () => {
    const dir = tmp(), t = randomTensors(9, shapes);
    writeShardedSafetensors(dir, t, 'F32', 600);
    const index = readIndex(dir), idx = join(dir, INDEX_FILE);
    writeFileSync(idx, JSON.stringify({ ...index, weight_map: { ...index.weight_map, ghost: index.weight_map.norm } }));
    expect(() => readCheckpointTensors(dir)).toThrow(`${idx}: tensor 'ghost' is mapped to ${index.weight_map.norm}, which does not hold it`);
    writeFileSync(idx, JSON.stringify({ ...index, weight_map: { ...index.weight_map, l0: index.weight_map.big } }));
    expect(() => readCheckpointTensors(dir)).toThrow(`${join(dir, index.weight_map.embed)}: tensor 'l0' is not mapped to this shard by ${idx} (it says ${index.weight_map.big})`);
    writeFileSync(idx, JSON.stringify(index));
    rmSync(join(dir, index.weight_map.big));
    expect(() => readCheckpointTensors(dir)).toThrow(`${join(dir, index.weight_map.big)}: safetensors file not found`);
    writeFileSync(idx, JSON.stringify({ metadata: {}, weight_map: { a: '../x.safetensors' } }));
    expect(() => readCheckpointTensors(dir)).toThrow(`${idx}: weight_map['a'] = "../x.safetensors" is not a file name in the checkpoint directory`);
  });

  it('parses sizes as transformers does', () => {
    expect(parseByteSize('5GB')).toBe(5e9);
    expect(parseByteSize('500MB')).toBe(5e8);
    expect(parseByteSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseByteSize('1000')).toBe(1000);
    expect(parseByteSize(123456)).toBe(123456);
    expect(() => parseByteSize('5 parsecs', '--max-shard-size')).toThrow("--max-shard-size: '5 parsecs' is not a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)");
    expect(() => parseByteSize(0)).toThrow(/is not a size/);
  });

  it('encodeSafetensors (in memory) and the streamed writer give the same bytes for every dtype', () => {
    const dir = tmp(), t = randomTensors(10, shapes);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      writeSafetensors(join(dir, 's.safetensors'), t, dtype, { format: 'pt' });
      expect(readFileSync(join(dir, 's.safetensors')).equals(encodeSafetensors(t, dtype, { format: 'pt' }))).toBe(true);
    }
  });

  it('reads a file larger than its read piece and a sparse file past 2 GiB (positional reads, no whole-file read)', () => {
    const dir = tmp(), p = join(dir, 'huge.safetensors');
    // header: one small tensor, then a 2.1 GiB zero tensor (sparse: takes no disk).
    const n = 2.1 * 2 ** 30 / 4 | 0;
    const header = { small: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, zeros: { dtype: 'F32', shape: [n], data_offsets: [8, 8 + n * 4] } };
    const json = Buffer.from(JSON.stringify(header)), len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(p, Buffer.concat([len, json, Buffer.from(new Float32Array([1.5, -2]).buffer)]));
    truncateSync(p, 8 + json.length + 8 + n * 4);
    const f = new SafetensorsFile(p);
    try {
      expect(f.entries.map((e) => e.name)).toEqual(['small', 'zeros']);
      expect(Array.from(f.tensor(f.entries[0]).data)).toEqual([1.5, -2]);
    } finally { f.close(); }
  });
});
