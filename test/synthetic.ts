// Test helpers: in-memory training data with exact top-k soft labels from a random "teacher", so
// trainer tests exercise the full KD path without precompute.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Batch } from '../lib/train/batch.js';
import { orderedRows, RowData, TrainingData } from '../lib/train/data.js';
import { mulberry32, normalSampler } from '../lib/util/random.js';

export const STORED_TEMPERATURES = [1, 1.5, 2, 2.5, 3, 3.5, 4];

/**
 * `rows` windows of L positions over a vocabulary of V with the teacher's top-k soft labels
 * (z − max z sorted descending, exact log_z at every stored τ); targets follow a fixed
 * "next = (3·id + 1) mod V" rule with noise, so that there is something to learn.
 */
export function syntheticData(rows: number, L: number, V: number, k: number, seed: number, withTeacher = true): RowData & TrainingData {
  const rand = mulberry32(seed), normal = normalSampler(rand);
  const T = STORED_TEMPERATURES.length;
  const ids = new Int32Array(rows * (L + 1)).map(() => Math.floor(rand() * V));
  for (let i = 1; i < ids.length; i++) if (rand() < 0.7) ids[i] = (3 * ids[i - 1] + 1) % V;
  const topIds = new Int32Array(rows * L * k), topLogits = new Float32Array(rows * L * k), logZ = new Float32Array(rows * L * T);
  for (let p = 0; p < rows * L; p++) {
    const z = Array.from({ length: V }, () => 2 * normal());
    const order = z.map((_, i) => i).sort((a, b) => z[b] - z[a]);
    const m = z[order[0]];
    for (let j = 0; j < k; j++) { topIds[p * k + j] = order[j]; topLogits[p * k + j] = z[order[j]] - m; }
    STORED_TEMPERATURES.forEach((tau, t) => { logZ[p * T + t] = Math.log(z.reduce((s, v) => s + Math.exp((v - m) / tau), 0)); });
  }
  return orderedRows({
    rows, seqLen: L,
    batch(indices: ArrayLike<number>): Batch {
      const B = indices.length, N = B * L;
      const inputIds = new Int32Array(N), targets = new Int32Array(N);
      const tIds = new Int32Array(N * k), tLogits = new Float32Array(N * k), tLogZ = new Float32Array(N * T);
      for (let b = 0; b < B; b++) {
        const r = indices[b], w = ids.subarray(r * (L + 1), (r + 1) * (L + 1));
        inputIds.set(w.subarray(0, L), b * L);
        targets.set(w.subarray(1), b * L);
        tIds.set(topIds.subarray(r * L * k, (r + 1) * L * k), b * L * k);
        tLogits.set(topLogits.subarray(r * L * k, (r + 1) * L * k), b * L * k);
        tLogZ.set(logZ.subarray(r * L * T, (r + 1) * L * T), b * L * T);
      }
      const teacher = withTeacher ? { k, temperatures: STORED_TEMPERATURES, ids: tIds, logits: tLogits, logZ: tLogZ } : undefined;
      return { B, L, inputIds, targets, teacher };
    },
  });
}

/** A stand-in tokenizer.json (checkpoints copy it; the trainer never parses it). */
export function fakeTokenizer(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'tokenizer.json');
  writeFileSync(path, '{"model":{"type":"BPE"}}\n');
  return path;
}

/** Lines of a metrics.jsonl. */
export function readMetrics(text: string): Record<string, number>[] {
  return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}
