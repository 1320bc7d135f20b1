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

  /** Applies one update with learning rate `lr` from gradients aligned with the variables. */
  apply(grads: tf.Tensor[], lr: number): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.opts;
    const c1 = 1 - beta1 ** this.step, c2 = 1 - beta2 ** this.step;
    tf.tidy(() => {
      this.vars.forEach((x, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(this.m[i], beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[i], beta2), tf.mul(tf.square(g), 1 - beta2));
        this.m[i].assign(m);
        this.v[i].assign(v);
        let update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        if (x.rank > 1 && weightDecay > 0) update = tf.add(update, tf.mul(x, weightDecay));
        x.assign(tf.sub(x, tf.mul(update, lr)));
      });
    });
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
 * @returns the clipped gradients (new tensors) and the norm before clipping.
 */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: number } {
  const norm = Math.sqrt(tf.tidy(() => tf.addN(grads.map((g) => tf.sum(tf.square(g)))).dataSync()[0]));
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return { grads: grads.map((g) => (scale === 1 ? tf.clone(g) : tf.mul(g, scale))), norm };
}
