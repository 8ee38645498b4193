import { availableParallelism } from 'node:os';
import { Backbone, type Context, PushStream, type SamplingOptions } from '@mm/backbone-gguf';
import { VisionEncoder } from '@mm/encoders';
import { ErrorCode, MmDisposedError, MmError, MmInvalidArgumentError } from '@mm/errors';
import { checkPair, type MmprojInfo, Projector } from '@mm/projectors';
import { EmbeddingCache, type MediaChunk, pixelKey } from './image-cache.js';
import {
  decodeChunks,
  type EmbeddedMedia,
  type PromptChunk,
  preparePrompt,
  reusablePrefix,
} from './media.js';
import { type ImageInput, loadImage, type MediaRef, type Message } from './messages.js';
import type { MediaPromptInfo } from './prompt.js';

export interface MultimodalModelLoadOptions {
  /** A llama.cpp text-model GGUF. */
  model: string;
  /** The matching llama.cpp mmproj GGUF (vision encoder + projector). Without it: text only. */
  mmproj?: string;
  /** Layers of the LLM to offload to the GPU (a count or 'all'); the mmproj goes to the GPU when > 0. */
  gpuLayers?: number | 'all';
  /** CPU threads for every component (default: all hardware threads). */
  threads?: number;
  /** KV cache size in tokens (default: the model's training context, at most 4096). */
  contextSize?: number;
  /** Tokens per decode call (default 2048, as llama.cpp's CLI). */
  batchSize?: number;
  /** Bytes of image embeddings kept for repeated images (default 256 MiB; 0 disables). */
  imageCacheBytes?: number;
  /** Largest image accepted, in pixels (checked from the header before decoding). */
  maxImagePixels?: number;
  /**
   * Render the chat template with llama.cpp's Jinja engine, as llama-server does. Default false:
   * llama-mtmd-cli's rendering (built-in templates), which `mm run` is proven equal to. They
   * differ for some templates (Qwen's adds a default system message under Jinja).
   */
  jinja?: boolean;
  /** Progress while loading, per component, in [0, 1]. */
  onProgress?: (event: { component: 'model' | 'mmproj'; progress: number }) => void;
  signal?: AbortSignal;
}

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
  images: number;
  imageTokens: number;
  /** Images served from the embedding cache (no encoder run). */
  imageCacheHits: number;
  /** Image decode + encoder + projector, ms (0 when every image was cached). */
  encodeMs: number;
  /** Decoding the new part of the prompt, ms. */
  prefillMs: number;
  /** Generating the answer, ms. */
  decodeMs: number;
  /** From the call to the first generated token, ms. */
  timeToFirstTokenMs: number;
  generatedTokens: number;
  /** Generated tokens per second of decode time. */
  tokensPerSecond: number;
  stopReason: 'eog' | 'length' | 'stop' | 'context';
}

export interface ChatResult {
  text: string;
  stats: ChatStats;
}

/** The sampler settings of a chat call, in the backbone's shape. */
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

const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

/**
 * Encoder → projector → LLM backbone, composed: load a model and its mmproj, ask about images,
 * stream answers. Calls run one at a time; the KV cache is kept between calls, so a follow-up
 * question only decodes what is new, and repeated images come from an embedding cache.
 */
export class MultimodalModel {
  readonly backbone: Backbone;
  readonly encoder: VisionEncoder | undefined;
  readonly projector: Projector | undefined;
  readonly mmprojInfo: Readonly<MmprojInfo> | undefined;
  readonly imageCache: EmbeddingCache;
  /** The chat template is rendered with the Jinja engine (see MultimodalModelLoadOptions.jinja). */
  readonly jinja: boolean;
  readonly #context: Context;
  readonly #maxImagePixels: number | undefined;
  #cached: PromptChunk[] = [];
  #tail: Promise<unknown> = Promise.resolve();
  #disposed = false;

  private constructor(
    backbone: Backbone,
    context: Context,
    encoder: VisionEncoder | undefined,
    projector: Projector | undefined,
    info: MmprojInfo | undefined,
    cacheBytes: number,
    maxImagePixels: number | undefined,
    jinja: boolean,
  ) {
    this.backbone = backbone;
    this.jinja = jinja;
    this.#context = context;
    this.encoder = encoder;
    this.projector = projector;
    this.mmprojInfo = info;
    this.imageCache = new EmbeddingCache(cacheBytes);
    this.#maxImagePixels = maxImagePixels;
  }

