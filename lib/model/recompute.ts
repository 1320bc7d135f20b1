import * as tf from '@tensorflow/tfjs-core';

/*
 * Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"):
 * a function's forward pass keeps only its input; the backward pass runs it again under a tape
 * of its own and backpropagates through that. TF.js has no such op, so it is a tf.customGrad
 * whose gradient is a nested engine.gradients call.
 */

/**
 * Vector-Jacobian product of `f` at `xs`: the gradients of Σ dy ⊙ f() with respect to each
 * of `xs` (tensors or variables that `f` reads). Safe to call inside a gradFunc, i.e. during
 * another backward pass: tfjs-core's engine.gradients replaces the engine's active tape when no
 * other tape is recording (and sets it to null when done), which would lose the outer backward
 * pass's tape, so the outer tape is put back afterwards.
 * @returns one gradient per x (zeros where f does not depend on it), same shapes as xs
 */
export function vjp(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  const engine = tf.engine();
  const outer = engine.state.activeTape;
  try {
    const { value, grads } = engine.gradients(f, xs, dy, true);
    value.dispose();
    return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
  } finally {
    engine.state.activeTape = outer;
  }
}

/**
 * y = fn(x), recomputed in the backward pass: between forward and backward only x (and the
 * weights, which live anyway) is kept, not fn's intermediates. Gradients flow to x and to every
 * tensor of `weights` (pass all variables fn reads; others get no gradient through this op).
 * fn must be a pure function of x and the weights (dropout masks seeded, not drawn), since it
 * runs twice. Values and gradients equal those of fn(x) itself up to float rounding.
 * @param fn x [..] → y; @param weights the tf.Variables (or tensors) fn reads
 */
export function recomputed<T extends tf.Tensor>(fn: (x: T) => T, x: T, weights: tf.Tensor[]): T {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as T, save = args[args.length - 1] as tf.GradSaveFunc;
    save([input]);
    return {
      value: fn(input),
      // tidy: the recomputed layer's activations die as soon as its gradients exist
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.tidy(() => vjp(() => fn(saved as T), [saved, ...weights], dy)),
    };
  });
  return op(x, ...weights) as T;
}
