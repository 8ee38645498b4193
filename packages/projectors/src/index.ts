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
  type DataProblem,
  type DataProblemKind,
  type ReadTrainDataOptions,
  readTrainData,
  type TrainSample,
} from './train-data.js';
