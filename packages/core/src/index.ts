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
export { type CachedImage, EmbeddingCache, pixelKey } from './image-cache.js';
export {
  type ContentPart,
  flattenMessages,
  type ImageInput,
  loadImage,
  MEDIA_MARKER,
  type Message,
} from './messages.js';
export {
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  ChatStream,
  MultimodalModel,
  type MultimodalModelLoadOptions,
} from './multimodal-model.js';
export { type TokenizedPrompt, tokenizePrompt } from './prompt.js';
