export {
  Backbone,
  type BackboneLoadOptions,
  type ChatMessage,
  type ChatTemplateOptions,
  checkRpcEndpoints,
  type DetokenizeOptions,
  nativeModel,
  type TokenAttributes,
  type TokenizeOptions,
} from './backbone.js';
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
export { type RpcWorker, type RpcWorkerOptions, startRpcWorker } from './rpc-worker.js';
export type { SamplingOptions } from './sampling.js';
export {
  type ScheduledRequest,
  type ScheduleItem,
  type ScheduleRequest,
  type ScheduleResult,
  Scheduler,
  type SchedulerStats,
} from './scheduler.js';
export { TextStream } from './text-stream.js';
