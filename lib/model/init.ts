import { LlamaConfig, llamaTensorShapes } from './config.js';
import { HostTensor, NamedTensors } from './tensors.js';
import { mulberry32, normalSampler } from '../util/random.js';

/**
 * Random initial weights for a Llama model, deterministic in `seed`, as HF-named host tensors.
 * Linear and embedding weights ~ N(0, 0.02²) as in HF `initializer_range`; output projections
 * (o_proj, down_proj) scaled by 1/√(2·layers) as in GPT-2/nanoGPT; RMSNorm weights = 1;
 * biases (where the architecture has them) = 0, as HF `_init_weights` sets them.
 */
export function initLlamaWeights(cfg: LlamaConfig, seed: number): NamedTensors {
  const normal = normalSampler(mulberry32(seed));
  const out: NamedTensors = new Map();
  const residualStd = 0.02 / Math.sqrt(2 * cfg.num_hidden_layers);
  for (const [name, shape] of llamaTensorShapes(cfg)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (name.endsWith('norm.weight')) data.fill(1);
    else if (!name.endsWith('.bias')) {
      const std = /o_proj|down_proj/.test(name) ? residualStd : 0.02;
      for (let i = 0; i < size; i++) data[i] = normal() * std;
    }
    out.set(name, { shape, data } satisfies HostTensor);
  }
  return out;
}
