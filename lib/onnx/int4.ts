/**
 * Block-wise 4-bit weight quantization in the layout of ONNX Runtime's `com.microsoft.MatMulNBits`
 * (docs/ContribOperators.md in microsoft/onnxruntime, bits = 4):
 *
 * - the weight is W [N, K] (N outputs, K inputs: exactly a `torch.nn.Linear` weight), quantized
 *   along K in blocks of `block_size` (a power of two ≥ 16), k_blocks = ceil(K / block_size);
 * - `B` uint8 [N, k_blocks, block_size / 2]: the codes of one block packed two per byte along K,
 *   the first of each pair in the low nibble, the second in the high nibble;
 * - `scales` [N, k_blocks] in the activation type;
 * - `zero_points` (optional) uint8 [N, ceil(k_blocks / 2)], packed like B along the blocks of one
 *   row; absent means 8 (= 2^(bits−1));
 * - dequantization: W[n, k] = (code − zero_point) · scale, and the op computes Y = A · Wᵀ.
 *
 * The rounding follows ORT's own quantizer (MLAS `MlasQuantizeBlockwise`): symmetric blocks map
 * the value of largest magnitude to −8 (scale = v / −8), so the codes use [0, 15] around 8;
 * asymmetric blocks take the range [min(0, min v), max(0, max v)] with scale = range / 15 and
 * zero_point = round(−min / scale), so 0 is exactly representable. K not divisible by the block
 * size is padded with zeros in the last block.
 */

/** Quantized weight of one linear layer, ready to become MatMulNBits initializers. */
export interface Int4Weight {
  /** Output features N. */
  n: number;
  /** Input features K. */
  k: number;
  blockSize: number;
  /** ceil(K / blockSize). */
  kBlocks: number;
  /** uint8 [N, kBlocks, blockSize / 2]. */
  packed: Uint8Array;
  /** [N, kBlocks]. */
  scales: Float32Array;
  /** uint8 [N, ceil(kBlocks / 2)] for asymmetric quantization; undefined for symmetric (zero point 8). */
  zeroPoints?: Uint8Array;
}

/**
 * Packs 4-bit codes (integers 0…15) two per byte, first code in the low nibble.
 * An odd count leaves the last high nibble 0.
 * @throws Error for a code outside [0, 15].
 */
export function pack4(codes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (!(Number.isInteger(c) && c >= 0 && c <= 15)) throw new Error(`pack4: code ${c} at ${i} is not in [0, 15]`);
    out[i >> 1] |= i & 1 ? c << 4 : c;
  }
  return out;
}

/** Inverse of {@link pack4}: the first `count` 4-bit codes of `bytes`. */
export function unpack4(bytes: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = i & 1 ? bytes[i >> 1] >> 4 : bytes[i >> 1] & 15;
  return out;
}

const clampCode = (x: number): number => Math.min(15, Math.max(0, x));
/** C `roundf`: halves away from zero (Math.round rounds −2.5 to −2). */
const roundf = (x: number): number => Math.sign(x) * Math.round(Math.abs(x));

/**
 * Scale, zero point and codes of one block (length blockSize, zero-padded), as MLAS computes
 * them: code = clamp(roundf(v · (1/scale) + zero_point), 0, 15) in float32.
 */
export function quantizeBlock(values: ArrayLike<number>, symmetric: boolean): { scale: number; zeroPoint: number; codes: Uint8Array } {
  let lo = 0, hi = 0;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]);
    hi = Math.max(hi, values[i]);
  }
  let scale: number, zeroPoint: number;
  if (symmetric) {
    scale = Math.fround((Math.abs(hi) > Math.abs(lo) ? hi : lo) / -8) || 0; // never −0
    zeroPoint = 8;
  } else {
    // float32 at every step, as MLAS (and lib/quant/fake-quant.ts) compute it
    scale = Math.fround(Math.fround(hi - lo) / 15);
    zeroPoint = scale === 0 ? 0 : clampCode(roundf(Math.fround(-lo / scale)));
  }
  const recip = scale === 0 ? 0 : Math.fround(1 / scale);
  const codes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) codes[i] = clampCode(roundf(Math.fround(Math.fround(values[i] * recip) + zeroPoint)));
  return { scale, zeroPoint, codes };
}

/**
 * Quantizes W [N, K] (row-major, N outputs × K inputs) to MatMulNBits' 4-bit layout.
 * @param blockSize power of two ≥ 16 (ORT's requirement)
 * @throws Error for a bad block size or a `w` whose length is not N·K.
 */
export function quantizeInt4(w: Float32Array, n: number, k: number, blockSize = 32, symmetric = false): Int4Weight {
  if (!(Number.isInteger(blockSize) && blockSize >= 16 && (blockSize & (blockSize - 1)) === 0)) {
    throw new Error(`int4 block size must be a power of two ≥ 16, got ${blockSize}`);
  }
  if (w.length !== n * k) throw new Error(`quantizeInt4: weight has ${w.length} values, expected ${n} × ${k}`);
  const kBlocks = Math.ceil(k / blockSize), blob = blockSize / 2, zpRow = Math.ceil(kBlocks / 2);
  const packed = new Uint8Array(n * kBlocks * blob), scales = new Float32Array(n * kBlocks);
  const zeroPoints = symmetric ? undefined : new Uint8Array(n * zpRow);
  const block = new Float32Array(blockSize);
  for (let row = 0; row < n; row++) {
    const zps = new Uint8Array(kBlocks);
    for (let b = 0; b < kBlocks; b++) {
      block.fill(0);
      const start = b * blockSize;
      block.set(w.subarray(row * k + start, row * k + Math.min(k, start + blockSize)));
      const q = quantizeBlock(block, symmetric);
      scales[row * kBlocks + b] = q.scale;
      zps[b] = q.zeroPoint;
      packed.set(pack4(q.codes), (row * kBlocks + b) * blob);
    }
    zeroPoints?.set(pack4(zps), row * zpRow);
  }
  return { n, k, blockSize, kBlocks, packed, scales, zeroPoints };
}

/** W [N, K] as MatMulNBits reconstructs it: (code − zero_point) · scale (float32 arithmetic). */
export function dequantizeInt4(q: Int4Weight): Float32Array {
  const { n, k, blockSize, kBlocks } = q, blob = blockSize / 2, zpRow = Math.ceil(kBlocks / 2);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    const zps = q.zeroPoints ? unpack4(q.zeroPoints.subarray(row * zpRow, (row + 1) * zpRow), kBlocks) : undefined;
    for (let b = 0; b < kBlocks; b++) {
      const off = (row * kBlocks + b) * blob;
      const codes = unpack4(q.packed.subarray(off, off + blob), blockSize);
      const scale = q.scales[row * kBlocks + b], zp = zps ? zps[b] : 8;
      for (let j = 0; j < blockSize && b * blockSize + j < k; j++) out[row * k + b * blockSize + j] = Math.fround((codes[j] - zp) * scale);
    }
  }
  return out;
}
