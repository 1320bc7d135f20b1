/** Deterministic random LogitRows for the shard tests (and the old-layout fixtures made from them). */
import { decodeHalf, encodeHalf } from '../lib/logits/fp16.js';
import type { LogitRow, ShardLayout } from '../lib/shards/index.js';
import { mulberry32 } from '../lib/util/random.js';

export const BIG_ID = 9007199254740993n; // 2^53 + 1: not representable as a JS number

export const FP16: ShardLayout = { seqLen: 16, k: 8, numTemps: 7, idDtype: 'uint16', valueDtype: 'float16' };
export const FP32: ShardLayout = { seqLen: 5, k: 3, numTemps: 2, idDtype: 'uint32', valueDtype: 'float32' };

/** mulberry32 (lib/util/random.ts): deterministic uniform [0, 1). */
export const rng = mulberry32;

/** Random rows of a layout; fp16 layouts get fp16-representable logits (so bit-exact compare works). */
export function makeRows(n: number, layout: ShardLayout, vocab: number, seed: number, firstId = 0n): LogitRow[] {
  const r = rng(seed);
  const { seqLen: L, k, numTemps: T } = layout;
  return Array.from({ length: n }, (_, i) => {
    const logits = new Float32Array(L * k);
    for (let t = 0; t < L; t++) {
      let v = 0;
      for (let j = 0; j < k; j++) { logits[t * k + j] = v; v -= r() * 3; }
    }
    return {
      sample_id: firstId + BigInt(i),
      input_ids: Uint32Array.from({ length: L }, () => Math.floor(r() * vocab)),
      target_ids: Int32Array.from({ length: L }, () => (r() < 0.1 ? -100 : Math.floor(r() * vocab))),
      topk_ids: Uint32Array.from({ length: L * k }, () => Math.floor(r() * vocab)),
      topk_logits: layout.valueDtype === 'float16' ? decodeHalf(encodeHalf(logits)) : logits,
      log_z: Float32Array.from({ length: L * T }, () => r() * 5),
    };
  });
}

/**
 * The rows of the `packed-le` fixtures in test/fixtures/shards/, written by the shard writer of
 * kd 0.1.0 before `packed-le-split` (commit afc3703): archived datasets must stay readable.
 */
export function oldLayoutFixtures(): { file: string; layout: ShardLayout; rows: LogitRow[] }[] {
  const fp16 = makeRows(3, FP16, 32000, 21, BIG_ID);
  const fp32 = makeRows(2, FP32, 150000, 22);
  fp32[0].topk_ids[0] = 0xffffffff;
  fp32[1].target_ids[1] = -100;
  return [
    { file: 'packed-le-u16-f16.parquet', layout: FP16, rows: fp16 },
    { file: 'packed-le-u32-f32.parquet', layout: FP32, rows: fp32 },
  ];
}
