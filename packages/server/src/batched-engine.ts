import { type Context, Scheduler, type SchedulerStats, TextStream } from '@mm/backbone-gguf';
import {
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  type ChatStream,
  chatStats,
  type Message,
  ModelComponents,
  type ModelComponentsLoadOptions,
  type PromptChunk,
  preparePrompt,
  reusablePrefix,
  samplingOf,
  scheduleItems,
  streamChat,
} from '@mm/core';
import { checkSignal, ErrorCode, MmError } from '@mm/errors';
import type { ChatSlot } from './server.js';

/** What ModelComponents.load takes, and how the context is cut into sequences. */
export interface BatchedEngineOptions extends ModelComponentsLoadOptions {
  /** Sequences decoded together (one per running request). */
  parallel: number;
  /** KV positions per sequence (default: the model's, at most 4096). */
  contextSize?: number;
}

/** What a sequence's KV cells hold, in prompt chunks (text grows with the decoded answer). */
interface Sequence {
  held: PromptChunk[];
  busy: boolean;
  lastUsed: number;
}

/** Counters for /health. */
export interface EngineStats {
  /** Steps that decoded generating rows, the rows they carried, the most in one. */
  steps: number;
  tokens: number;
  max_batch: number;
  /** Prompt rows decoded in token batches (shared with decode rows), media spans decoded. */
  prefill_rows: number;
  media_spans: number;
  /** Prompt positions served from a sequence's KV cells (another request's prefix). */
  reused_positions: number;
}

/**
 * Continuous batching on mm's native scheduler thread (`Scheduler` of @mm/backbone-gguf):
 * requests join and leave a running batch; each step is one decode carrying the next token of
 * every generating request and prompt rows of requests in prefill; media spans are decoded
 * alone between steps. No libuv thread is held by a generation: JS only prepares prompts (media
 * decode/encode in the pool, overlapping the decodes) and receives tokens.
 *
 * A request goes to the free sequence whose cells share the longest prefix with its prompt
 * (whole media spans or text tokens), as llama-server picks a slot by prompt similarity, and
 * decodes only the rest; media come from the shared embedding cache, so a picture asked about
 * after a different text is encoded once.
 */
export class BatchedEngine {
  readonly components: ModelComponents;
  readonly context: Context;
  readonly scheduler: Scheduler;
  readonly perSequence: number;
  readonly #seqs: Sequence[];
  #disposed = false;
  #reused = 0;
  #clock = 0;

  private constructor(components: ModelComponents, context: Context, perSequence: number) {
    this.components = components;
    this.context = context;
    this.scheduler = Scheduler.create(context);
    this.perSequence = perSequence;
    this.#seqs = Array.from({ length: context.sequences }, () => ({
      held: [],
      busy: false,
      lastUsed: 0,
    }));
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

  stats(): EngineStats {
    const s: SchedulerStats | undefined = this.#disposed ? undefined : this.scheduler.stats();
    return {
      steps: s?.decodeSteps ?? 0,
      tokens: s?.decodeRows ?? 0,
      max_batch: s?.maxRows ?? 0,
      prefill_rows: s?.prefillRows ?? 0,
      media_spans: s?.spans ?? 0,
      reused_positions: this.#reused,
    };
  }

  /** One ChatSlot per sequence, for the server's pool (it bounds the running requests). */
  slots(): ChatSlot[] {
    return Array.from({ length: this.context.sequences }, (_, i) => ({
      chat: (messages: readonly Message[], options?: ChatOptions) =>
        this.#respond(messages, options ?? {}, () => undefined),
      stream: (messages: readonly Message[], options: ChatOptions = {}): ChatStream =>
        streamChat(options, (o, onText) => this.#respond(messages, o, onText)),
      dispose: () => {
        if (i === 0) this.dispose();
      },
    }));
  }

  /** The free sequence holding the longest prefix of `chunks` (least recently used on a tie). */
  #pick(chunks: readonly PromptChunk[], positions: number): { seq: number; keep: number } {
    let best = -1;
    let keep = -1;
    for (const [i, s] of this.#seqs.entries()) {
      if (s.busy) continue;
      const k = Math.min(reusablePrefix(s.held, chunks), positions - 1);
      const b = this.#seqs[best];
      if (k > keep || (k === keep && b !== undefined && s.lastUsed < b.lastUsed)) {
        best = i;
        keep = k;
      }
    }
    if (best < 0) throw new MmError(ErrorCode.MM_INTERNAL, 'no free sequence for a request');
    return { seq: best, keep };
  }

  async #respond(
    messages: readonly Message[],
    options: ChatOptions,
    onText: (t: string) => void,
  ): Promise<ChatResult> {
    if (this.#disposed) throw new MmError(ErrorCode.MM_DISPOSED, 'the server is closing');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const start = performance.now();
    // Media: decoded and encoded in the pool while the scheduler thread decodes other requests.
    const { chunks, ...prompt } = await preparePrompt(
      this.components,
      messages,
      { positions: this.perSequence, what: 'a sequence' },
      signal,
    );
    if (this.#disposed) throw new MmError(ErrorCode.MM_DISPOSED, 'the server is closing');
    signal?.throwIfAborted();
    const { seq, keep } = this.#pick(chunks, prompt.positions);
    const s = this.#seqs[seq] as Sequence;
    s.busy = true;
    s.lastUsed = ++this.#clock;
    s.held = [];
    const text = new TextStream(options.stop ?? []);
    let generated = 0;
    let firstToken = 0;
    const submitted = performance.now();
    try {
      const req = this.scheduler.submit({
        seq,
        keep,
        items: scheduleItems(this.components.backbone, chunks, keep),
        maxTokens: Math.min(options.maxTokens ?? this.perSequence, this.perSequence),
        limit: this.perSequence,
        sampling: samplingOf(options),
        onToken: (tok) => {
          if (text.done) return;
          if (firstToken === 0) firstToken = performance.now();
          generated++;
          const t = text.push(this.components.backbone.tokenBytes(tok));
          if (t) onText(t);
          if (text.done) req.cancel();
        },
      });
      const onAbort = () => req.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      let r: Awaited<typeof req.result>;
      try {
        r = await req.result;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      this.#reused += keep;
      // What the sequence now holds: the prompt, then the answer's tokens decoded so far.
      if (r.prefilled) {
        const last = chunks[chunks.length - 1] as { kind: 'text'; tokens: Int32Array };
        const tail = new Int32Array(last.tokens.length + r.decoded);
        tail.set(last.tokens);
        tail.set(r.tokens.subarray(0, r.decoded), last.tokens.length);
        s.held = [...chunks.slice(0, -1), { kind: 'text', tokens: tail }];
      }
      if (r.stopReason === 'cancel' && !text.done) throw signal?.reason ?? new Error('cancelled');
      const rest = text.end();
      if (rest) onText(rest);
      const reason: ChatStats['stopReason'] = text.done
        ? 'stop'
        : r.stopReason === 'cancel'
          ? 'stop'
          : r.stopReason;
      const prefill = submitted + r.queueMs;
      return {
        text: text.text,
        stats: chatStats(
          prompt,
          { start, prefill, firstToken, end: performance.now() },
          { cachedTokens: keep, generatedTokens: generated, stopReason: reason },
        ),
      };
    } finally {
      s.busy = false;
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.scheduler.dispose();
    this.context.dispose();
    this.components.dispose();
  }
}
