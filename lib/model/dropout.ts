import * as tf from '@tensorflow/tfjs-core';
import { hashSeed, mulberry32 } from '../util/random.js';

/** Dropout of one forward pass: probability `rate` in [0, 1), masks derived from `seed`. */
export interface DropoutOptions {
  rate: number;
  seed: number;
}

/**
 * Modulus of the counter hash: the largest prime below √2³¹, so a product of two residues and
 * a residue still fits an int32 exactly. Every step of the hash is an int32 op whose result is
 * exact on every backend (no overflow, no rounding), hence the masks are the same everywhere.
 */
export const HASH_MODULUS = 46337;
/** The second modulus of a coordinate (a prime below P): by the Chinese remainder theorem (t mod Q, t mod P) is distinct for every t < P·Q ≈ 2.1e9, with no division (wasm's int32 FloorDiv goes through float32 and is off for large t). */
const SECOND_MODULUS = 46327;
const ROUNDS = 3;

/**
 * Inverted dropout (Srivastava et al. 2014, with the 1/(1 − p) rescale at training time so that
 * evaluation needs none): x ⊙ mask, mask_i = 0 with probability `rate`, else 1/(1 − rate).
 * The mask is built by backend ops from a counter hash (see {@link keepMask}) of each element's
 * (row, column) in x viewed as [size / C, C] (C = last dimension): a pure function of
 * (seed, site, row, column), so a resumed run, a recomputed layer and a blocked attention draw
 * the same masks (keepMask takes the coordinates for a slice of a larger tensor).
 * @param x any shape; @param site distinguishes the dropout sites of one pass
 * @returns x unchanged (same tensor) when `opts` is undefined or rate = 0
 */
export function dropout<T extends tf.Tensor>(x: T, opts: DropoutOptions | undefined, site: number): T {
  if (!opts || opts.rate <= 0) return x;
  const C = x.shape[x.rank - 1] ?? 1, R = x.size / C;
  const mask = tf.tidy(() => tf.reshape(keepMask(tf.range(0, R, 1, 'int32').reshape([R, 1]), tf.range(0, C, 1, 'int32').reshape([1, C]), opts, site), x.shape));
  const out = tf.mul(x, mask) as T;
  mask.dispose();
  return out;
}

/**
 * The dropout multipliers at (row, col): 0 with probability `rate`, else 1/(1 − rate), float32
 * of the broadcast shape of rows and cols. A counter-based hash in int32 backend ops: row and
 * column are each split into two residues (mod P = {@link HASH_MODULUS} and mod a prime Q < P) and mixed by Feistel
 * rounds (x += ((y + k)² mod P), then swap; bijective on [0, P)²), the two states are added and
 * mixed again; the result x·P + y is uniform on [0, P²) and kept iff ≥ ⌈rate·P²⌉. Round keys
 * come from mulberry32(hashSeed(seed, site)) on the host (a few numbers).
 * @param rows,cols int32, non-negative, < P·Q ≈ 2.1e9
 */
export function keepMask(rows: tf.Tensor, cols: tf.Tensor, opts: DropoutOptions, site: number): tf.Tensor {
  const P = HASH_MODULUS;
  const rand = mulberry32(hashSeed(opts.seed, site));
  const keys = Array.from({ length: 3 * ROUNDS }, () => Math.floor(rand() * P));
  const threshold = Math.ceil(opts.rate * P * P);
  return tf.tidy(() => {
    const r = mixed(split(rows), keys.slice(0, ROUNDS));
    const c = mixed(split(cols), keys.slice(ROUNDS, 2 * ROUNDS));
    const [x, y] = mixed([modP(tf.add(r[0], c[0])), modP(tf.add(r[1], c[1]))], keys.slice(2 * ROUNDS));
    const u = tf.add(tf.mul(x, tf.scalar(P, 'int32')), y); // [0, P²), exact in int32
    const keep = tf.greaterEqual(u, tf.scalar(threshold, 'int32'));
    return tf.mul(tf.cast(keep, 'float32'), 1 / (1 - opts.rate));
  });
}

const modP = (t: tf.Tensor) => tf.mod(t, tf.scalar(HASH_MODULUS, 'int32'));

/** An int32 counter as two residues (t mod P, t mod Q), both in [0, P). */
function split(t: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const i = t.dtype === 'int32' ? t : tf.cast(t, 'int32');
  return [modP(i), tf.mod(i, tf.scalar(SECOND_MODULUS, 'int32'))];
}

/** Feistel rounds on residue pairs, one key per round. */
function mixed([x0, y0]: [tf.Tensor, tf.Tensor], keys: number[]): [tf.Tensor, tf.Tensor] {
  let x = x0, y = y0;
  for (const k of keys) {
    const t = modP(tf.add(y, tf.scalar(k, 'int32')));
    const next = modP(tf.add(x, modP(tf.mul(t, t))));
    x = y; y = next;
  }
  return [x, y];
}

/**
 * The host (JS) twin of {@link keepMask} at one coordinate, for tests: true iff kept.
 * Exact integer arithmetic, so it matches the backend ops element for element.
 */
export function keepAt(row: number, col: number, opts: DropoutOptions, site: number): boolean {
  const P = HASH_MODULUS;
  const rand = mulberry32(hashSeed(opts.seed, site));
  const keys = Array.from({ length: 3 * ROUNDS }, () => Math.floor(rand() * P));
  const mix = ([x0, y0]: number[], ks: number[]) => {
    let x = x0, y = y0;
    for (const k of ks) { const t = (y + k) % P; const next = (x + ((t * t) % P)) % P; x = y; y = next; }
    return [x, y];
  };
  const r = mix([row % P, row % SECOND_MODULUS], keys.slice(0, ROUNDS));
  const c = mix([col % P, col % SECOND_MODULUS], keys.slice(ROUNDS, 2 * ROUNDS));
  const [x, y] = mix([(r[0] + c[0]) % P, (r[1] + c[1]) % P], keys.slice(2 * ROUNDS));
  return x * P + y >= Math.ceil(opts.rate * P * P);
}
