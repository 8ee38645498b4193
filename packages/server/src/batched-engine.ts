import { BatchDecoder, type Context, TextStream } from '@mm/backbone-gguf';
import {
  type ChatOptions,
  type ChatResult,
  type ChatStats,
  type ChatStream,
  chatStats,
  decodeChunks,
  type Message,
  ModelComponents,
  type ModelComponentsLoadOptions,
  type PromptChunk,
  type PromptStats,
  preparePrompt,
  samplingOf,
  streamChat,
} from '@mm/core';
import { checkSignal, ErrorCode, MmError, SerialQueue } from '@mm/errors';
import type { ChatSlot } from './server.js';

/** What ModelComponents.load takes, and how the context is cut into sequences. */
export interface BatchedEngineOptions extends ModelComponentsLoadOptions {
  /** Sequences decoded together (one per request). */
  parallel: number;
  /** KV positions per sequence (default: the model's, at most 4096). */
  contextSize?: number;
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
  prompt: PromptStats;
  /** When the request began, its prefill began and its first token came (0: not yet). */
  start: number;
  prefill: number;
  firstToken: number;
  resolve: (r: ChatResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Continuous batching: N sequences of one context decode together, one native decode per step
 * with the next token of every active request; a new request is prefilled (its media embedded,
 * its prompt decoded into its own sequence) between steps and joins the next one.
 */
export class BatchedEngine {
  readonly components: ModelComponents;
  readonly context: Context;
  readonly batch: BatchDecoder;
  readonly perSequence: number;
  readonly #active = new Map<number, Job>();
  /** The context: prefills and steps take turns. */
  readonly #serial = new SerialQueue();
  #looping = false;
  #disposed = false;
  readonly #counts = { steps: 0, rows: 0, maxRows: 0 };

  private constructor(components: ModelComponents, context: Context, perSequence: number) {
    this.components = components;
    this.context = context;
    this.batch = BatchDecoder.create(context);
    this.perSequence = perSequence;
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
      return new BatchedEngine(components, context, perSequence);
    } catch (e) {
      components.dispose();
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
      stream: (messages: readonly Message[], options: ChatOptions = {}): ChatStream =>
        streamChat(options, (o, onText) => this.#respond(seq, messages, o, onText)),
      dispose: () => {
        if (seq === 0) this.dispose();
      },
    }));
  }

  async #respond(
    seq: number,
    messages: readonly Message[],
    options: ChatOptions,
    onText: (t: string) => void,
  ): Promise<ChatResult> {
    if (this.#disposed) throw new MmError(ErrorCode.MM_DISPOSED, 'the server is closing');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const start = performance.now();
    // Media: outside the queue (the encoder is not the context), so steps go on meanwhile.
    const { chunks, ...prompt } = await preparePrompt(
      this.components,
      messages,
      { positions: this.perSequence, what: 'a sequence' },
      signal,
    );

    return new Promise<ChatResult>((resolve, reject) => {
      const job: Job = {
        seq,
        signal,
        token: 0,
        pos: prompt.positions - 1,
        generated: 0,
        maxTokens: options.maxTokens ?? Number.POSITIVE_INFINITY,
        text: new TextStream(options.stop ?? []),
        onText,
        prompt,
        start,
        prefill: 0,
        firstToken: 0,
        resolve,
        reject,
      };
      this.#serial
        .run(() => this.#prefill(job, chunks, options))
        .then(
          () => this.#run(),
          (e) => reject(e),
        );
    });
  }

  /** Decodes the prompt but its last token into the job's sequence; the next step decodes that one. */
  async #prefill(job: Job, chunks: PromptChunk[], options: ChatOptions): Promise<void> {
    job.signal?.throwIfAborted();
    const ctx = this.context;
    job.prefill = performance.now();
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
        await this.#serial.run(() => this.#step());
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
      if (job.firstToken === 0) job.firstToken = performance.now();
      const reason = this.#advance(job, tok);
      if (reason) this.#end(job, reason);
    }
  }

  /** Takes a sampled token; says why the job ends, if it does. */
  #advance(job: Job, tok: number): ChatStats['stopReason'] | undefined {
    const backbone = this.components.backbone;
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
    const { start, prefill, firstToken } = job;
    job.resolve({
      text: job.text.text,
      stats: chatStats(
        job.prompt,
        { start, prefill, firstToken, end: performance.now() },
        { cachedTokens: 0, generatedTokens: job.generated, stopReason: reason },
      ),
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
    this.components.dispose();
  }
}
