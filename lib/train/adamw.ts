import * as tf from '@tensorflow/tfjs-core';
import { NamedTensors } from '../model/tensors.js';

/** AdamW hyper-parameters (Loshchilov & Hutter 2019, Algorithm 2). */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay λ, applied as θ ← θ − lr·λ·θ to matrices only (not norms). */
  weightDecay: number;
}

/**
 * AdamW over a fixed list of variables: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
 * θ ← θ − lr·(m̂/(√v̂ + ε) + λθ) with bias-corrected m̂, v̂ (Loshchilov & Hutter 2019, Alg. 2).
 */
export class AdamW {
  step = 0;
  private m: tf.Variable[];
  private v: tf.Variable[];

  constructor(private readonly vars: tf.Variable[], private readonly opts: AdamWOptions) {
    this.m = vars.map((x) => tf.variable(tf.zerosLike(x), false));
    this.v = vars.map((x) => tf.variable(tf.zerosLike(x), false));
  }

  /**
   * Applies one update with learning rate `lr` from gradients aligned with the variables.
   * One variable at a time, each temporary freed as soon as it is used: at most three temporaries
   * of the largest variable are live (the memory plan counts on it), not every intermediate of
   * every variable.
   */
  apply(grads: tf.Tensor[], lr: number): void {
    this.step += 1;
    const c1 = 1 - this.opts.beta1 ** this.step, c2 = 1 - this.opts.beta2 ** this.step;
    this.vars.forEach((x, i) => tf.tidy(() => this.update(x, i, grads[i], lr, c1, c2)));
  }

  /** θ, m, v of variable i updated in place (same ops, same order as the textbook formula). */
  private update(x: tf.Variable, i: number, g: tf.Tensor, lr: number, c1: number, c2: number): void {
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const then = <T extends tf.Tensor>(t: T, ...used: tf.Tensor[]): T => { tf.dispose(used); return t; };
    const m1 = tf.mul(this.m[i], beta1), m2 = tf.mul(g, 1 - beta1);
    this.m[i].assign(then(tf.add(m1, m2), m1, m2));
    const g2 = tf.square(g), v2 = then(tf.mul(g2, 1 - beta2), g2), v1 = tf.mul(this.v[i], beta2);
    this.v[i].assign(then(tf.add(v1, v2), v1, v2));
    const mHat = tf.div(this.m[i], c1), vHat = tf.div(this.v[i], c2);
    const root = then(tf.sqrt(vHat), vHat), den = then(tf.add(root, eps), root);
    let update = then(tf.div(mHat, den), mHat, den);
    if (x.rank > 1 && weightDecay > 0) { const decay = tf.mul(x, weightDecay); update = then(tf.add(update, decay), update, decay); }
    const scaled = then(tf.mul(update, lr), update);
    x.assign(then(tf.sub(x, scaled), scaled));
  }

  /** Moments as host tensors (`m.<i>`, `v.<i>`), for an exact resume. */
  state(): NamedTensors {
    const out: NamedTensors = new Map();
    this.m.forEach((t, i) => out.set(`m.${i}`, { shape: t.shape, data: t.dataSync() as Float32Array }));
    this.v.forEach((t, i) => out.set(`v.${i}`, { shape: t.shape, data: t.dataSync() as Float32Array }));
    return out;
  }

  /** Restores moments saved by `state()` and the step count. @throws Error on a shape mismatch. */
  load(state: NamedTensors, step: number, source: string): void {
    const put = (vars: tf.Variable[], prefix: string) => vars.forEach((t, i) => {
      const s = state.get(`${prefix}.${i}`);
      if (!s || s.shape.join() !== t.shape.join()) throw new Error(`${source}: optimizer state '${prefix}.${i}' missing or of the wrong shape`);
      t.assign(tf.tensor(s.data, s.shape));
    });
    put(this.m, 'm');
    put(this.v, 'v');
    this.step = step;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/**
 * Scales gradients so their global L2 norm is at most `maxNorm` (Pascanu et al. 2013, §3.2).
 * One gradient at a time, so no second set of gradients exists at once: each scaled gradient
 * replaces its input, which is disposed (disposing it again is harmless).
 * @returns the clipped gradients (new tensors) and the norm before clipping.
 */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: number } {
  const squares = grads.map((g) => tf.tidy(() => tf.sum(tf.square(g)))); // one g² at a time
  const norm = Math.sqrt(tf.tidy(() => tf.addN(squares).dataSync()[0]));
  tf.dispose(squares);
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return { grads: grads.map((g) => { if (scale === 1) return tf.clone(g); const c = tf.mul(g, scale); g.dispose(); return c; }), norm };
}
