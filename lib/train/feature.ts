/**
 * The trainer's feature-distillation term (DESIGN §4): for each layer pair (student s : teacher t)
 * of `feature_layers`, β_feat · (1/N) Σ_t dist(h_s W, h_t) with dist of lib/losses/feature.ts, N the
 * step's target count; the pairs are averaged. W [student hidden_size, stored width] is learned
 * (a tf.Variable updated by AdamW with the model's) when the widths differ or the dataset stores a
 * projection, the identity otherwise. W lives beside the checkpoint (feature_projection.safetensors),
 * never in the student's HF weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import { featureLossSum, FEATURE_LOSSES, type FeatureLossName } from '../losses/feature.js';
import type { LlamaConfig } from '../model/config.js';
import type { NamedTensors } from '../model/tensors.js';
import type { HiddenInfo } from '../shards/manifest.js';
import { hashSeed, mulberry32, normalSampler } from '../util/random.js';
import { Batch } from './batch.js';

let nextTermId = 0;

/** One student : teacher layer pair, in HF output_hidden_states indices. */
export interface LayerPair { student: number; teacher: number }

/**
 * Parses `feature_layers` ("1:2,2:4": student layer 1 against teacher layer 2, …).
 * @throws Error "train config: feature_layers 'x' must be a list of student:teacher pairs, e.g. 1:2,2:4"
 */
export function parseFeatureLayers(text: string): LayerPair[] {
  if (text.trim() === '') return [];
  return text.split(',').map((pair) => {
    const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(pair);
    if (!m) throw new Error(`train config: feature_layers '${text}' must be a list of student:teacher pairs, e.g. 1:2,2:4`);
    return { student: Number(m[1]), teacher: Number(m[2]) };
  });
}

/** The feature term of one run: its W variables and the loss of a micro-batch. */
export class FeatureTerm {
  /** W per pair; undefined = identity. */
  private readonly W: (tf.Variable | undefined)[];

  /**
   * @param dataset the logit dataset directory (named in errors)
   * @param seed W's init: N(0, 1/d_s) from mulberry32(hashSeed(seed, 0xfea7, pair index))
   * @throws Error when a teacher layer is not stored in the dataset (naming the layers it has) or a
   *   student layer is beyond num_hidden_layers.
   */
  constructor(readonly pairs: LayerPair[], readonly beta: number, readonly kind: FeatureLossName, model: LlamaConfig, hidden: HiddenInfo | undefined, dataset: string, seed: number) {
    if (!(FEATURE_LOSSES as readonly string[]).includes(kind)) throw new Error(`train config: feature_loss '${kind}' is unknown (valid: ${FEATURE_LOSSES.join(', ')})`);
    const have = hidden?.layers ?? [];
    for (const p of pairs) {
      if (!have.includes(p.teacher)) {
        throw new Error(`${dataset}: feature_layers asks for teacher layer ${p.teacher}, but the dataset stores hidden states of ${have.length ? `layers [${have}]` : 'no layers'} (precompute with --hidden-layers ${p.teacher})`);
      }
      if (p.student > model.num_hidden_layers) {
        throw new Error(`train config: feature_layers student layer ${p.student} is beyond the student's num_hidden_layers ${model.num_hidden_layers} (0 = embeddings, i = after layer i)`);
      }
    }
    const ds = model.hidden_size, dt = hidden?.width ?? ds;
    const learned = ds !== dt || (hidden?.projection ?? null) !== null;
    nextTermId++; // variable names are global to the tf engine
    this.W = pairs.map((_, j) => {
      if (!learned) return undefined;
      const normal = normalSampler(mulberry32(hashSeed(seed, 0xfea7, j))), scale = 1 / Math.sqrt(ds);
      const init = Float32Array.from({ length: ds * dt }, () => normal() * scale);
      return tf.variable(tf.tensor2d(init, [ds, dt]), true, `feature${nextTermId}/W.${j}`);
    });
  }

  /** Student layers whose residual state the forward pass must hand out. */
  get studentLayers(): number[] {
    return [...new Set(this.pairs.map((p) => p.student))];
  }

  /** The learned W's (empty when every map is the identity), in a stable order. */
  variables(): tf.Variable[] {
    return this.W.filter((w): w is tf.Variable => w !== undefined);
  }

  /**
   * β · mean over pairs of Σ_t dist / N for a micro-batch, and the unweighted mean (for the log).
   * @param states student residual states [B·L, d_s] by layer index
   * @param normalizer N, target tokens of the whole optimizer step
   * @throws Error when the batch has no teacher hidden states.
   */
  loss(states: Map<number, tf.Tensor2D>, batch: Batch, normalizer: number): { total: tf.Scalar; sum: tf.Scalar } {
    const h = batch.teacher?.hidden;
    if (!h) throw new Error('feature distillation needs teacher hidden states in the batch (a dataset precomputed with --hidden-layers)');
    const N = batch.B * batch.L, n = h.layers.length, w = h.width;
    const mask = tf.tensor1d(Float32Array.from(batch.targets, (t) => (t === -100 ? 0 : 1)));
    const sums = this.pairs.map((p, j) => {
      const col = h.layers.indexOf(p.teacher), target = new Float32Array(N * w);
      for (let i = 0; i < N; i++) target.set(h.values.subarray((i * n + col) * w, (i * n + col + 1) * w), i * w);
      return featureLossSum(states.get(p.student)!, tf.tensor2d(target, [N, w]), this.W[j] as tf.Tensor2D | undefined, mask, this.kind);
    });
    const sum = tf.div(tf.addN(sums), this.pairs.length) as tf.Scalar; // mean over pairs, summed over positions
    return { total: tf.mul(sum, this.beta / normalizer) as tf.Scalar, sum };
  }

  /** W's as host tensors (`feature.W.<pair>`), for feature_projection.safetensors and the resumable state. */
  toNamedTensors(): NamedTensors {
    const out: NamedTensors = new Map();
    this.W.forEach((v, j) => { if (v) out.set(`feature.W.${j}`, { shape: v.shape, data: v.dataSync() as Float32Array }); });
    return out;
  }

  /** Restores W's saved by {@link toNamedTensors}. @throws Error naming `source` on a missing or mis-shaped tensor. */
  load(saved: NamedTensors, source: string): void {
    this.W.forEach((v, j) => {
      if (!v) return;
      const t = saved.get(`feature.W.${j}`);
      if (!t || t.shape.join() !== v.shape.join()) throw new Error(`${source}: feature projection 'feature.W.${j}' missing or not [${v.shape}]`);
      v.assign(tf.tensor(t.data, t.shape));
    });
  }

  dispose(): void {
    tf.dispose(this.variables());
  }
}
