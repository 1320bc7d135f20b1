/** Public API of kd's losses (DESIGN §4). */
export type { TeacherSignal, TopKMode } from './signal.js';
export { TOPK_MODES } from './signal.js';
export type { Divergence, DivergenceOptions } from './types.js';
export { gatherLastAxis, gatherRows } from './gather.js';
export { TAIL_FLOOR, bucketLogProbs, topkBuckets, type Buckets } from './topk.js';
export { studentLogProbsAt, studentLogProbsAtGroups, type IdGroup } from './student-logprobs.js';
export { forwardKL } from './forward-kl.js';
export { reverseKL } from './reverse-kl.js';
export { jsd, DEFAULT_JSD_BETA } from './jsd.js';
export { tvd } from './tvd.js';
export { skewKL, DEFAULT_SKEW_LAMBDA } from './skew-kl.js';
export { crossEntropy, IGNORE_INDEX } from './cross-entropy.js';
export { LOSSES, LOSS_NAMES, getLoss, isLossName, type LossName } from './registry.js';
export { distillationLoss, distillationLossNormalized, type DistillOptions, type DistillResult } from './distill.js';
export { chunkedDistillationLoss } from './chunked.js';
export { uldPerPosition, uldSum, type UldTeacher } from './uld.js';
export { featureLossSum, FEATURE_LOSSES, type FeatureLossName } from './feature.js';
