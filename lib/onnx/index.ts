/** Public API of lib/onnx: the only place in kd that talks to onnxruntime and ONNX protobufs. */
export {
  buildLlamaModel, exportLlamaOnnx, writeLlamaOnnx, ONNX_DTYPES, ONNX_IOS, type ExportLlamaOptions, type OnnxDtype, type OnnxIo,
} from './export-llama.js';
export { splitExternalData, writeOnnxExternal } from './external-data.js';
export { dequantizeInt4, pack4, quantizeInt4, unpack4, type Int4Weight } from './int4.js';
export { addHiddenOutput, findHiddenTensors, HIDDEN_OUTPUT, hiddenTensorName, type HiddenSurgeryOptions } from './hidden-graph.js';
export { addScoringOutputs, addTopKOutputs, SCORING_OUTPUT, TOPK_OUTPUTS, WIDTH_OUTPUT, type TopKSurgeryOptions } from './topk-graph.js';
export {
  buildFeeds, openOnnxSession, positionIdsFromMask, runLogits, runSampled, runScoring, runTopK,
  type Device, type ExecutionProvider, type Feeds, type IntArray, type OnnxSession, type OpenSessionOptions, type TopKResult,
} from './session.js';
export {
  checkContextLength, contextLengthOf, declaredLogitsWidth, externalDataFiles, hiddenSizeOf, ioNamesOf, metadataOf, parameterCountOf, teacherDtypeOf, vocabSizeOf, type ContextLength,
} from './inspect.js';
export { addSampledOutputs, UNIFORMS_INPUT, type SampledSurgeryOptions } from './sample-graph.js';
export { openDerivedSession, writeDerivedOnnx } from './files.js';
export { decodeModel, encodeModel, readOnnx, writeOnnx } from './proto.js';
export { onnxMatMulGflops } from './matmul-ceiling.js';
export { modelTokenizerOf, TOKENIZER_SHA256_KEY, type ModelTokenizer } from './model-tokenizer.js';
