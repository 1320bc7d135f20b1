/** A named host tensor in row-major order, as stored in safetensors (values kept as float32). */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** HF tensor name → tensor, e.g. `model.layers.0.self_attn.q_proj.weight` → [out, in]. */
export type NamedTensors = Map<string, HostTensor>;
