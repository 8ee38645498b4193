export {
  Backbone,
  type BackboneLoadOptions,
  type ChatMessage,
  type ChatTemplateOptions,
  type DetokenizeOptions,
  nativeModel,
  type TokenAttributes,
  type TokenizeOptions,
} from './backbone.js';
export { BatchDecoder, type BatchInput } from './batch.js';
export {
  Context,
  type ContextOptions,
  type DecodeOptions,
  type DecodeResult,
  type EmbeddingsLike,
  type GeneratedToken,
  type GenerateOptions,
  Generation,
  type GenerationResult,
  type KvCacheType,
} from './context.js';
export { PushStream } from './push-stream.js';
export type { SamplingOptions } from './sampling.js';
export { TextStream } from './text-stream.js';
