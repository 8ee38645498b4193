export { Answerer } from './answerer.js';
export {
  type AnswerTimes,
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  ChatStream,
  chatStats,
  type PromptStats,
  samplingOf,
  streamChat,
} from './chat.js';
export { fusedLayout, ModelComponents, type ModelComponentsLoadOptions } from './components.js';
export {
  defaultCacheDir,
  type FileProgress,
  type HubFile,
  type PulledFile,
  type PullModelOptions,
  type PullProgress,
  type PullResult,
  parseRepoRef,
  pullModel,
  type RepoRef,
  resolveEndpoint,
  selectFiles,
} from './hub/index.js';
export {
  audioKey,
  type CachedImage,
  type CachedMedia,
  EmbeddingCache,
  type MediaChunk,
  pixelKey,
} from './image-cache.js';
export {
  decodeChunks,
  type EmbeddedMedia,
  type MediaPath,
  type PreparedPrompt,
  type PromptChunk,
  type PromptSource,
  preparePrompt,
  reusablePrefix,
  scheduleItems,
  usesMrope,
} from './media.js';
export {
  type AudioInput,
  type ContentPart,
  flattenMessages,
  type ImageInput,
  INPUT_AUDIO_FORMATS,
  type InputAudioFormat,
  inputAudioUrl,
  isBase64,
  loadAudio,
  loadImage,
  MEDIA_MARKER,
  type MediaRef,
  type Message,
  type Modality,
  parseDataUrl,
} from './messages.js';
export { MultimodalModel, type MultimodalModelLoadOptions } from './multimodal-model.js';
export { checkRoom, type MediaPromptInfo, type TokenizedPrompt, tokenizePrompt } from './prompt.js';
export { layOutSlices, type SlicedMedia } from './slices.js';
export { POCKETTTS_PACKS, pocketttsChunks, pocketttsPrepareText } from './speech/pockettts.js';
export { QWEN3TTS_LANGUAGES } from './speech/qwen3tts.js';
export {
  SpeechModel,
  type SpeechModelLoadOptions,
  type SpeechResult,
  TALKER_SAMPLING,
} from './speech/speech-model.js';
export type { PcmChunk, SpeakOptions, TalkerSampling } from './speech/types.js';
