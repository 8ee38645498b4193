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
