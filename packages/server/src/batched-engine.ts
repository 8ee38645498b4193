import type { Context } from '@mm/backbone-gguf';
import {
  Answerer,
  type ChatOptions,
  type ChatStream,
  type Message,
  ModelComponents,
  type ModelComponentsLoadOptions,
  streamChat,
} from '@mm/core';
import { ErrorCode, MmError } from '@mm/errors';
import type { ChatSlot } from './server.js';

/** What ModelComponents.load takes, and how the context is cut into sequences. */
export interface BatchedEngineOptions extends ModelComponentsLoadOptions {
  /** Sequences decoded together (one per running request). */
  parallel: number;
  /** KV cells per sequence (default: the model's context, at most 4096). */
  contextSize?: number;
}

/** Counters for /health. */
export interface EngineStats {
  /** Steps that decoded generating rows, the rows they carried, the most in one. */
  steps: number;
  tokens: number;
  max_batch: number;
  /** Prompt rows decoded in token batches (beside decode rows), media spans decoded. */
  prefill_rows: number;
  media_spans: number;
  /**
   * Steps that decoded generating rows together with a chunk of another request's picture (or
   * audio) span, so that answers go on streaming while it is read.
   */
  mixed_steps: number;
  /** Prompt positions served from cells an earlier request left in its sequence. */
  reused_positions: number;
  /**
   * Steps with generating rows only (no prompt rows): their rows and compute time (ms). Rows per
   * second of them is the decode throughput of batching, without the prompt work that shares
   * the other steps.
   */
  decode_only_steps: number;
  decode_only_rows: number;
  decode_only_ms: number;
  /**
   * Steps that ran during an image or audio encode, between two of its slices (about
   * MM_ENCODE_SLICE_MS each), so that answers streamed on while a picture was read.
   */
  lent_steps: number;
}

/**
 * Continuous batching on mm's native scheduler thread (@mm/core's `Answerer` over one context
 * with N sequences): requests join and leave a running batch; each step is one decode carrying
 * the next token of every generating request and prompt rows of requests in prefill; media spans
 * are decoded alone between steps. No libuv thread is held by a generation: JS only prepares
 * prompts (media decoded and encoded in the pool, overlapping the decodes) and receives tokens.
 * A request goes to the free sequence sharing the longest prefix with it, and media come from the
 * shared embedding cache: a picture asked about again after a different text is encoded once.
 */
export class BatchedEngine {
  readonly components: ModelComponents;
  readonly context: Context;
  readonly answerer: Answerer;
  #disposed = false;

  private constructor(components: ModelComponents, context: Context, perSequence: number) {
    this.components = components;
    this.context = context;
    this.answerer = new Answerer(components, context, perSequence);
  }

  static async load(o: BatchedEngineOptions): Promise<BatchedEngine> {
    const { parallel, contextSize, ...load } = o;
    const components = await ModelComponents.load(load);
    try {
      const perSequence = contextSize ?? Math.min(components.backbone.contextLength || 4096, 4096);
      const context = await components.backbone.createContext({
        contextSize: perSequence * parallel,
        sequences: parallel,
        batchSize: 2048,
        ubatchSize: 512,
        threads: components.threads,
        signal: o.signal,
      });
      try {
        return new BatchedEngine(components, context, perSequence);
      } catch (e) {
        context.dispose();
        throw e;
      }
    } catch (e) {
      components.dispose();
      throw e;
    }
  }

  get perSequence(): number {
    return this.answerer.perSequence;
  }

  stats(): EngineStats {
    if (this.#disposed)
      return {
        steps: 0,
        tokens: 0,
        max_batch: 0,
        prefill_rows: 0,
        media_spans: 0,
        mixed_steps: 0,
        reused_positions: 0,
        decode_only_steps: 0,
        decode_only_rows: 0,
        decode_only_ms: 0,
        lent_steps: 0,
      };
    const s = this.answerer.stats();
    return {
      steps: s.decodeSteps,
      tokens: s.decodeRows,
      max_batch: s.maxRows,
      prefill_rows: s.prefillRows,
      media_spans: s.spans,
      mixed_steps: s.mixedSteps,
      reused_positions: s.reusedPositions,
      decode_only_steps: s.decodeOnlySteps,
      decode_only_rows: s.decodeOnlyRows,
      decode_only_ms: s.decodeOnlyMs,
      lent_steps: s.lentSteps,
    };
  }

  /** One ChatSlot per sequence, for the server's pool (it bounds the running requests). */
  slots(): ChatSlot[] {
    const respond = (
      messages: readonly Message[],
      o: ChatOptions,
      onText?: (t: string) => void,
    ) => {
      if (this.#disposed) throw new MmError(ErrorCode.MM_DISPOSED, 'the server is closing');
      return this.answerer.respond(messages, o, onText);
    };
    return Array.from({ length: this.context.sequences }, (_, i) => ({
      chat: async (messages: readonly Message[], options?: ChatOptions) =>
        respond(messages, options ?? {}),
      stream: (messages: readonly Message[], options: ChatOptions = {}): ChatStream =>
        streamChat(options, (o, onText) => respond(messages, o, onText)),
      dispose: () => {
        if (i === 0) this.dispose();
      },
    }));
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.answerer.dispose();
    this.context.dispose();
    this.components.dispose();
  }
}
