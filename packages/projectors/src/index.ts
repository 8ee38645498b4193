export { Embeddings, type SpanLayout, spanPositionIds, spanPositions } from './embeddings.js';
export {
  type FusedChunk,
  type FusedEmbedding,
  type FusedInfo,
  type FusedItem,
  type FusedLoadOptions,
  FusedMedia,
  inspectFused,
  projectorTypes,
} from './fused.js';
export {
  checkPair,
  inspectMmproj,
  type MmprojInfo,
  type ProjectOptions,
  Projector,
  type ProjectorInfo,
  type ProjectorLoadOptions,
  type SliceTemplate,
  SUPPORTED_AUDIO_PROJECTOR_FAMILIES,
  SUPPORTED_PROJECTOR_FAMILIES,
} from './projector.js';
export {
  type AdamWStep,
  ProjectorTrainer,
  type ProjectorTrainerOptions,
  type TrainSequence,
  type TrainStepResult,
} from './projector-trainer.js';
export {
  type DataProblem,
  type DataProblemKind,
  type ReadTrainDataOptions,
  readTrainData,
  type TrainSample,
} from './train-data.js';
export { layoutTrainSample, type TrainLayout, type TrainLayoutOptions } from './train-layout.js';
export {
  batchAt,
  learningRate,
  type TrainCurvePoint,
  type TrainOptimizer,
  type TrainProgress,
  type TrainProjectorKind,
  type TrainProjectorOptions,
  type TrainProjectorResult,
  type TrainStage,
  type TrainStageResult,
  trainProjector,
} from './train-projector.js';
