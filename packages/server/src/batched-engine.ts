import { BatchDecoder, type Context, TextStream } from '@mm/backbone-gguf';
import {
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  ChatStream,
  decodeChunks,
  type Message,
  MultimodalModel,
  type PromptChunk,
  preparePrompt,
  samplingOf,
} from '@mm/core';
import { ErrorCode, MmError } from '@mm/errors';
import type { ChatSlot } from './server.js';

export interface BatchedEngineOptions {
  model: string;
  mmproj?: string;
  /** Sequences decoded together (one per request). */
  parallel: number;
  threads: number;
  /** KV positions per sequence (default: the model's, at most 4096). */
  contextSize?: number;
  maxImagePixels?: number;
  /** Render chat templates with the Jinja engine (default true, as llama-server). */
  jinja?: boolean;
}

interface Job {
  seq: number;
  signal: AbortSignal | undefined;
  /** Next token to decode and its position. */
  token: number;
  pos: number;
  generated: number;
  maxTokens: number;
  text: TextStream;
  onText: (t: string) => void;
  t0: number;
  tPrefill: number;
  firstAt: number;
  stats: Omit<
    ChatStats,
    | 'prefillMs'
    | 'decodeMs'
    | 'timeToFirstTokenMs'
    | 'generatedTokens'
    | 'tokensPerSecond'
    | 'stopReason'
  >;
  resolve: (r: ChatResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Continuous batching: N sequences of one context decode together, one native decode per step
 * with the next token of every active request; a new request is prefilled (images encoded,
 * prompt decoded into its own sequence) between steps and joins the next one.
 */
export class BatchedEngine {
  readonly model: MultimodalModel;
  readonly context: Context;
  readonly batch: BatchDecoder;
  readonly perSequence: number;
  readonly #maxImagePixels: number | undefined;
  readonly #active = new Map<number, Job>();
  #lock: Promise<unknown> = Promise.resolve();
  #looping = false;
  #disposed = false;
  readonly #counts = { steps: 0, rows: 0, maxRows: 0 };

  private constructor(
    model: MultimodalModel,
    context: Context,
    perSequence: number,
    maxImagePixels?: number,
  ) {
    this.model = model;
    this.context = context;
    this.batch = BatchDecoder.create(context);
    this.perSequence = perSequence;
    this.#maxImagePixels = maxImagePixels;
  }

  static async load(o: BatchedEngineOptions): Promise<BatchedEngine> {
    // The MultimodalModel gives the components (its own small context stays unused).
    const model = await MultimodalModel.load({
      model: o.model,
      mmproj: o.mmproj,
      threads: o.threads,
      contextSize: 8,
      batchSize: 512,
      maxImagePixels: o.maxImagePixels,
      jinja: o.jinja ?? true,
    });
    try {
      const perSequence = o.contextSize ?? Math.min(model.backbone.contextLength || 4096, 4096);
      const context = await model.backbone.createContext({
        contextSize: perSequence * o.parallel,
        sequences: o.parallel,
        batchSize: 2048,
        ubatchSize: 512,
        threads: o.threads,
      });
      return new BatchedEngine(model, context, perSequence, o.maxImagePixels);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /** Decode steps so far, the sequences they carried in all, and the most in one step. */
  stats(): { steps: number; tokens: number; max_batch: number } {
    const c = this.#counts;
    return { steps: c.steps, tokens: c.rows, max_batch: c.maxRows };
  }

  /** One ChatSlot per sequence, for the server's pool. */
  slots(): ChatSlot[] {
    return Array.from({ length: this.context.sequences }, (_, seq) => ({
      chat: (messages: readonly Message[], options?: ChatOptions) =>
        this.#respond(seq, messages, options ?? {}, () => undefined),
      stream: (messages: readonly Message[], options: ChatOptions = {}) => {
        const stop = new AbortController();
        const signal = options.signal
          ? AbortSignal.any([options.signal, stop.signal])
          : stop.signal;
        const stream = new ChatStream((s) =>
          this.#respond(seq, messages, { ...options, signal }, (t) => s.push(t)),
        );
        stream.onStop(() => stop.abort(new MmError(ErrorCode.MM_ABORTED, 'the stream was closed')));
        stream.watch(options.signal);
        return stream;
      },
      dispose: () => {
        if (seq === 0) this.dispose();
      },
    }));
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#lock.then(fn, fn);
    this.#lock = next.catch(() => undefined);
    return next;
  }

  async #respond(
    seq: number,
    messages: readonly Message[],
    options: ChatOptions,
    onText: (t: string) => void,
  ): Promise<ChatResult> {
    if (this.#disposed) throw new MmError(ErrorCode.MM_DISPOSED, 'the server is closing');
    const { signal } = options;
    signal?.throwIfAborted();
    const t0 = performance.now();
    // Media: outside the lock (the encoder is not the context), so steps go on meanwhile.
    const prep = await preparePrompt(
      this.model,
      messages,
      { positions: this.perSequence, what: 'a sequence' },
      signal,
    );

    return new Promise<ChatResult>((resolve, reject) => {
      const job: Job = {
        seq,
        signal,
        token: 0,
        pos: prep.positions - 1,
        generated: 0,
        maxTokens: options.maxTokens ?? Number.POSITIVE_INFINITY,
        text: new TextStream(options.stop ?? []),
        onText,
        t0,
        tPrefill: 0,
        firstAt: 0,
        stats: {
          promptTokens: prep.positions,
          cachedTokens: 0,
          images: prep.media,
          imageTokens: prep.mediaTokens,
          imageCacheHits: prep.cacheHits,
          encodeMs: prep.encodeMs,
        },
        resolve,
        reject,
      };
      this.#exclusive(() => this.#prefill(job, prep.chunks, options)).then(
        () => this.#run(),
        (e) => reject(e),
      );
    });
  }

  /** Decodes the prompt but its last token into the job's sequence; the next step decodes that one. */
  async #prefill(job: Job, chunks: PromptChunk[], options: ChatOptions): Promise<void> {
    job.signal?.throwIfAborted();
    const ctx = this.context;
    job.tPrefill = performance.now();
    ctx.removeRange(job.seq, 0);
    try {
      const last = chunks[chunks.length - 1] as { kind: 'text'; tokens: Int32Array };
      const head: PromptChunk[] = [
        ...chunks.slice(0, -1),
        { kind: 'text', tokens: last.tokens.subarray(0, last.tokens.length - 1) },
      ];
      await decodeChunks(ctx, head, { seq: job.seq, signal: job.signal });
      job.token = last.tokens[last.tokens.length - 1] as number;
      this.batch.start(job.seq, samplingOf(options));
    } catch (e) {
      ctx.removeRange(job.seq, 0);
      throw e;
    }
    this.#active.set(job.seq, job);
  }

  /** Steps while any sequence is active. Only one loop runs; prefills slip in between steps. */
  async #run(): Promise<void> {
    if (this.#looping) return;
    this.#looping = true;
    try {
      while (this.#active.size > 0 && !this.#disposed) {
        await this.#exclusive(() => this.#step());
      }
    } finally {
      this.#looping = false;
    }
  }

  async #step(): Promise<void> {
    for (const job of this.#active.values()) {
      if (job.signal?.aborted) this.#end(job, undefined, job.signal.reason);
    }
    const jobs = [...this.#active.values()];
    if (jobs.length === 0) return;
    let out: Int32Array;
    try {
      out = await this.batch.step(jobs.map((j) => ({ seq: j.seq, token: j.token, pos: j.pos })));
      this.#counts.steps++;
      this.#counts.rows += jobs.length;
      this.#counts.maxRows = Math.max(this.#counts.maxRows, jobs.length);
    } catch (e) {
      for (const j of jobs) this.#end(j, undefined, e);
      return;
    }
    for (const [i, job] of jobs.entries()) {
      const tok = out[i] as number;
      if (job.firstAt === 0) job.firstAt = performance.now();
      const reason = this.#advance(job, tok);
      if (reason) this.#end(job, reason);
    }
  }

  /** Takes a sampled token; says why the job ends, if it does. */
  #advance(job: Job, tok: number): ChatStats['stopReason'] | undefined {
    const backbone = this.model.backbone;
    if (backbone.isEndOfGeneration(tok)) return 'eog';
    job.generated++;
    const t = job.text.push(backbone.tokenBytes(tok));
    if (t) job.onText(t);
    if (job.text.done) return 'stop';
    if (job.generated >= job.maxTokens) return 'length';
    if (job.pos + 2 >= this.perSequence) return 'context';
    job.token = tok;
    job.pos++;
    return undefined;
  }

  #end(job: Job, reason: ChatStats['stopReason'] | undefined, error?: unknown): void {
    this.#active.delete(job.seq);
    try {
      this.batch.finish(job.seq);
      this.context.removeRange(job.seq, 0);
    } catch {
      // disposed: nothing left to free
    }
    if (reason === undefined) {
      job.reject(error);
      return;
    }
    const rest = job.text.end();
    if (rest) job.onText(rest);
    const end = performance.now();
    const firstAt = job.firstAt || end;
    job.resolve({
      text: job.text.text,
      stats: {
        ...job.stats,
        prefillMs: firstAt - job.tPrefill,
        decodeMs: end - firstAt,
        timeToFirstTokenMs: firstAt - job.t0,
        generatedTokens: job.generated,
        tokensPerSecond:
          job.generated > 1 ? ((job.generated - 1) * 1000) / Math.max(end - firstAt, 1e-3) : 0,
        stopReason: reason,
      },
    });
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const job of this.#active.values())
      job.reject(new MmError(ErrorCode.MM_DISPOSED, 'the server is closing'));
    this.#active.clear();
    this.batch.dispose();
    this.context.dispose();
    this.model.dispose();
  }
}
