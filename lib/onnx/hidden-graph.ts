/**
 * Graph surgery for feature distillation: adds one output `hidden` holding the teacher's residual
 * stream at chosen layers, as float16 [B, L, n_layers, width] (optionally through a fixed random
 * projection), so precompute stores it beside the top-k soft labels (DESIGN §3.2).
 *
 * Layer convention (HF `output_hidden_states` indices): 0 = the token embeddings, i ≥ 1 = the
 * residual stream after decoder layer i (1-based), before the final norm. (HF's last entry
 * `hidden_states[num_layers]` has model.norm applied; here index num_layers is the raw residual.)
 */
import { EMBEDDING_OUTPUT_NAME, layerOutputName } from './llama-graph.js';
import { GraphBuilder } from './graph-builder.js';
import { graphNodesOf, hiddenSizeOf, producedValuesOf } from './inspect.js';
import { attr, DT, floatTensor, valueInfo } from './proto.js';
import { editGraph, viewGraph } from './raw.js';

/** Name of the output added by {@link addHiddenOutput}. */
export const HIDDEN_OUTPUT = 'hidden';
const PREFIX = 'kd_hidden/';

/** Options of {@link addHiddenOutput}. */
export interface HiddenSurgeryOptions {
  /** HF hidden-state indices (0 = embeddings, i = after decoder layer i), distinct, ascending order kept as given. */
  layers: number[];
  /** Explicit value names, one per layer (for graphs whose names are not recognised). */
  tensorNames?: string[];
  /** Fixed projection P [hidden_size, dim] applied before the fp16 cast (row-major float values). */
  projection?: { dim: number; matrix: Float32Array };
  /** Name for error messages (the .onnx path). */
  source?: string;
}

/**
 * The value name of hidden-state index `layer` in graphs from kd's export (since it names them), `torch.onnx.export` and
 * Optimum: `/model/embed_tokens/Gather_output_0` for 0, `/model/layers.{i−1}/Add_1_output_0` for i.
 */
export function hiddenTensorName(layer: number): string {
  return layer === 0 ? EMBEDDING_OUTPUT_NAME : layerOutputName(layer - 1);
}

/**
 * The residual stream found by structure, for graphs without torch's names (e.g. kd exports made
 * before it named them): from the Gather of `input_ids` follow the Add that consumes the current
 * value — in a pre-norm decoder the only Add reading the residual directly is the residual
 * connection (the norms Pow/Mul/Div it) — two Adds per layer (attention, then MLP).
 * @returns [h_0, h_1, …]: the embeddings and the value after each complete layer
 */
export function residualChain(modelBytes: Uint8Array): string[] {
  const ns = graphNodesOf(modelBytes);
  const embed = ns.find((n) => n.opType === 'Gather' && n.input[1] === 'input_ids');
  if (!embed) return [];
  const chain = [embed.output[0]];
  for (let h = embed.output[0], adds = 0; ;) {
    const next = ns.filter((n) => n.opType === 'Add' && n.input.includes(h));
    if (next.length !== 1) return chain;
    h = next[0].output[0];
    if (++adds % 2 === 0) chain.push(h);
  }
}

/**
 * The value names of `layers` in the model (the explicit `tensorNames` when given): torch's names
 * ({@link hiddenTensorName}), else the {@link residualChain}.
 * @throws Error "<source>: no tensor for hidden layer 3 (looked for '/model/layers.2/Add_1_output_0'); name it with --hidden-outputs"
 */
export function findHiddenTensors(modelBytes: Uint8Array, layers: number[], source: string, tensorNames?: string[]): string[] {
  if (tensorNames && tensorNames.length !== layers.length) {
    throw new Error(`${source}: --hidden-outputs names ${tensorNames.length} tensor(s) for ${layers.length} hidden layer(s) [${layers}]`);
  }
  const produced = producedValuesOf(modelBytes);
  let chain: string[] | undefined;
  return layers.map((layer, i) => {
    let name = tensorNames?.[i] ?? hiddenTensorName(layer);
    if (!tensorNames && !produced.has(name)) name = (chain ??= residualChain(modelBytes))[layer] ?? name;
    if (!produced.has(name)) {
      throw new Error(`${source}: no tensor for hidden layer ${layer} (looked for '${name}'); name the residual stream's tensor with --hidden-outputs`);
    }
    return name;
  });
}

/**
 * Adds the graph output `hidden` float16 [batch_size, sequence_length, n_layers, width]: for each
 * layer the residual-stream tensor [B, L, hidden_size] (found by {@link findHiddenTensors}), cast
 * to float32, times the projection P [hidden_size, dim] when given (width = dim, else
 * hidden_size), cast to float16, and stacked on axis 2. Existing outputs are kept (apply after
 * addTopKOutputs).
 * @throws Error naming `source` for a layer whose tensor is missing, a projection whose rows are not
 *   the model's hidden size, or a model whose hidden size cannot be read while a projection is asked.
 */
export function addHiddenOutput(modelBytes: Uint8Array, opts: HiddenSurgeryOptions): Uint8Array {
  const source = opts.source ?? 'model';
  if (opts.layers.length === 0) throw new Error(`${source}: no hidden layers asked for`);
  const tensors = findHiddenTensors(modelBytes, opts.layers, source, opts.tensorNames);
  const g = new GraphBuilder(viewGraph(modelBytes, source).opset, PREFIX);
  const D = hiddenSizeOf(modelBytes);
  let P: string | undefined;
  if (opts.projection) {
    const { dim, matrix } = opts.projection;
    if (D === undefined) throw new Error(`${source}: cannot read the hidden size (no float embedding table gathers input_ids) to build the --hidden-dim projection`);
    if (matrix.length !== D * dim) throw new Error(`${source}: projection has ${matrix.length} values, expected ${D}×${dim}`);
    P = `${PREFIX}projection`;
    g.initializers.push(floatTensor(P, [D, dim], matrix));
  }
  const per = tensors.map((t) => {
    const x = g.op('Cast', [t], [attr.int('to', DT.FLOAT)]); // [B, L, D]
    const y = P ? g.op('MatMul', [x, P]) : x; // [B, L, width]
    return g.unsqueeze(g.op('Cast', [y], [attr.int('to', DT.FLOAT16)]), [2]); // [B, L, 1, width]
  });
  g.named(HIDDEN_OUTPUT, 'Concat', per, [attr.int('axis', 2)]);
  const width = opts.projection?.dim ?? D ?? 'hidden_size';
  return editGraph(modelBytes, {
    dropOutputs: false, nodes: g.nodes, initializers: g.initializers, inputs: [],
    outputs: [valueInfo(HIDDEN_OUTPUT, DT.FLOAT16, ['batch_size', 'sequence_length', opts.layers.length, width])],
  }, source);
}
