/**
 * The epoch order of a training set made of units (the shards of a logit dataset, or fixed
 * runs of windows), as a pure function of (seed, epoch, the units' row counts, G):
 * 1. the units are permuted (seeded by seed, epoch);
 * 2. the permuted units are grouped into shuffle buffers of G consecutive units;
 * 3. the rows inside each buffer are permuted (seeded by seed, epoch, buffer index).
 * Only one buffer (plus the next, prefetched) needs to be in memory, and position p of an epoch
 * maps straight to (buffer, offset), so a run resumes mid-epoch without replaying the order.
 */
import { hashSeed, mulberry32 } from '../util/random.js';

/** What fixes the order besides (seed, epoch). */
export interface StreamOrderSpec {
  /** Rows of each unit, in dataset order (every entry ≥ 1). */
  unitRows: number[];
  /** G: units per shuffle buffer (≥ 1). */
  bufferUnits: number;
}

/** One shuffle buffer of an epoch. */
export interface BufferPlan {
  /** Dataset indices of its units, in permuted order. */
  units: number[];
  /** Epoch position of its first row. */
  start: number;
  rows: number;
  /** [units.length + 1] row offset of each unit inside the buffer (last = rows). */
  unitStart: Uint32Array;
}

/** The buffers of one epoch, in order. */
export interface EpochPlan {
  seed: number;
  epoch: number;
  buffers: BufferPlan[];
  /** [buffers] epoch position of each buffer's first row. */
  starts: Float64Array;
  /** Rows in the epoch (all rows of all units). */
  rows: number;
}

/** A seeded Fisher–Yates permutation of 0..n−1. */
export function permutation(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rand = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  return order;
}

/** Throws `"<where>: …"` unless every unit has ≥ 1 row and G is a positive integer. */
export function checkOrderSpec(spec: StreamOrderSpec, where: string): void {
  if (spec.unitRows.length === 0) throw new Error(`${where}: no training rows`);
  const bad = spec.unitRows.findIndex((r) => !Number.isInteger(r) || r < 1);
  if (bad >= 0) throw new Error(`${where}: unit ${bad} has ${spec.unitRows[bad]} rows (expected ≥ 1)`);
  if (!Number.isInteger(spec.bufferUnits) || spec.bufferUnits < 1) throw new Error(`${where}: buffer size ${spec.bufferUnits} units (expected an integer ≥ 1)`);
}

/** Units permuted by (seed, epoch), grouped G at a time; see the module comment. */
export function epochPlan(spec: StreamOrderSpec, seed: number, epoch: number): EpochPlan {
  const perm = permutation(spec.unitRows.length, hashSeed(seed, epoch, 0));
  const buffers: BufferPlan[] = [];
  let start = 0;
  for (let at = 0; at < perm.length; at += spec.bufferUnits) {
    const units = Array.from(perm.subarray(at, at + spec.bufferUnits));
    const unitStart = new Uint32Array(units.length + 1);
    units.forEach((u, i) => { unitStart[i + 1] = unitStart[i] + spec.unitRows[u]; });
    const rows = unitStart[units.length];
    buffers.push({ units, start, rows, unitStart });
    start += rows;
  }
  return { seed, epoch, buffers, starts: Float64Array.from(buffers, (b) => b.start), rows: start };
}

/** The permutation of the rows of buffer `b` of `plan` (buffer-local indices). */
export function bufferRowOrder(plan: EpochPlan, b: number): Uint32Array {
  return permutation(plan.buffers[b].rows, hashSeed(plan.seed, plan.epoch, 1, b));
}

/** Largest i with a[i] ≤ x (a ascending, a[0] ≤ x). */
function floorIndex(a: ArrayLike<number>, x: number, hi = a.length - 1): number {
  let lo = 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (a[mid] <= x) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/**
 * Buffer and offset of epoch position `p`.
 * @throws Error when p is outside [0, plan.rows)
 */
export function locate(plan: EpochPlan, p: number): { buffer: number; offset: number } {
  if (!Number.isInteger(p) || p < 0 || p >= plan.rows) throw new Error(`position ${p} outside the epoch's ${plan.rows} rows`);
  const buffer = floorIndex(plan.starts, p);
  return { buffer, offset: p - plan.buffers[buffer].start };
}

/** Which unit (index into `buf.units`) and row of it a buffer-local row is. */
export function unitRowOf(buf: BufferPlan, local: number): { slot: number; row: number } {
  const slot = floorIndex(buf.unitStart, local, buf.units.length - 1);
  return { slot, row: local - buf.unitStart[slot] };
}

/** G for a memory budget: as many units as fit in `budgetBytes` (by the largest unit), at least 1. */
export function bufferUnitsFor(unitBytes: number[], budgetBytes: number): number {
  const largest = Math.max(...unitBytes);
  return Math.max(1, Math.min(unitBytes.length, Math.floor(budgetBytes / largest)));
}
