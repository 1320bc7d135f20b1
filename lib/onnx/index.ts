/** Public API of lib/onnx: the only place in kd that talks to onnxruntime and ONNX protobufs. */
export { exportLlamaOnnx, type ExportLlamaOptions } from './export-llama.js';
export { addScoringOutputs, addTopKOutputs, SCORING_OUTPUT, TOPK_OUTPUTS, type TopKSurgeryOptions } from './topk-graph.js';
export {
  buildFeeds, openOnnxSession, positionIdsFromMask, runLogits, runScoring, runTopK,
  type Device, type ExecutionProvider, type Feeds, type IntArray, type OnnxSession, type OpenSessionOptions, type TopKResult,
} from './session.js';
export { externalDataFiles, ioNamesOf, parameterCountOf, vocabSizeOf } from './inspect.js';
export { writeDerivedOnnx } from './files.js';
export { decodeModel, encodeModel, readOnnx, writeOnnx } from './proto.js';
export { onnxMatMulGflops } from './matmul-ceiling.js';
