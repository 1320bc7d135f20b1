/**
 * What precision an ONNX model really computes in after ONNX Runtime has optimized it for an
 * execution provider. ORT's CPU provider has no fp16 kernel for most ops on x86-64 (MLAS's fp16
 * GEMM is an ARM64 feature); its InsertCastTransformer then wraps those nodes in Casts
 * (`InsertedPrecisionFreeCast_*`) and FuseFp16InitializerToFp32NodeTransformer stores their fp16
 * weights as fp32. This module saves the optimized graph (`optimizedModelFilePath`) and
 * reports, per op type, the float input types it ends up with.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { decodeModel, DT, OnnxTypes } from './proto.js';

/** Float precision of the inputs of each op type in the optimized graph. */
export interface PlacementReport {
  /** op type (domain-qualified for contrib ops) → distinct float input signatures, e.g. ['f16'], ['f32,f32']. */
  floatInputs: Record<string, string[]>;
  /** Cast nodes ORT inserted (not in the source model). */
  insertedCasts: number;
  /** Initializers of rank ≥ 2 by element type: 'f32' | 'f16' | 'u8' | other codes. */
  weights: Record<string, number>;
}

const NAMES: Record<number, string> = { [DT.FLOAT]: 'f32', [DT.FLOAT16]: 'f16', [DT.UINT8]: 'u8', [DT.INT64]: 'i64' };
/** Ops whose output is not a float tensor whatever their inputs. */
const NON_FLOAT = new Set(['Shape', 'GreaterOrEqual', 'Greater', 'Less', 'Equal', 'And', 'Or', 'Not', 'Range', 'CumSum', 'TopK']);

/** Propagates element types through a topologically sorted graph (Cast → `to`, others → first float input). */
function report(model: OnnxTypes.ModelProto, sourceNodes: Set<string>): PlacementReport {
  // Decoded messages are class instances: repeated fields are arrays, strings are set.
  const g = model.graph as OnnxTypes.GraphProto, types = new Map<string, number>();
  for (const v of [...g.input, ...g.valueInfo] as OnnxTypes.ValueInfoProto[]) types.set(v.name, v.type?.tensorType?.elemType ?? 0);
  const weights: Record<string, number> = {};
  for (const t of g.initializer as OnnxTypes.TensorProto[]) {
    types.set(t.name, t.dataType);
    const key = NAMES[t.dataType] ?? String(t.dataType);
    if (t.dims.length >= 2) weights[key] = (weights[key] ?? 0) + 1;
  }
  const sigs = new Map<string, Set<string>>();
  let insertedCasts = 0;
  for (const n of g.node as OnnxTypes.NodeProto[]) {
    const ins = n.input.map((i) => types.get(i) ?? 0), floats = ins.filter((t) => t === DT.FLOAT || t === DT.FLOAT16);
    const to = Number(n.attribute.find((a) => a.name === 'to')?.i ?? 0);
    const out = n.opType === 'Cast' ? to : NON_FLOAT.has(n.opType) ? DT.INT64 : floats[0] ?? ins[0] ?? 0;
    for (const o of n.output) types.set(o, out);
    if (n.opType === 'Cast') {
      if (!sourceNodes.has(n.name)) insertedCasts++;
      continue;
    }
    const key = n.domain ? `${n.domain}.${n.opType}` : n.opType;
    if (!sigs.has(key)) sigs.set(key, new Set());
    sigs.get(key)!.add(floats.map((t) => NAMES[t]).join(',') || '-');
  }
  const floatInputs = Object.fromEntries([...sigs].map(([k, v]) => [k, [...v].sort()]));
  return { floatInputs, insertedCasts, weights };
}

/**
 * Optimizes `modelPath` for the CPU provider (graph optimization level 'all', as kd's sessions do)
 * and reports the precision of every op type in the result.
 * @throws Error naming the file when ORT cannot load it.
 */
export async function cpuPlacement(modelPath: string): Promise<PlacementReport> {
  const dir = mkdtempSync(join(tmpdir(), 'kd-placement-')), out = join(dir, 'optimized.onnx');
  try {
    await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', optimizedModelFilePath: out, logSeverityLevel: 3 });
    const source = decodeModel(readFileSync(modelPath), modelPath);
    return report(decodeModel(readFileSync(out), out), new Set((source.graph!.node as OnnxTypes.NodeProto[]).map((n) => n.name)));
  } catch (e) {
    throw new Error(`${modelPath}: ${String((e as Error).message).split('\n')[0]}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
