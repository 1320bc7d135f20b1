import * as tf from '@tensorflow/tfjs-core';
import { markWasmClonesCopy } from './wasm-clones.js';

/*
 * Faster replacements for ten kernels of @tensorflow/tfjs-backend-wasm 4.22, registered for the
 * 'wasm' backend only (other backends keep their own kernels). Same values as the stock kernels
 * (matMul: the same sums, in XNNPACK's order instead of the naive loop's, so equal up to float
 * rounding); only where the work goes changes:
 *  - BatchMatMul: the stock kernel sends every product with a batch > 1 or a transpose flag to a
 *    naive triple loop (~1.5–2 GFLOP/s); only a plain 2-D product reaches XNNPACK's GEMM (15–30).
 *    Here transposed operands are transposed explicitly (the backend's Transpose kernel) and a
 *    batch runs as one XNNPACK product per matrix, on views into the operands' memory (no copy).
 *  - Slice and SplitV: the stock kernels copy the whole input out of the wasm heap for every slice
 *    (readSync), so splitting a tensor into n parts copies it n times; here they read the heap in place.
 *  - Identity (tf.clone, saved tensors of custom gradients) and Cast to the same dtype (every Mul
 *    gradient casts both inputs): the stock kernels copy the data; here the output shares the
 *    input's data, as on the cpu backend (tensors are never written in place).
 *  - Transpose of the last two axes (the matMul operands above, weight gradients): a cache-blocked
 *    copy in 4 × 4 tiles, 3–8× faster than the stock element-by-element loop on power-of-two shapes.
 *  - GatherV2 (the embedding lookup): whole rows copied at once instead of element by element.
 *  - Sum over leading axes (a norm's weight gradient, Σ over positions): rows added in place; the
 *    stock kernel transposes the input first. Same sequential float32 sums, so bitwise the same.
 *  - Concat and Pack (tf.stack): narrow runs (RoPE halves, [N, k, 2] coordinates) copied by a plain
 *    loop; the stock kernel makes a typed-array view per run of even one element.
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
 * Replaces the wasm backend's BatchMatMul, Slice, SplitV, Identity, Cast, Transpose, GatherV2,
 * Sum, Concat and Pack kernels (see the module comment); each falls back to the stock kernel for
 * what it does not handle. Idempotent; call it after the wasm backend is initialised.
 * @returns whether the replacements are in place (false: the backend's internals differ from
 *   tfjs-backend-wasm 4.22's and the stock kernels stay)
 */
