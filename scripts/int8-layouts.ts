/**
 * int8 weight-only layouts measured side by side: the same Llama exported fp32, with its
 * q/k/v/o/gate/up/down weights per-output-channel int8 as (a) QDQ — int8 initializer →
 * DequantizeLinear (axis 1, per-channel scale) → MatMul — and as (b) com.microsoft.MatMulNBits
 * bits = 8, codes q + 128 with ORT's default zero point 128, block_size = K rounded up to a
 * power of two ≥ 16 but at most 256 (the CPU kernel refuses larger blocks: "Only block sizes 16,
 * 32, 64, 128, and 256 are supported"), the channel's scale repeated over its blocks, and as int4 (MatMulNBits, block 32, asymmetric). Both int8
 * layouts carry the same codes and scales (lib/onnx/int8.ts), so their logits must agree.
 * Per variant: .onnx bytes, whether ORT's CPU provider loads and runs it, max |logit − fp32|,
 * max |logit − the int8 model as ONNX defines it| (DequantizeLinear then an fp32 MatMul, graph
 * optimizations off), and tokens/s of one forward of 1 × 128 tokens (prefill) and of 1 × 1 (a
 * decode-sized MatMul), best of 3 passes of ~1 s, 1 intra-op thread.
 *
 * ORT (level 'extended' and up) fuses DequantizeLinear → MatMul into MatMulNBits bits 8, by
 * default at accuracy_level 4, which quantizes the activations to int8 too: fast at 1×1 but not
 * weight-only. lib/onnx/session.ts sets session.qdq_matmulnbits_accuracy_level = 1 (fp32 compute).
 * Measured here (ORT 1.30.0 CPU, x86-64, 2 cores shared with other jobs, so ±15%; max |logit| ≈ 3):
 *
 *   shape                      variant               bytes       Δ weight-only  tok/s 1×128  tok/s 1×1
 *   demo (d128 f352 2L V4096)  fp32                   3,586,679   —              29,380       4,764
 *                              int8 QDQ, ORT default  2,493,386   6.0e-3         22,736       4,987
 *                              int8 QDQ, as kd runs   2,493,386   7.2e-7         25,367       1,307
 *                              int8 NBits 8           2,535,494   7.2e-7         23,418       1,309
 *                              int4 NBits 32          2,352,744   —              26,253       3,464
 *   d512 f1408 4L V4096        fp32                  55,615,105   —               2,885         326
 *                              int8 QDQ, ORT default 20,309,286   2.9e-2          1,952         604
 *                              int8 QDQ, as kd runs  20,309,286   1.4e-6          1,612          28
 *                              int8 NBits 8          20,682,254   1.4e-6          1,865          56
 *                              int4 NBits 32         15,995,048   —               2,582         287
 *
 * Weight-only, QDQ and NBits 8 run the same kernel (same values) and are slower than fp32 on this
 * CPU; QDQ is standard ONNX, leaves the kernel to the runtime (ORT's default int8-activation path
 * is 1.85× fp32 at 1×1 on the larger shape) and is smaller, so it is the layout kd exports. Usage:
 *   node --import tsx scripts/int8-layouts.ts
 */
import ort from 'onnxruntime-node';
import { resolveLlamaConfig, type LlamaConfig } from '../lib/model/config.js';
import { initLlamaWeights } from '../lib/model/init.js';
import { buildLlamaModel, encodeModel } from '../lib/onnx/index.js';
import { quantizeInt8 } from '../lib/onnx/int8.js';
import { attr, floatTensor, OnnxTypes, uint8Tensor } from '../lib/onnx/proto.js';

const SHAPES: { name: string; cfg: LlamaConfig }[] = [
  { name: 'demo student (d 128, f 352, 2 layers, V 4096)', cfg: resolveLlamaConfig({ vocab_size: 4096, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true }) },
  { name: 'larger (d 512, f 1408, 4 layers, V 4096)', cfg: resolveLlamaConfig({ vocab_size: 4096, hidden_size: 512, intermediate_size: 1408, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4, tie_word_embeddings: true }) },
];

/** Float32 data of an initializer written by floatTensor. */
const floats = (t: OnnxTypes.ITensorProto): Float32Array => {
  const raw = t.rawData as Uint8Array;
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
};

/**
 * Rewrites every MatMul on a `*_proj.weight.T` [K, N] initializer of an fp32 export into
 * MatMulNBits bits 8 with the per-channel codes and scales of lib/onnx/int8.ts (the QDQ layout is
 * what `kd export --dtype int8` writes, buildLlamaModel's dtype 'int8').
 */