  /**
   * Loads the text model and the mmproj. The pair is checked before the weights are read: an
   * mmproj whose projection width is not the model's n_embd is MM_MODEL_MISMATCH.
   */
  static async load(options: MultimodalModelLoadOptions): Promise<MultimodalModel> {
    if (options === null || typeof options !== 'object') {
      throw new MmInvalidArgumentError('options', 'must be an object with model and mmproj');
    }
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw new TypeError('signal must be an AbortSignal');
    signal?.throwIfAborted();
    if (typeof options.model !== 'string' || options.model === '') {
      throw new MmInvalidArgumentError('model', 'must be the path of a text-model GGUF');
    }
    if (
      options.mmproj !== undefined &&
      (typeof options.mmproj !== 'string' || options.mmproj === '')
    ) {
      throw new MmInvalidArgumentError('mmproj', 'must be the path of an mmproj GGUF');
    }
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1)
      throw new MmInvalidArgumentError('threads', 'must be an integer >= 1');
    const cacheBytes = options.imageCacheBytes ?? DEFAULT_CACHE_BYTES;
    if (!Number.isFinite(cacheBytes) || cacheBytes < 0) {
      throw new MmInvalidArgumentError('imageCacheBytes', 'must be a number >= 0');
    }
    const progress = options.onProgress;
    const owned: { dispose(): void }[] = [];
    try {
      const backbone = await Backbone.load(options.model, {
        gpuLayers: options.gpuLayers,
        signal,
        onProgress: progress ? (p) => progress({ component: 'model', progress: p }) : undefined,
      });
      owned.push(backbone);
      let encoder: VisionEncoder | undefined;
      let projector: Projector | undefined;
      let info: MmprojInfo | undefined;
      if (options.mmproj !== undefined) {
        info = await checkPair(options.mmproj, backbone.nEmbd, { signal });
        const gpu = options.gpuLayers !== undefined && options.gpuLayers !== 0;
        progress?.({ component: 'mmproj', progress: 0 });
        encoder = await VisionEncoder.load(options.mmproj, { threads, gpu, signal });
        owned.push(encoder);
        projector = await Projector.load(options.mmproj, { threads, gpu, signal });
        owned.push(projector);
        progress?.({ component: 'mmproj', progress: 1 });
      }
      const contextSize = options.contextSize ?? Math.min(backbone.contextLength || 4096, 4096);
      const batchSize = options.batchSize ?? 2048;
      const context = await backbone.createContext({
        contextSize,
        batchSize,
        ubatchSize: Math.min(batchSize, 512),
        threads,
        signal,
      });
      return new MultimodalModel(
        backbone,
        context,
        encoder,
        projector,
        info,
        cacheBytes,
        options.maxImagePixels,
        options.jinja ?? false,
      );
    } catch (e) {
      for (const o of owned.reverse()) o.dispose();
      throw e;
    }
  }

  get contextSize(): number {
    return this.#context.contextSize;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  #check(): void {
    if (this.#disposed) throw new MmDisposedError('MultimodalModel');
  }

  /** Answers the conversation; resolves with the text and timings. */
  async chat(messages: readonly Message[], options: ChatOptions = {}): Promise<ChatResult> {
    return this.#serial(() => this.#respond(messages, options, undefined));
  }

  /** Streams the answer as text deltas; `.result` resolves like `chat()`. Breaking out of the loop stops it. */
  stream(messages: readonly Message[], options: ChatOptions = {}): ChatStream {
    this.#check();
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const stream = new ChatStream((s) =>
      this.#serial(() => this.#respond(messages, { ...options, signal }, (t) => s.push(t))),
    );
    stream.onStop(() => stop.abort(new MmError(ErrorCode.MM_ABORTED, 'the stream was closed')));
    stream.watch(options.signal);
    return stream;
  }

  /** Forgets the KV cache of the conversation (the image cache stays). */
  reset(): Promise<void> {
    return this.#serial(async () => {
      this.#context.clear();
      this.#cached = [];
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    this.#check();
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }

  async #respond(
    messages: readonly Message[],
    options: ChatOptions,
    onText: ((text: string) => void) | undefined,
  ): Promise<ChatResult> {
    this.#check();
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw new TypeError('signal must be an AbortSignal');
    signal?.throwIfAborted();
    const t0 = performance.now();
    const prep = await preparePrompt(
      this,
      messages,
      { positions: this.contextSize, what: 'the context' },
      signal,
    );
    const { chunks } = prep;
    const last = chunks[chunks.length - 1] as { kind: 'text'; tokens: Int32Array };

    // Reuse the longest prefix the KV cache already holds (whole media spans only).
    const ctx = this.#context;
    const keep = Math.min(reusablePrefix(this.#cached, chunks), prep.positions - 1, ctx.nPast());
    try {
      if (keep < ctx.nPast()) ctx.removeRange(0, keep);
      const tPrefill = performance.now();
      const pos = await decodeChunks(ctx, chunks.slice(0, -1), { from: keep, signal });
      const gen = ctx.generate({
        tokens: last.tokens.subarray(Math.max(0, keep - pos)),
        append: true,
        maxTokens: options.maxTokens,
        stop: options.stop,
        signal,
        sampling: samplingOf(options),
      });
      let firstAt = 0;
      for await (const t of gen) {
        if (firstAt === 0) firstAt = performance.now();
        if (t.text) onText?.(t.text);
      }
      const r = await gen.result;
      const end = performance.now();
      // What the KV cache now holds: the prompt chunks, then the generated tokens decoded so far.
      const tail = ctx.sequenceTokens(0).slice(pos);
      this.#cached = [...chunks.slice(0, -1), { kind: 'text', tokens: Int32Array.from(tail) }];
      const generated = r.tokens.length;
      const firstTokenAt = firstAt || end;
      return {
        text: r.text,
        stats: {
          promptTokens: prep.positions,
          cachedTokens: keep,
          images: prep.media,
          imageTokens: prep.mediaTokens,
          imageCacheHits: prep.cacheHits,
          encodeMs: prep.encodeMs,
          prefillMs: firstTokenAt - tPrefill,
          decodeMs: end - firstTokenAt,
          timeToFirstTokenMs: firstTokenAt - t0,
          generatedTokens: generated,
          tokensPerSecond:
            generated > 1 ? ((generated - 1) * 1000) / Math.max(end - firstTokenAt, 1e-3) : 0,
          stopReason: r.stopReason,
        },
      };
    } catch (e) {
      // The KV cache may hold part of this prompt: start clean next time.
      if (!this.#disposed) {
        ctx.clear();
        this.#cached = [];
      }
      throw e;
    }
  }

  /** The loaded media encoder's prompt facts (markers, fixed token count); undefined without one. */
  get mediaPromptInfo(): MediaPromptInfo | undefined {
    const info = this.mmprojInfo;
    if (!info || !this.encoder || !this.projector) return undefined;
    return {
      imageBegin: info.imageBegin,
      imageEnd: info.imageEnd,
      fixedTokens: info.dynamicResolution ? undefined : info.nTokensOut,
    };
  }

  /**
   * A media part's chunks in the LLM's space: from the cache (keyed by the decoded content), or
   * decoded, encoded and projected, then cached. `cached` tells which.
   */
  async embedMedia(ref: MediaRef, options: { signal?: AbortSignal } = {}): Promise<EmbeddedMedia> {
    this.#check();
    if (ref?.modality !== 'image') {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `this model takes images; a '${String(ref?.modality)}' part cannot be embedded`,
      );
    }
    return this.embedImage(ref.input, options);
  }

  /**
   * An image's chunks in the LLM's space: from the cache (keyed by the decoded pixels), or
   * decoded, encoded and projected, then cached. `cached` tells which.
   */
  async embedImage(
    input: ImageInput,
    options: { signal?: AbortSignal } = {},
  ): Promise<EmbeddedMedia> {
    this.#check();
    const { encoder, projector } = this;
    if (!encoder || !projector) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        'no mmproj (vision encoder) was loaded with the model',
      );
    }
    const image = await loadImage(input, {
      maxPixels: this.#maxImagePixels,
      signal: options.signal,
    });
    const key = pixelKey(image.width, image.height, image.data);
    const hit = this.imageCache.get(key);
    if (hit) return { key, ...hit, cached: true };
    const features = await encoder.encodeChunks(image, { signal: options.signal });
    try {
      const chunks: MediaChunk[] = [];
      for (const f of features) {
        using embeddings = await projector.project(f, { signal: options.signal });
        if (embeddings.nEmbd !== this.backbone.nEmbd) {
          throw new MmError(
            ErrorCode.MM_MODEL_MISMATCH,
            `the projector gives width ${embeddings.nEmbd}, the model takes ${this.backbone.nEmbd}`,
          );
        }
        chunks.push({
          rows: embeddings.toFloat32Array(),
          nTokens: embeddings.nTokens,
          nx: embeddings.nx,
          ny: embeddings.ny,
          causal: embeddings.causal,
        });
      }
      const value = { chunks };
      if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
      return { key, ...value, cached: false };
    } finally {
      for (const f of features) f.dispose();
    }
  }

  /** Frees every component. A second call is MM_DISPOSED. */
  dispose(): void {
    this.#check();
    this.#disposed = true;
    this.#context.dispose();
    this.projector?.dispose();
    this.encoder?.dispose();
    this.backbone.dispose();
    this.imageCache.clear();
  }

  [Symbol.dispose](): void {
    if (!this.#disposed) this.dispose();
  }
}

/** Text deltas of an answer as they are generated; `.result` gives the whole answer and stats. */
export class ChatStream extends PushStream<string, ChatResult> {}
