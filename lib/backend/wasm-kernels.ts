import * as tf from '@tensorflow/tfjs-core';

/*
 * Faster replacements for four kernels of @tensorflow/tfjs-backend-wasm 4.22, registered for the
 * 'wasm' backend only (other backends keep their own kernels). Same values as the stock kernels;
 * only where the work goes changes:
 *  - BatchMatMul: the stock kernel sends every product with a batch > 1 or a transpose flag to a
 *    naive triple loop (~1.5–2 GFLOP/s); only a plain 2-D product reaches XNNPACK's GEMM (15–30).
 *    Here transposed operands are transposed explicitly (the backend's Transpose kernel) and a
 *    batch runs as one XNNPACK product per matrix, on views into the operands' memory (no copy).
 *  - Slice and SplitV: the stock kernels copy the whole input out of the wasm heap for every slice
 *    (readSync), so splitting a tensor into n parts copies it n times; here they read the heap in place.
 *  - Identity (tf.clone, saved tensors of custom gradients): the stock kernel copies the data twice;
 *    here the output shares the input's data, as on the cpu backend (tensors are never written in place).
 * The replacements use members of the wasm backend that are not part of its typed API (its wasm
 * module, tensor ids and heap offsets); `registerWasmKernels` checks they exist and otherwise
 * leaves the stock kernels in place.
 */

/** What the replacements use of the wasm backend (tfjs-backend-wasm 4.22 BackendWasm). */
interface WasmBackend {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    HEAPU8: Uint8Array;
    tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object): boolean;
  incRef(dataId: object): void;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: WasmBackend; attrs: tf.NamedAttrMap };
type KernelOut = tf.TensorInfo | tf.TensorInfo[];

let registered = false;

/**
 * Replaces the wasm backend's BatchMatMul, Slice, SplitV and Identity kernels (see the module
 * comment). Idempotent; call it after the wasm backend is initialised.
 * @returns whether the replacements are in place (false: the backend's internals differ from
 *   tfjs-backend-wasm 4.22's and the stock kernels stay)
 */
export function registerWasmKernels(): boolean {
  if (registered) return true;
  const b = tf.findBackend('wasm') as unknown as Partial<WasmBackend> | null;
  if (!b?.wasm?.tfjs?.registerTensor || !b.wasm.cwrap || !b.dataIdMap || typeof b.dataIdNextNumber !== 'number' || !b.typedArrayFromHeap || !b.incRef) return false;
  const stock = (name: string) => tf.getKernel(name, 'wasm')!.kernelFunc as unknown as (args: KernelArgs) => KernelOut;
  const transpose = stock(tf.Transpose), batchMatMulStock = stock(tf.BatchMatMul);
  const sliceStock = stock(tf.Slice), identityStock = stock(tf.Identity), splitStock = stock(tf.SplitV);
  let gemm: ((...args: unknown[]) => void) | undefined;
  const replace = (kernelName: string, kernelFunc: (args: KernelArgs) => KernelOut) => {
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  };
  replace(tf.BatchMatMul, (args) => {
    gemm ??= args.backend.wasm.cwrap(tf.BatchMatMul, null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
    return batchMatMul(args, gemm, transpose) ?? batchMatMulStock(args);
  });
  replace(tf.Slice, (args) => slice(args) ?? sliceStock(args));
  replace(tf.SplitV, (args) => splitV(args) ?? splitStock(args));
  replace(tf.Identity, (args) => identity(args) ?? identityStock(args));
  registered = true;
  return true;
}

const shapeBytes = (shape: number[]) => new Uint8Array(new Int32Array(shape).buffer);

/**
 * Elements of XNNPACK's weights operand (B of a GEMM) above which a 2-D product is computed
 * transposed when that puts the smaller operand there: packed weights beyond ~4 MB leave the
 * cache, and the GEMM streams them once per few rows of A (measured: [128, 2048] · [2048, 4096],
 * the LM head's weight gradient, takes 1.5× as long as transposing B, Bᵀ·Aᵀ and transposing back).
 */
const LARGE_WEIGHTS = 1 << 20;

/**
 * a·b (or with either transposed) over the broadcast batch: one XNNPACK GEMM per matrix.
 * A single product whose B is large and much larger than A runs as (op(B)ᵀ · op(A)ᵀ)ᵀ instead
 * (see LARGE_WEIGHTS); every output element is the same sum over the inner axis either way.
 * @returns undefined for what it does not handle (non-float32, batch dims broadcast other than
 *   by 1, mismatched inner sizes, empty operands): the stock kernel then runs (and throws its own errors).
 */
function batchMatMul({ inputs, backend, attrs }: KernelArgs, gemm: (...args: unknown[]) => void, transpose: (args: KernelArgs) => KernelOut): tf.TensorInfo | undefined {
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return undefined;
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const M = transposeA ? ac : ar, K = transposeA ? ar : ac, N = transposeB ? br : bc;
  if ((transposeB ? bc : br) !== K || M * N * K === 0) return undefined;
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2)), batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined;
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = Math.max(batchA, batchB);
  const temporaries: tf.TensorInfo[] = [];
  /** t as [n, r, c] (flip = false) or its transpose [n, c, r]; a transposed copy is freed at the end. */
  const laid = (t: tf.TensorInfo, n: number, r: number, c: number, flip: boolean) => {
    if (!flip) return t;
    const out = transpose({ inputs: { x: { ...t, shape: [n, r, c] } }, backend, attrs: { perm: [0, 2, 1] } }) as tf.TensorInfo;
    temporaries.push(out);
    return out;
  };
  const freeTemporaries = () => temporaries.forEach((t) => backend.disposeData(t.dataId));
  if (batch === 1 && K * N > LARGE_WEIGHTS && N > 4 * M) {
    const ct = backend.makeOutput([N, M], 'float32');
    temporaries.push(ct);
    gemmAll(backend, gemm, laid(b, 1, br, bc, !transposeB), laid(a, 1, ar, ac, !transposeA), ct, 1, 1, N, K, M);
    const out = transpose({ inputs: { x: ct }, backend, attrs: { perm: [1, 0] } }) as tf.TensorInfo;
    freeTemporaries();
    return { ...out, shape: [...outer, M, N] };
  }
  const pa = laid(a, batchA, ar, ac, transposeA), pb = laid(b, batchB, br, bc, transposeB);
  const out = backend.makeOutput([...outer, M, N], 'float32');
  gemmAll(backend, gemm, pa, pb, out, batchA, batchB, M, K, N);
  freeTemporaries();
  return out;
}

