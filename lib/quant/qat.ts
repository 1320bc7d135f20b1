/**
 * Quantization-aware training settings (`kd train --qat int8|int4 --qat-start N
 * --qat-block-size B`): which linear weights are fake-quantized (fake-quant.ts), from which step,
 * and the checks that a run's settings can be exported as trained.
 *
 * Quantized: the four linear weights of every decoder layer — fused q|k|v (`wqkv`), the attention
 * output (`wo`), gate|up (`wgu`) and down (`wdown`), i.e. HF's q/k/v/o/gate/up/down_proj — exactly
 * the ones `kd export --dtype int8|int4` quantizes. Not quantized (float32, as in the export): the
 * embedding (which is also the tied LM head), an untied `lm_head`, the norms and the biases.
 */
import * as tf from '@tensorflow/tfjs-core';
import { headDim, LlamaConfig } from '../model/config.js';
import { fakeQuantInt4Blocks, fakeQuantInt8PerChannel } from './fake-quant.js';

export type QatMode = 'none' | 'int8' | 'int4';
export const QAT_MODES: readonly QatMode[] = ['none', 'int8', 'int4'];

/** A transform of a linear weight [in, out] applied on every forward pass (see LlamaModel.linearWeights). */
export type WeightTransform = (w: tf.Tensor2D, name: string) => tf.Tensor2D;

/** Names (fused, lib/model/hf-layout.ts) of the weights QAT quantizes. */
export const QAT_WEIGHT = /^\d+\.(wqkv|wo|wgu|wdown)$/;

/**
 * The fake quantization of `mode` as a weight transform (undefined for 'none').
 * @param blockSize int4 only: rows per block along the input axis
 */
export function qatTransform(mode: QatMode, blockSize: number): WeightTransform | undefined {
  if (mode === 'none') return undefined;
  return (w, name) => {
    if (!QAT_WEIGHT.test(name)) return w;
    return mode === 'int8' ? fakeQuantInt8PerChannel(w) : fakeQuantInt4Blocks(w, blockSize);
  };
}

/**
 * Refuses an int4 block size that MatMulNBits cannot run or that does not divide every linear
 * weight's input dimension (hidden_size for q/k/v/gate/up, heads·head_dim for o, intermediate_size
 * for down), in one line naming `source`. Nothing to check for 'none' and 'int8'.
 * @throws Error "<source>: qat_block_size 48 …".
 */
export function checkQatBlockSize(mode: QatMode, blockSize: number, cfg: LlamaConfig, source: string): void {
  if (mode !== 'int4') return;
  if (!(Number.isInteger(blockSize) && blockSize >= 16 && (blockSize & (blockSize - 1)) === 0)) {
    throw new Error(`${source}: qat_block_size = ${blockSize} must be a power of two ≥ 16 (MatMulNBits' block sizes)`);
  }
  const dims = { hidden_size: cfg.hidden_size, 'num_attention_heads · head_dim': cfg.num_attention_heads * headDim(cfg), intermediate_size: cfg.intermediate_size };
  for (const [what, k] of Object.entries(dims)) {
    if (k % blockSize !== 0) throw new Error(`${source}: qat_block_size = ${blockSize} does not divide the model's ${what} = ${k} (an input dimension of the quantized linears)`);
  }
}

/** Whether fake quantization is on once `stepsDone` optimizer steps are done (the next step's forward and evaluations after it). */
export function qatActive(mode: QatMode, start: number, stepsDone: number): boolean {
  return mode !== 'none' && stepsDone >= start;
}

/** The QAT settings a training run recorded (train.json's config), as far as export cares. */
export interface TrainedQat { qat: QatMode; qat_block_size: number }

/**
 * Why an export would not run what a QAT student was trained to run, or undefined when it does
 * (or the run was not QAT): int8 QAT needs `--dtype int8`; int4 QAT `--dtype int4` with the same
 * `--block-size` and asymmetric blocks.
 */
export function qatExportMismatch(trained: TrainedQat, dtype: string, blockSize: number, symmetric: boolean): string | undefined {
  if (trained.qat === 'none') return undefined;
  const want = trained.qat === 'int8' ? '--dtype int8' : `--dtype int4 --block-size ${trained.qat_block_size} (asymmetric)`;
  const same = trained.qat === 'int8' ? dtype === 'int8' : dtype === 'int4' && blockSize === trained.qat_block_size && !symmetric;
  return same ? undefined : `the checkpoint was trained with --qat ${trained.qat}${trained.qat === 'int4' ? ` --qat-block-size ${trained.qat_block_size}` : ''}; this export (--dtype ${dtype}${dtype === 'int4' ? ` --block-size ${blockSize}${symmetric ? ' --symmetric' : ''}` : ''}) is not the model it trained: export with ${want}`;
}
