import * as ort from 'onnxruntime-node';
import { DT, encodeModel, floatTensor, valueInfo } from './proto.js';

/**
 * The machine's practical matrix-multiply ceiling: GFLOP/s of onnxruntime's CPU MatMul on
 * A [M, K] · B [K, N] (B an initializer), best of `reps` runs after a warm-up.
 */
export async function onnxMatMulGflops(M = 2048, K = 1024, N = 1024, reps = 5): Promise<number> {
  const b = new Float32Array(K * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const model = encodeModel({
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }], producerName: 'kd-bench',
    graph: {
      name: 'matmul', node: [{ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }],
      initializer: [floatTensor('b', [K, N], b)],
      input: [valueInfo('a', DT.FLOAT, [M, K])], output: [valueInfo('c', DT.FLOAT, [M, N])],
    },
  });
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  const a = new ort.Tensor('float32', new Float32Array(M * K).fill(0.5), [M, K]);
  await session.run({ a });
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await session.run({ a });
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  await session.release();
  return (2 * M * K * N) / best / 1e9;
}