export function registerWasmKernels(): boolean {
  if (registered) return true;
  const b = tf.findBackend('wasm') as unknown as Partial<WasmBackend> | null;
  if (!b?.wasm?.tfjs?.registerTensor || !b.wasm.cwrap || !b.dataIdMap || typeof b.dataIdNextNumber !== 'number' || !b.typedArrayFromHeap || !b.incRef) {
    markWasmClonesCopy(); // the memory plan then counts copies of saved tensors
    return false;
  }
  const stock = (name: string) => tf.getKernel(name, 'wasm')!.kernelFunc as unknown as (args: KernelArgs) => KernelOut;
  const transpose = stock(tf.Transpose), batchMatMulStock = stock(tf.BatchMatMul);
  const sliceStock = stock(tf.Slice), identityStock = stock(tf.Identity), splitStock = stock(tf.SplitV), gatherStock = stock(tf.GatherV2);
  const concatStock = stock(tf.Concat), packStock = stock(tf.Pack), sumStock = stock(tf.Sum), castStock = stock(tf.Cast);
  const transposeAny = (args: KernelArgs) => transposeLastTwo(args) ?? transpose(args);
  let gemm: { of: object; f: (...args: unknown[]) => void } | undefined;
  /** Registers kernelFunc under the stock kernel's name, keeping its setup (a new wasm backend instance runs it again for the fallback). */
  const replace = (kernelName: string, kernelFunc: (args: KernelArgs) => KernelOut) => {
    const setupFunc = tf.getKernel(kernelName, 'wasm')!.setupFunc;
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc, setupFunc });
  };
  replace(tf.BatchMatMul, (args) => {
    if (gemm?.of !== args.backend.wasm) gemm = { of: args.backend.wasm, f: args.backend.wasm.cwrap(tf.BatchMatMul, null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']) };
    return batchMatMul(args, gemm.f, transposeAny) ?? batchMatMulStock(args);
  });
  replace(tf.Transpose, transposeAny);
  replace(tf.GatherV2, (args) => gather(args) ?? gatherStock(args));
  replace(tf.Sum, (args) => sumLeading(args) ?? sumStock(args));
  replace(tf.Concat, (args) => concat(args) ?? concatStock(args));
  replace(tf.Pack, (args) => pack(args) ?? packStock(args));
  replace(tf.Slice, (args) => slice(args) ?? sliceStock(args));
  replace(tf.SplitV, (args) => splitV(args) ?? splitStock(args));
  replace(tf.Identity, (args) => identity(args) ?? identityStock(args));
  replace(tf.Cast, (args) => (args.attrs.dtype === (args.inputs.x as tf.TensorInfo).dtype ? identity(args) : undefined) ?? castStock(args));
  registered = true;
  return true;
}

const shapeBytes = (shape: number[]) => new Uint8Array(new Int32Array(shape).buffer);

type HeapArray = Float32Array | Int32Array | Uint8Array;
/** Runs shorter than this are copied element by element: a typed-array view per run costs more. */
const VIEW_RUN = 256;
/** dst[to, to + n) = src[from, from + n). */
function copy(src: HeapArray, from: number, dst: HeapArray, to: number, n: number): void {
  if (n >= VIEW_RUN) dst.set(src.subarray(from, from + n), to);
  else for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
}

/**
 * Elements of XNNPACK's weights operand (B of a GEMM) above which a 2-D product is computed
 * transposed when that puts the smaller operand there: packed weights beyond ~4 MB leave the
 * cache, and the GEMM streams them once per few rows of A (measured: [128, 2048] · [2048, 4096],
 * the LM head's weight gradient, takes 1.5× as long as transposing B, Bᵀ·Aᵀ and transposing back).
 */
const LARGE_WEIGHTS = 1 << 20;

/**
 * Whether C = op(A)·op(B) [M, N] (inner size K) is faster as (op(B)ᵀ·op(A)ᵀ)ᵀ: large weights much
 * wider than A (LARGE_WEIGHTS), or a weight gradient Aᵀ·B over a long contraction (K ≥ 2·max(M, N)),
 * where the transposed form needs no transpose of A and measured 10–40 % faster for the student's
 * shapes ([2048, d_in]ᵀ · [2048, d_out]).
 */
const flipped = (M: number, K: number, N: number, transposeA: boolean, transposeB: boolean) =>
  (K * N > LARGE_WEIGHTS && N > 4 * M) || (transposeA && !transposeB && K >= 2 * Math.max(M, N));

/**
 * a·b (or with either transposed) over the broadcast batch: one XNNPACK GEMM per matrix.
 * A single product runs as (op(B)ᵀ · op(A)ᵀ)ᵀ where that is faster (see {@link flipped}); every
 * output element is the same sum over the inner axis either way.
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
  if (batch === 1 && flipped(M, K, N, transposeA, transposeB)) {
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
    copy(src, offset, dst, o, run);
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

/**
 * The last two axes of x swapped ([…, R, C] → […, C, R]), in 128 × 128 blocks of 4 × 4 tiles so
 * that reads and writes stay in cache lines even when R and C are powers of two.
 * @returns undefined for other permutations and string tensors (the stock kernel runs)
 */
function transposeLastTwo({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const x = inputs.x as tf.TensorInfo, perm = attrs.perm as number[], rank = x.shape.length;
  if (x.dtype === 'string' || rank < 2 || perm.some((p, i) => p !== (i < rank - 2 ? i : 2 * rank - 3 - i))) return undefined;
  const R = x.shape[rank - 2], C = x.shape[rank - 1], n = tf.util.sizeFromShape(x.shape.slice(0, -2));
  const out = backend.makeOutput(perm.map((p) => x.shape[p]), x.dtype);
  const src = backend.typedArrayFromHeap(x), dst = backend.typedArrayFromHeap(out);
  for (let m = 0; m < n; m++) transposeMatrix(src, dst, m * R * C, R, C);
  return out;
}

/** dst[o + j·R + i] = src[o + i·C + j] for an R × C matrix at offset o (see transposeLastTwo). */
function transposeMatrix(src: ArrayLike<number> & { [i: number]: number }, dst: { [i: number]: number }, o: number, R: number, C: number): void {
  const T = 128; // measured best of 16–128 on [2048, 4096], [2048, 704], [4096, 2048]
  for (let i0 = 0; i0 < R; i0 += T) {
    for (let j0 = 0; j0 < C; j0 += T) {
      const i1 = Math.min(R, i0 + T), j1 = Math.min(C, j0 + T);
      const i4 = i0 + ((i1 - i0) & ~3), j4 = j0 + ((j1 - j0) & ~3);
      for (let i = i0; i < i4; i += 4) {
        for (let j = j0; j < j4; j += 4) {
          const s0 = o + i * C + j, s1 = s0 + C, s2 = s1 + C, s3 = s2 + C;
          const d0 = o + j * R + i, d1 = d0 + R, d2 = d1 + R, d3 = d2 + R;
          const a00 = src[s0], a01 = src[s0 + 1], a02 = src[s0 + 2], a03 = src[s0 + 3];
          const a10 = src[s1], a11 = src[s1 + 1], a12 = src[s1 + 2], a13 = src[s1 + 3];
          const a20 = src[s2], a21 = src[s2 + 1], a22 = src[s2 + 2], a23 = src[s2 + 3];
          const a30 = src[s3], a31 = src[s3 + 1], a32 = src[s3 + 2], a33 = src[s3 + 3];
          dst[d0] = a00; dst[d0 + 1] = a10; dst[d0 + 2] = a20; dst[d0 + 3] = a30;
          dst[d1] = a01; dst[d1 + 1] = a11; dst[d1 + 2] = a21; dst[d1 + 3] = a31;
          dst[d2] = a02; dst[d2 + 1] = a12; dst[d2 + 2] = a22; dst[d2 + 3] = a32;
          dst[d3] = a03; dst[d3 + 1] = a13; dst[d3 + 2] = a23; dst[d3 + 3] = a33;
        }
      }
      // the block's edges that do not fill a 4 × 4 tile
      for (let i = i0; i < i1; i++) for (let j = i < i4 ? j4 : j0; j < j1; j++) dst[o + j * R + i] = src[o + i * C + j];
    }
  }
}

/** Slices narrower than this go to the stock kernel (one copy call per slice would cost more). */
const MIN_GATHER_SLICE = 16;

/**
 * tf.gather: out[b, o, i, :] = x[b, o, indices[b, i], :] with whole slices copied at once.
 * @throws Error as the stock kernel, naming the index outside [0, dim − 1]
 * @returns undefined for string tensors and narrow slices (the stock kernel runs)
 */
function gather({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const { x, indices } = inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
  if (x.dtype === 'string') return undefined;
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as never, indices as never, axis, attrs.batchDims as number);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  if (sliceSize < MIN_GATHER_SLICE) return undefined;
  const out = backend.makeOutput(info.outputShape, x.dtype);
  const idx = backend.typedArrayFromHeap(indices), src = backend.typedArrayFromHeap(x), dst = backend.typedArrayFromHeap(out);
  for (const i of idx) tf.util.assert(i <= dimSize - 1 && i >= 0, () => `GatherV2: the index value ${i} is not in [0, ${dimSize - 1}]`);
  const perBatch = idx.length / batchSize;
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let r = 0; r < outerSize; r++) {
      const base = (b * outerSize + r) * dimSize;
      for (let i = 0; i < perBatch; i++, o += sliceSize) {
        const from = (base + idx[b * perBatch + i]) * sliceSize;
        copy(src, from, dst, o, sliceSize);
      }
    }
  }
  return out;
}

