/**
 * A small builder for ONNX graph fragments: unique value names, constants as initializers,
 * and the few ops whose signature changed between opsets (axes as attribute vs. input).
 */
import { attr, floatTensor, int64Tensor, OnnxTypes } from './proto.js';

export class GraphBuilder {
  readonly nodes: OnnxTypes.INodeProto[] = [];
  readonly initializers: OnnxTypes.ITensorProto[] = [];
  private counter = 0;

  /**
   * @param opset default-domain opset the fragment must be valid in (≥ 13)
   * @param prefix prepended to every generated value and node name, to avoid collisions
   *   with names already in a graph being edited
   */
  constructor(readonly opset: number, private readonly prefix = '') {
    if (opset < 13) throw new Error(`GraphBuilder: opset ${opset} is not supported (need ≥ 13)`);
  }

  /** A fresh value name, e.g. `kd/MatMul_12`. */
  fresh(hint: string): string {
    return `${this.prefix}${hint}_${this.counter++}`;
  }

  /** Adds a node with `nOut` fresh outputs and returns their names. */
  opN(type: string, inputs: string[], nOut: number, attrs: OnnxTypes.IAttributeProto[] = []): string[] {
    const outputs = Array.from({ length: nOut }, () => this.fresh(type));
    this.nodes.push({ opType: type, name: `${outputs[0]}_node`, input: inputs, output: outputs, attribute: attrs });
    return outputs;
  }

  /** Adds a single-output node and returns its output name. */
  op(type: string, inputs: string[], attrs: OnnxTypes.IAttributeProto[] = []): string {
    return this.opN(type, inputs, 1, attrs)[0];
  }

  /** Adds a node whose outputs get the given (graph-visible) names. */
  emit(type: string, inputs: string[], outputs: string[], attrs: OnnxTypes.IAttributeProto[] = []): void {
    this.nodes.push({ opType: type, name: `${this.prefix}${outputs[0]}_node`, input: inputs, output: outputs, attribute: attrs });
  }

  /** Adds a single-output node whose output gets the given (graph-visible) name. */
  named(name: string, type: string, inputs: string[], attrs: OnnxTypes.IAttributeProto[] = []): string {
    this.emit(type, inputs, [name], attrs);
    return name;
  }

  /** An int64 constant; `dims` [] makes a scalar. */
  int64(values: number[], dims = [values.length]): string {
    const name = this.fresh('const_i64');
    this.initializers.push(int64Tensor(name, values, dims));
    return name;
  }

  /** A float32 constant; `dims` [] makes a scalar. */
  float(values: number[], dims = [values.length]): string {
    const name = this.fresh('const_f32');
    this.initializers.push(floatTensor(name, dims, Float32Array.from(values)));
    return name;
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.op('Unsqueeze', [x, this.int64(axes)]);
  }

  squeeze(x: string, axes: number[]): string {
    return this.op('Squeeze', [x, this.int64(axes)]);
  }

  /** Reduce ops: axes moved from attribute to input in opset 13 (ReduceSum) or 18 (the others). */
  reduce(type: 'ReduceSum' | 'ReduceMean' | 'ReduceMax' | 'ReduceLogSumExp', x: string, axes: number[], keepdims: boolean): string {
    const keep = attr.int('keepdims', keepdims ? 1 : 0);
    if (this.opset >= (type === 'ReduceSum' ? 13 : 18)) return this.op(type, [x, this.int64(axes)], [keep]);
    return this.op(type, [x], [attr.ints('axes', axes), keep]);
  }

  /** x[..., start:end] along `axis`. */
  slice(x: string, start: number, end: number, axis: number): string {
    return this.op('Slice', [x, this.int64([start]), this.int64([end]), this.int64([axis])]);
  }
}