/**
 * out[i] = a[i]·b[i] for each of max(batchA, batchB) matrices (an operand with batch 1 is reused),
 * a [batchA, M, K], b [batchB, K, N], out [batch, M, N], all in plain layout: XNNPACK's GEMM (the
 * stock kernel's fast path) on tensor ids registered over each matrix's memory, so nothing is copied.
 */
function gemmAll(backend: WasmBackend, gemm: (...args: unknown[]) => void, a: tf.TensorInfo, b: tf.TensorInfo, out: tf.TensorInfo, batchA: number, batchB: number, M: number, K: number, N: number): void {
  const [ia, ib, io] = [a, b, out].map((t) => backend.dataIdMap.get(t.dataId));
  const aShape = shapeBytes([1, M, K]), bShape = shapeBytes([1, K, N]);
  const batch = Math.max(batchA, batchB);
  if (batch === 1) { gemm(ia.id, aShape, 3, ib.id, bShape, 3, false, false, io.id); return; }
  const wasm = backend.wasm.tfjs;
  const view = (at: { memoryOffset: number }, count: number, size: number, i: number) => {
    const id = backend.dataIdNextNumber++;
    wasm.registerTensor(id, size, at.memoryOffset + 4 * size * (count === 1 ? 0 : i));
    return id;
  };
  for (let i = 0; i < batch; i++) {
    const va = view(ia, batchA, M * K, i), vb = view(ib, batchB, K * N, i), vo = view(io, batch, M * N, i);
    gemm(va, aShape, 3, vb, bShape, 3, false, false, vo);
    [va, vb, vo].forEach((id) => wasm.disposeData(id)); // also drops XNNPACK's operator cached for vb
  }
}

/**
 * x[begin : begin + size] copied straight from the wasm heap, one contiguous run at a time.
 * @returns undefined for string tensors (the stock kernel handles them)
 */
function slice({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const x = inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return undefined;
  const [begin, size] = tf.slice_util.parseSliceParams(x as never, attrs.begin as number[], attrs.size as number[]);
  return sliceOf(x, begin, size, backend);
}

function sliceOf(x: tf.TensorInfo, begin: number[], size: number[], backend: WasmBackend): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype); // before taking heap views: allocation may grow (and detach) the heap
  if (tf.util.sizeFromShape(size) === 0) return out;
  const src = backend.typedArrayFromHeap(x), dst = backend.typedArrayFromHeap(out);
  const strides = tf.util.computeStrides(x.shape);
  // The innermost axes taken whole form one contiguous run.
  let inner = x.shape.length;
  while (inner > 0 && begin[inner - 1] === 0 && size[inner - 1] === x.shape[inner - 1]) inner--;
  const run = inner === 0 ? dst.length : size[inner - 1] * (inner < x.shape.length ? strides[inner - 1] : 1);
  const lead = inner === 0 ? 0 : inner - 1; // axes [0, lead) are iterated
  const at = new Array<number>(lead).fill(0);
  for (let o = 0; o < dst.length; o += run) {
    let offset = inner === 0 ? 0 : begin[lead] * (lead < strides.length ? strides[lead] : 1);
    for (let d = 0; d < lead; d++) offset += (begin[d] + at[d]) * strides[d];
    dst.set(src.subarray(offset, offset + run), o);
    for (let d = lead - 1; d >= 0; d--) { if (++at[d] < size[d]) break; at[d] = 0; }
  }
  return out;
}

/** tf.split as slices read in place. @returns undefined for string tensors. */
function splitV({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] | undefined {
  const x = inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return undefined;
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as never, attrs.numOrSizeSplits as number[], axis);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[axis] = s;
    const part = sliceOf(x, [...begin], size, backend);
    begin[axis] += s;
    return part;
  });
}

/** The input's data under a new tensor (reference counted, as Reshape does). @returns undefined for strings. */
function identity({ inputs, backend }: KernelArgs): tf.TensorInfo | undefined {
  const x = inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return undefined;
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}