function toNBits8(model: OnnxTypes.IModelProto): OnnxTypes.IModelProto {
  const graph = model.graph!, inits = new Map(graph.initializer!.map((t) => [t.name!, t]));
  const keep = graph.initializer!.filter((t) => !/_proj\.weight\.T$/.test(t.name!));
  const nodes: OnnxTypes.INodeProto[] = [];
  for (const node of graph.node!) {
    const wName = node.input![1];
    if (node.opType !== 'MatMul' || !/_proj\.weight\.T$/.test(wName)) { nodes.push(node); continue; }
    const t = inits.get(wName)!, [K, N] = t.dims as number[], wt = floats(t);
    const w = new Float32Array(N * K); // back to HF [N, K]
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) w[n * K + k] = wt[k * N + n];
    const q = quantizeInt8(w, N, K), base = wName.replace(/\.T$/, '');
    const bs = Math.min(256, Math.max(16, 2 ** Math.ceil(Math.log2(K)))), kb = Math.ceil(K / bs);
    const b = new Uint8Array(N * kb * bs).fill(128), scales = new Float32Array(N * kb);
    for (let n = 0; n < N; n++) {
      scales.fill(q.scales[n], n * kb, (n + 1) * kb); // one channel scale repeated over its blocks
      for (let k = 0; k < K; k++) b[n * kb * bs + k] = q.codes[n * K + k] + 128;
    }
    keep.push(uint8Tensor(`${base}.q8`, [N, kb, bs], b), floatTensor(`${base}.scales`, [N, kb], scales));
    nodes.push({ opType: 'MatMulNBits', domain: 'com.microsoft', name: `${base}.nbits_node`, input: [node.input![0], `${base}.q8`, `${base}.scales`], output: node.output,
      attribute: [attr.int('K', K), attr.int('N', N), attr.int('bits', 8), attr.int('block_size', bs)] });
  }
  return { ...model, opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }], graph: { ...graph, node: nodes, initializer: keep } };
}

/** ORT's defaults plus `extra` session config; 1 intra-op thread. */
async function session(bytes: Uint8Array, extra?: Record<string, string>, level: 'all' | 'disabled' = 'all'): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: level, intraOpNumThreads: 1, ...(extra ? { extra: { session: extra } } : {}) });
}

function feeds(L: number, vocab: number): Record<string, ort.Tensor> {
  const ids = BigInt64Array.from({ length: L }, (_, i) => BigInt((i * 7919) % vocab));
  return {
    input_ids: new ort.Tensor('int64', ids, [1, L]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(L).fill(1n), [1, L]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: L }, (_, i) => BigInt(i)), [1, L]),
  };
}

/** Tokens per second of one forward of L tokens: best of 3 passes of ~1 s. */
async function tokensPerSecond(s: ort.InferenceSession, L: number, vocab: number): Promise<number> {
  const f = feeds(L, vocab);
  await s.run(f);
  let best = 0;
  for (let pass = 0; pass < 3; pass++) {
    const t0 = performance.now();
    let runs = 0;
    while (performance.now() - t0 < 1000) { await s.run(f); runs++; }
    best = Math.max(best, (runs * L) / ((performance.now() - t0) / 1000));
  }
  return best;
}

async function main(): Promise<void> {
  const weightOnly = { qdq_matmulnbits_accuracy_level: '1' }; // what lib/onnx/session.ts sets
  for (const { name, cfg } of SHAPES) {
    const w = initLlamaWeights(cfg, 0);
    const fp32 = buildLlamaModel(cfg, w), qdq = encodeModel(buildLlamaModel(cfg, w, { dtype: 'int8' }));
    const variants: [string, Uint8Array, Record<string, string> | undefined][] = [
      ['fp32', encodeModel(fp32), undefined],
      ['int8 QDQ, ORT default (acc. level 4)', qdq, undefined],
      ['int8 QDQ, as kd runs it (acc. level 1)', qdq, weightOnly],
      ['int8 MatMulNBits bits 8', encodeModel(toNBits8(fp32)), undefined],
      ['int4 MatMulNBits block 32 asym', encodeModel(buildLlamaModel(cfg, w, { dtype: 'int4' })), undefined],
    ];
    // The int8 model as ONNX defines it (DequantizeLinear, then an fp32 MatMul), no fusion.
    const exact = (await (await session(qdq, undefined, 'disabled')).run(feeds(128, cfg.vocab_size))).logits.data as Float32Array;
    let scale = 0;
    for (const x of exact) scale = Math.max(scale, Math.abs(x));
    console.log(`\n${name}, ORT ${ort.env.versions.common} CPU, 1 thread; max |logit| ${scale.toFixed(2)}`);
    console.log('variant                                     bytes   max|Δ| vs fp32   vs int8 weight-only   tok/s 1×128   tok/s 1×1');
    let ref: Float32Array | undefined;
    for (const [label, bytes, extra] of variants) {
      let s: ort.InferenceSession;
      try { s = await session(bytes, extra); } catch (e) { console.log(`${label.padEnd(40)} ${String(bytes.length).padStart(9)}   no: ${String((e as Error).message).split('\n')[0]}`); continue; }
      const logits = (await s.run(feeds(128, cfg.vocab_size))).logits.data as Float32Array;
      ref ??= logits;
      let d = 0, dq = 0;
      for (let i = 0; i < logits.length; i++) { d = Math.max(d, Math.abs(logits[i] - ref[i])); dq = Math.max(dq, Math.abs(logits[i] - exact[i])); }
      const prefill = await tokensPerSecond(s, 128, cfg.vocab_size), decode = await tokensPerSecond(s, 1, cfg.vocab_size);
      console.log(`${label.padEnd(40)} ${String(bytes.length).padStart(9)}   ${d.toExponential(2).padStart(12)}   ${label.startsWith('int8') ? dq.toExponential(2).padStart(12) : '           —'}        ${prefill.toFixed(0).padStart(9)}   ${decode.toFixed(0).padStart(9)}`);
      await s.release();
    }
  }
}

await main();