/**
 * tf.concat: for each index of the axes before `axis`, every input's run in turn.
 * @returns undefined for string tensors (the stock kernel runs)
 */
function concat({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const xs = inputs as unknown as tf.TensorInfo[];
  if (xs[0].dtype === 'string') return undefined;
  const axis = tf.util.parseAxisParam(attrs.axis as number, xs[0].shape)[0];
  tf.backend_util.assertParamsConsistent(xs.map((t) => t.shape), axis);
  return concatAlong(xs, axis, backend);
}

/** Inputs of the same shape stacked along a new axis `axis` (tf.stack). @returns undefined for strings. */
function pack({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const xs = inputs as unknown as tf.TensorInfo[];
  if (xs[0].dtype === 'string') return undefined;
  xs.forEach((t) => {
    tf.util.assertShapesMatch(xs[0].shape, t.shape, 'All tensors passed to stack must have matching shapes');
    tf.util.assert(xs[0].dtype === t.dtype, () => 'All tensors passed to stack must have matching dtypes');
  });
  const axis = attrs.axis as number;
  const expanded = xs.map((t) => { const shape = [...t.shape]; shape.splice(axis, 0, 1); return { ...t, shape }; });
  return concatAlong(expanded, axis, backend);
}

function concatAlong(xs: tf.TensorInfo[], axis: number, backend: WasmBackend): tf.TensorInfo {
  const out = backend.makeOutput(tf.backend_util.computeOutShape(xs.map((t) => t.shape), axis), xs[0].dtype);
  const parts = xs.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
  if (parts.length === 0) return out;
  const dst = backend.typedArrayFromHeap(out), srcs = parts.map((t) => backend.typedArrayFromHeap(t));
  const inner = parts.map((t) => tf.util.sizeFromShape(t.shape.slice(axis)));
  const outer = tf.util.sizeFromShape(parts[0].shape.slice(0, axis));
  let o = 0;
  for (let b = 0; b < outer; b++) {
    for (let i = 0; i < parts.length; i++) { copy(srcs[i], b * inner[i], dst, o, inner[i]); o += inner[i]; }
  }
  return out;
}

/**
 * tf.sum over axes [0, r) of x viewed as [R, C]: out[j] = ((x[0, j] + x[1, j]) + …) + x[R − 1, j],
 * accumulated in the output's own dtype, the order and rounding of the stock kernel's loop.
 * @returns undefined unless the reduced axes are a leading prefix (and x float32 or int32)
 */
function sumLeading({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const x = inputs.x as tf.TensorInfo;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') return undefined;
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
  if (axes.length === 0 || axes.length === x.shape.length || axes.some((a, i) => a !== i)) return undefined;
  const R = tf.util.sizeFromShape(x.shape.slice(0, axes.length)), C = tf.util.sizeFromShape(x.shape.slice(axes.length));
  const shape = attrs.keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
  const out = backend.makeOutput(shape, x.dtype);
  const src = backend.typedArrayFromHeap(x), acc = backend.typedArrayFromHeap(out);
  acc.fill(0);
  for (let i = 0; i < R; i++) for (let j = 0, o = i * C; j < C; j++, o++) acc[j] += src[o];
  return out;
}
