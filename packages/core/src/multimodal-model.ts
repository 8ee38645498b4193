import type { Backbone, Context } from '@mm/backbone-gguf';
import type { AudioEncoder, VisionEncoder } from '@mm/encoders';
import { MmDisposedError, SerialQueue } from '@mm/errors';
import type { FusedMedia, MmprojInfo, Projector } from '@mm/projectors';
import { Answerer } from './answerer.js';
import { type ChatOptions, type ChatResult, type ChatStream, streamChat } from './chat.js';
import { ModelComponents, type ModelComponentsLoadOptions } from './components.js';
import type { EmbeddingCache } from './image-cache.js';
import type { EmbeddedMedia, MediaPath, PromptSource } from './media.js';
import type { AudioInput, ImageInput, MediaRef, Message, Modality } from './messages.js';
import type { MediaPromptInfo } from './prompt.js';

export interface MultimodalModelLoadOptions extends ModelComponentsLoadOptions {
  /** KV cache size in tokens (default: the model's training context, at most 4096). */
  contextSize?: number;
  /** Tokens per decode call (default 2048, as llama.cpp's CLI). */
  batchSize?: number;
}

/**
 * Encoder → projector → LLM backbone, composed: load a model and its mmproj, ask about images,
 * stream answers. Calls run one at a time; the KV cache is kept between calls, so a follow-up
 * question only decodes what is new, and repeated images come from an embedding cache.
 */
export class MultimodalModel implements PromptSource {
  /** The backbone, media encoder and projector (with the embedding cache) this model answers with. */
  readonly components: ModelComponents;
  readonly #context: Context;
  /** Prompts are decoded and answers generated on the native scheduler thread (one sequence). */
  readonly #answerer: Answerer;
  readonly #serial = new SerialQueue();
  #disposed = false;

  private constructor(components: ModelComponents, context: Context) {
    this.components = components;
    this.#context = context;
    this.#answerer = new Answerer(components, context, context.contextSize);
  }

  /**
   * Loads the text model and the mmproj (ModelComponents.load), then makes the context. The pair
   * is checked before the weights are read: an mmproj whose projection width is not the model's
   * n_embd is MM_MODEL_MISMATCH.
   */
  static async load(options: MultimodalModelLoadOptions): Promise<MultimodalModel> {
    const components = await ModelComponents.load(options);
    try {
      const batchSize = options.batchSize ?? 2048;
      const context = await components.backbone.createContext({
        contextSize:
          options.contextSize ?? Math.min(components.backbone.contextLength || 4096, 4096),
        batchSize,
        ubatchSize: Math.min(batchSize, 512),
        threads: components.threads,
        signal: options.signal,
      });
      try {
        return new MultimodalModel(components, context);
      } catch (e) {
        context.dispose();
        throw e;
      }
    } catch (e) {
      components.dispose();
      throw e;
    }
  }

  get backbone(): Backbone {
    return this.components.backbone;
  }

  get encoder(): VisionEncoder | undefined {
    return this.components.encoder;
  }

  get projector(): Projector | undefined {
    return this.components.projector;
  }

  get mmprojInfo(): Readonly<MmprojInfo> | undefined {
    return this.components.mmprojInfo;
  }

  get audioEncoder(): AudioEncoder | undefined {
    return this.components.audioEncoder;
  }

  get audioProjector(): Projector | undefined {
    return this.components.audioProjector;
  }

  /** libmtmd's fused encoder + projector, for a projector type mm has no own graph for. */
  get fused(): FusedMedia | undefined {
    return this.components.fused;
  }

  /** The modalities its media parts may carry ('image', 'audio'; empty without an mmproj). */
  get modalities(): readonly Modality[] {
    return this.components.modalities;
  }

  /** How pictures become chunks: 'own graph' or 'libmtmd (fused)'; undefined without an mmproj. */
  get mediaPath(): MediaPath | undefined {
    return this.components.mediaPath;
  }

  /** How sound becomes chunks: 'own graph' or 'libmtmd (fused)'; undefined when no audio is taken. */
  get audioPath(): MediaPath | undefined {
    return this.components.audioPath;
  }

  get imageCache(): EmbeddingCache {
    return this.components.imageCache;
  }

  /** The chat template is rendered with the Jinja engine (see MultimodalModelLoadOptions.jinja). */
  get jinja(): boolean {
    return this.components.jinja;
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
    return this.#queue(() => this.#respond(messages, options, undefined));
  }

  /** Streams the answer as text deltas; `.result` resolves like `chat()`. Breaking out of the loop stops it. */
  stream(messages: readonly Message[], options: ChatOptions = {}): ChatStream {
    this.#check();
    return streamChat(options, (o, onText) =>
      this.#queue(() => this.#respond(messages, o, onText)),
    );
  }

  /** Forgets the KV cache of the conversation (the image cache stays). */
  reset(): Promise<void> {
    return this.#queue(async () => this.#answerer.forget());
  }

  #queue<T>(fn: () => Promise<T>): Promise<T> {
    this.#check();
    return this.#serial.run(fn);
  }

  async #respond(
    messages: readonly Message[],
    options: ChatOptions,
    onText: ((text: string) => void) | undefined,
  ): Promise<ChatResult> {
    this.#check();
    return this.#answerer.respond(messages, options, onText);
  }

  /** The loaded media encoder's prompt facts (markers, fixed token count); undefined without one. */
  get mediaPromptInfo(): MediaPromptInfo | undefined {
    return this.components.mediaPromptInfo;
  }

  /**
   * A media part's chunks in the LLM's space: from the cache (keyed by the decoded content), or
   * decoded, encoded and projected, then cached. `cached` tells which.
   */
  async embedMedia(ref: MediaRef, options: { signal?: AbortSignal } = {}): Promise<EmbeddedMedia> {
    this.#check();
    return this.components.embedMedia(ref, options);
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
    return this.components.embedImage(input, options);
  }

  /**
   * A sound's chunks in the LLM's space (decoded at the model's rate; begin marker, one chunk per
   * 30 s, end marker, as libmtmd lays it out): from the cache, or encoded and projected, then
   * cached. `cached` tells which.
   */
  async embedAudio(
    input: AudioInput,
    options: { signal?: AbortSignal } = {},
  ): Promise<EmbeddedMedia> {
    this.#check();
    return this.components.embedAudio(input, options);
  }

  /** Frees the context and every component. A second call is MM_DISPOSED. */
  dispose(): void {
    this.#check();
    this.#disposed = true;
    this.#answerer.dispose();
    this.#context.dispose();
    this.components.dispose();
  }

  [Symbol.dispose](): void {
    if (!this.#disposed) this.dispose();
  }
}
