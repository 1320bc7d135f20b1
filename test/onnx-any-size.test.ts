import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from '../lib/model/checkpoint.js';
import { resolveLlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { encodeBf16 } from '../lib/model/safetensors.js';
import { INDEX_FILE, readIndex } from '../lib/model/sharded.js';
import { NamedTensors } from '../lib/model/tensors.js';
import { buildLlamaModel, writeLlamaOnnx } from '../lib/onnx/export-llama.js';
import { checkSelfContainedSize, exportWeightBytes, writeOnnxExternal } from '../lib/onnx/external-data.js';
import { encodeModel, OnnxTypes, readOnnx } from '../lib/onnx/proto.js';

const cfg = resolveLlamaConfig({ vocab_size: 300, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 16, tie_word_embeddings: false });
const tmp = () => mkdtempSync(join(tmpdir(), 'kd-onnx-any-'));

/** The in-memory splitExternalData as it was before streaming (one Uint8Array of all initializers): the reference. */
function oldSplit(model: OnnxTypes.IModelProto, location: string): { model: OnnxTypes.IModelProto; data: Uint8Array } {
  const chunks: { raw: Uint8Array; offset: number }[] = [];
  let size = 0;
  const initializer = (model.graph?.initializer ?? []).map((t): OnnxTypes.ITensorProto => {
    const raw = t.rawData;
    if (!raw || raw.length < 1024) return t;
    if (raw.length >= 1 << 20) size = Math.ceil(size / (1 << 16)) * (1 << 16);
    chunks.push({ raw, offset: size });
    const entries = { location, offset: String(size), length: String(raw.length) };
    size += raw.length;
    return { name: t.name, dims: t.dims, dataType: t.dataType, dataLocation: 1, externalData: Object.entries(entries).map(([key, value]) => ({ key, value })) };
  });
  const data = new Uint8Array(size);
  for (const c of chunks) data.set(c.raw, c.offset);
  return { model: { ...model, graph: { ...model.graph, initializer } }, data };
}

describe('ONNX export of any size', () => {
  it('external data written streamed equals the old in-memory split, byte for byte (model and data file)', () => {
    // vocab 300 × 32 × 4 = 38 KiB tensors; one 1.1 MiB tensor exercises the 64 KiB alignment padding.
    const big = resolveLlamaConfig({ ...cfg, vocab_size: 9000 });
    const model = buildLlamaModel(big, initLlamaWeights(big, 1));
    const dir = tmp(), path = join(dir, 'model.onnx');
    const sizes = writeOnnxExternal(path, model);
    const ref = oldSplit(model, 'model.onnx.data');
    expect(readFileSync(`${path}.data`).equals(Buffer.from(ref.data))).toBe(true);
    expect(readFileSync(path).equals(Buffer.from(encodeModel(ref.model)))).toBe(true);
    expect(sizes).toEqual({ modelBytes: readFileSync(path).length, dataBytes: ref.data.length });
    expect(readdirSync(dir).sort()).toEqual(['model.onnx', 'model.onnx.data']); // no .tmp left
  });

  it('a self-contained export over 2 GiB is refused before anything is written, naming the file and --external-data', () => {
    expect(() => checkSelfContainedSize('out/model.onnx', 2 ** 31 - 1)).not.toThrow();
    expect(() => checkSelfContainedSize('out/model.onnx', 4.4e9)).toThrow(
      "out/model.onnx: the weights are 4.10 GiB, over protobuf's 2 GiB limit for a self-contained .onnx; use --external-data (weights in model.onnx.data beside it)");
    // Weights whose sizes (not their bytes) say 1.1 B values: the check runs on sizes, before the graph is built.
    const real = initLlamaWeights(cfg, 2);
    const fake: NamedTensors = new Map([...real].map(([name, t]) => [name, { shape: t.shape, data: { length: 1.1e9 / real.size } as Float32Array }]));
    expect(exportWeightBytes(fake, 'fp32')).toBeCloseTo(4.4e9, -3);
    expect(exportWeightBytes(fake, 'int4')).toBeLessThan(exportWeightBytes(fake, 'fp16'));
    const dir = tmp(), path = join(dir, 'sub', 'model.onnx');
    expect(() => writeLlamaOnnx(path, cfg, fake)).toThrow(`${path}: the weights are 4.10 GiB, over protobuf's 2 GiB limit`);
    expect(existsSync(join(dir, 'sub'))).toBe(false);
  });

  it("a teacher .onnx over 2 GiB without external data: one line naming the file (protobuf cannot hold it)", () => {
    const dir = tmp(), path = join(dir, 'teacher.onnx');
    writeFileSync(path, '');
    truncateSync(path, 2 ** 31 + 4096); // sparse: no disk used
    expect(() => readOnnx(path)).toThrow(`${path}: 2.00 GiB, over protobuf's 2 GiB limit for a self-contained .onnx; export it with its weights as external data`);
    expect(() => readOnnx(join(dir, 'missing.onnx'))).toThrow(`${join(dir, 'missing.onnx')}: ONNX file not found`);
    mkdirSync(join(dir, 'd.onnx'));
    expect(() => readOnnx(join(dir, 'd.onnx'))).toThrow(`${join(dir, 'd.onnx')}: is a directory, expected a file`);
  });
});

describe('checkpoints in BF16, sharded', () => {
  it('saveCheckpoint BF16 sharded → index + shards, torch_dtype bfloat16; loadCheckpoint reads them back; BF16 again is bit-identical', () => {
    const w = initLlamaWeights(cfg, 3);
    const a = tmp(), b = tmp();
    const saved = saveCheckpoint(a, cfg, w, { dtype: 'BF16', maxShardSize: 8000 });
    expect(saved.files.at(-1)).toBe(INDEX_FILE);
    expect(saved.files.length).toBeGreaterThan(3);
    expect(JSON.parse(readFileSync(join(a, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const back = loadCheckpoint(a);
    for (const [name, t] of w) {
      const want = new Float32Array(Uint32Array.from(encodeBf16(t.data), (h) => (h << 16) >>> 0).buffer);
      expect(Buffer.from(back.weights.get(name)!.data.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    }
    saveCheckpoint(b, back.cfg, back.weights, { dtype: 'BF16', maxShardSize: 8000 });
    for (const f of new Set(Object.values(readIndex(a).weight_map))) expect(readFileSync(join(b, f)).equals(readFileSync(join(a, f)))).toBe(true);
    expect(readFileSync(join(b, INDEX_FILE), 'utf8')).toBe(readFileSync(join(a, INDEX_FILE), 'utf8'));
  });
});
