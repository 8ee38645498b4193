import { PushStream, type SamplingOptions } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import type { MediaPath, PreparedPrompt } from './media.js';

/**
 * What a chat call takes and gives, whoever answers it: MultimodalModel (one context, one call at a
 * time) and @mm/server's batched engine (one sequence per request) build their answers from the
 * same options, stream them the same way and report the same stats.
 */

export interface ChatOptions {
  /** 0 (default): greedy. */
  temperature?: number;
  /** Most tokens to generate (default: until end-of-generation or the context is full). */
  maxTokens?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  /** Everything else the backbone's sampler takes (penalties, grammar, jsonSchema, ...). */
  sampling?: SamplingOptions;
  stop?: readonly string[];
  signal?: AbortSignal;
}

export interface ChatStats {
  /** KV positions of the whole prompt (text tokens + media spans; an M-RoPE span takes max(nx, ny)). */
  promptTokens: number;
  /** Of those, positions reused from the KV cache of the previous call. */
  cachedTokens: number;
  /** Media parts in the prompt (named for the first modality; audio parts count too). */
  images: number;
  /** Embedding rows of those parts. */
  imageTokens: number;
  /** Media parts served from the embedding cache (no encoder run). */
  imageCacheHits: number;
  /** Media decode + encoder + projector, ms (0 when every part was cached). */
  encodeMs: number;
  /**
   * Decoding the new part of the prompt, ms: from its first decode to the first token, on the
   * native scheduler's clock (llama.cpp's "prompt eval" likewise times its own loop).
   */
  prefillMs: number;
  /** Generating the answer, ms: from the first token to the last, on the scheduler's clock. */
  decodeMs: number;
  /**
   * The share of decodeMs spent computing (llama_decode of the steps that carried this answer,
   * without sampling and the hand-over to JS: what llama.cpp's eval timer counts); steps shared
   * with other requests count whole. Absent where no scheduler generated the answer.
   */
  decodeComputeMs?: number;
  /** From the call to the first generated token, ms. */
  timeToFirstTokenMs: number;
  generatedTokens: number;
  /** Generated tokens per second of decode time. */
  tokensPerSecond: number;
  stopReason: 'eog' | 'length' | 'stop' | 'context';
  /**
   * When the prompt had media: the stage that made their chunks, mm's own encoder → projector
   * graphs or libmtmd's fused encoder + projector (one stage, timed in encodeMs); 'mixed' when
   * the parts took both.
   */
  mediaPath?: MediaPath | 'mixed';
}

export interface ChatResult {
  text: string;
  stats: ChatStats;
}

/** The sampler settings of a chat call, in the backbone's shape (greedy unless told). */
export function samplingOf(options: ChatOptions): SamplingOptions {
  return {
    ...options.sampling,
    ...(options.temperature !== undefined && { temperature: options.temperature }),
    ...(options.topK !== undefined && { topK: options.topK }),
    ...(options.topP !== undefined && { topP: options.topP }),
    ...(options.minP !== undefined && { minP: options.minP }),
    ...(options.seed !== undefined && { seed: options.seed }),
  };
}

/** The facts of a prepared prompt that its answer's stats report. */
export type PromptStats = Pick<
  PreparedPrompt,
  'positions' | 'media' | 'mediaTokens' | 'cacheHits' | 'encodeMs' | 'mediaPath'
>;

/** When an answer's phases happened (performance.now(), ms). */
export interface AnswerTimes {
  /** The call began (before its media were encoded). */
  start: number;
  /** Its prompt began to be decoded. */
  prefill: number;
  /** Its first token was generated; 0 when none was. */
  firstToken: number;
  end: number;
}

/** The stats of one answer. */
export function chatStats(
  prompt: PromptStats,
  times: AnswerTimes,
  answer: { cachedTokens: number; generatedTokens: number; stopReason: ChatStats['stopReason'] },
  /** The generation loop's own prefill and decode times, when it has them (else from `times`). */
  timers?: { prefillMs: number; decodeMs: number; decodeComputeMs?: number },
): ChatStats {
  const { end } = times;
  const first = times.firstToken || end;
  const generated = answer.generatedTokens;
  const decodeMs = timers?.decodeMs ?? end - first;
  return {
    promptTokens: prompt.positions,
    cachedTokens: answer.cachedTokens,
    images: prompt.media,
    imageTokens: prompt.mediaTokens,
    imageCacheHits: prompt.cacheHits,
    encodeMs: prompt.encodeMs,
    prefillMs: timers?.prefillMs ?? first - times.prefill,
    decodeMs,
    ...(timers?.decodeComputeMs !== undefined && { decodeComputeMs: timers.decodeComputeMs }),
    timeToFirstTokenMs: first - times.start,
    generatedTokens: generated,
    // The first token comes from the prefill: the decode rate counts the ones after it.
    tokensPerSecond: generated > 1 ? ((generated - 1) * 1000) / Math.max(decodeMs, 1e-3) : 0,
    stopReason: answer.stopReason,
    ...(prompt.mediaPath !== undefined && { mediaPath: prompt.mediaPath }),
  };
}

/** Text deltas of an answer as they are generated; `.result` gives the whole answer and stats. */
export class ChatStream extends PushStream<string, ChatResult> {}

/**
 * Streams an answer: `respond` gets the call's options with a signal that also fires when the
 * caller breaks out of the loop (MM_ABORTED, 'the stream was closed'), and hands each text delta
 * to `onText`. Once the caller's own signal aborts, no queued delta is handed out any more.
 */
export function streamChat(
  options: ChatOptions,
  respond: (options: ChatOptions, onText: (text: string) => void) => Promise<ChatResult>,
): ChatStream {
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const stream = new ChatStream((s) => respond({ ...options, signal }, (t) => s.push(t)));
  stream.onStop(() => stop.abort(new MmError(ErrorCode.MM_ABORTED, 'the stream was closed')));
  stream.watch(options.signal);
  return stream;
}
