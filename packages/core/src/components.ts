import { availableParallelism } from 'node:os';
import { Backbone, nativeModel } from '@mm/backbone-gguf';
import { VisionEncoder } from '@mm/encoders';
import {
  checkSignal,
  ErrorCode,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
} from '@mm/errors';
import {
  checkPair,
  type FusedItem,
  FusedMedia,
  inspectFused,
  type MmprojInfo,
  Projector,
} from '@mm/projectors';
import { type CachedMedia, EmbeddingCache, type MediaChunk, pixelKey } from './image-cache.js';
import type { EmbeddedMedia, MediaPath, PromptSource } from './media.js';
import { type ImageInput, loadImage, type MediaRef } from './messages.js';
import type { MediaPromptInfo } from './prompt.js';
import { layOutSlices } from './slices.js';

export interface ModelComponentsLoadOptions {
  /** A llama.cpp text-model GGUF. */
  model: string;
  /** The matching llama.cpp mmproj GGUF (vision encoder + projector). Without it: text only. */
  mmproj?: string;
  /** Layers of the LLM to offload to the GPU (a count or 'all'); the mmproj goes to the GPU when > 0. */
  gpuLayers?: number | 'all';
  /** CPU threads for every component (default: all hardware threads). */
  threads?: number;
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

const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

/**
 * The parts of a multimodal model without a KV cache: the LLM backbone, and the mmproj's media
 * encoder and projector with their embedding cache. They turn a conversation into prompt chunks
 * (a PromptSource for preparePrompt); whoever answers adds the context: MultimodalModel one of
 * its own, @mm/server's batched engine one shared by its requests.
 */
export class ModelComponents implements PromptSource {
  readonly backbone: Backbone;
  readonly encoder: VisionEncoder | undefined;
  readonly projector: Projector | undefined;
  readonly mmprojInfo: Readonly<MmprojInfo> | undefined;
  /**
   * libmtmd's fused encoder + projector, when the mmproj's projector type has no own graph in mm
   * but libmtmd runs it (the long tail); encoder, projector and mmprojInfo are then undefined.
   */
  readonly fused: FusedMedia | undefined;
  readonly imageCache: EmbeddingCache;
  /** The chat template is rendered with the Jinja engine (see ModelComponentsLoadOptions.jinja). */
  readonly jinja: boolean;
  /** CPU threads the components run with (a context made for them should use as many). */
  readonly threads: number;
  readonly #maxImagePixels: number | undefined;
  #disposed = false;

  private constructor(
    backbone: Backbone,
    media: { encoder: VisionEncoder; projector: Projector; info: MmprojInfo } | undefined,
    options: { cacheBytes: number; maxImagePixels?: number; jinja: boolean; threads: number },
    fused?: FusedMedia,
  ) {
    this.backbone = backbone;
    this.encoder = media?.encoder;
    this.projector = media?.projector;
    this.mmprojInfo = media?.info;
    this.fused = fused;
    this.imageCache = new EmbeddingCache(options.cacheBytes);
    this.#maxImagePixels = options.maxImagePixels;
    this.jinja = options.jinja;
    this.threads = options.threads;
  }

  /**
   * Loads the text model and the mmproj. The pair is checked before the weights are read: an
   * mmproj whose projection width is not the model's n_embd is MM_MODEL_MISMATCH.
   */
  static async load(options: ModelComponentsLoadOptions): Promise<ModelComponents> {
    if (options === null || typeof options !== 'object') {
      throw new MmInvalidArgumentError('options', 'must be an object with model and mmproj');
    }
    const signal = checkSignal(options.signal);
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
      let media: { encoder: VisionEncoder; projector: Projector; info: MmprojInfo } | undefined;
      let fused: FusedMedia | undefined;
      if (options.mmproj !== undefined) {
        const mmproj = options.mmproj;
        const gpu = options.gpuLayers !== undefined && options.gpuLayers !== 0;
        progress?.({ component: 'mmproj', progress: 0 });
        // mm's own graphs first; a projector type they do not implement goes to libmtmd when it
        // runs the type (inspectFused throws MM_UNSUPPORTED_FAMILY, listing both, when not).
        const own: { dispose(): void }[] = [];
        try {
          const info = await checkPair(mmproj, backbone.nEmbd, { signal });
          const encoder = await VisionEncoder.load(mmproj, { threads, gpu, signal });
          own.push(encoder);
          const projector = await Projector.load(mmproj, { threads, gpu, signal });
          own.push(projector);
          media = { encoder, projector, info };
          owned.push(...own);
        } catch (e) {
          for (const o of own.reverse()) o.dispose();
          if (!MmError.isInstance(e) || e.code !== ErrorCode.MM_UNSUPPORTED_FAMILY) throw e;
          await inspectFused(mmproj, { signal });
          fused = await FusedMedia.load(mmproj, nativeModel(backbone), { threads, gpu, signal });
          owned.push(fused);
        }
        progress?.({ component: 'mmproj', progress: 1 });
      }
      return new ModelComponents(
        backbone,
        media,
        {
          cacheBytes,
          maxImagePixels: options.maxImagePixels,
          jinja: options.jinja ?? false,
          threads,
        },
        fused,
      );
    } catch (e) {
      for (const o of owned.reverse()) o.dispose();
      throw e;
    }
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  #check(): void {
    if (this.#disposed) throw new MmDisposedError('ModelComponents');
  }

  /**
   * How pictures become chunks: mm's own encoder → projector graphs, or libmtmd's fused encoder +
   * projector (the long tail); undefined without an mmproj.
   */
  get mediaPath(): MediaPath | undefined {
    if (this.fused) return 'libmtmd (fused)';
    return this.encoder && this.projector ? 'own graph' : undefined;
  }

  /** The loaded media encoder's prompt facts (markers, fixed token count); undefined without one. */
  get mediaPromptInfo(): MediaPromptInfo | undefined {
    // libmtmd's marker text comes with each picture's chunks (CachedMedia.between).
    if (this.fused) return { imageBegin: '', imageEnd: '', fixedTokens: undefined };
    const info = this.mmprojInfo;
    if (!info || !this.encoder || !this.projector) return undefined;
    return {
      imageBegin: info.imageBegin,
      imageEnd: info.imageEnd,
      fixedTokens: info.dynamicResolution || info.tiled ? undefined : info.nTokensOut,
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
    if (this.fused) return this.#embedFused(this.fused, input, options);
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
    const { features, layout } = await encoder.encodeMedia(image, { signal: options.signal });
    try {
      const projected: MediaChunk[] = [];
      for (const f of features) {
        using embeddings = await projector.project(f, { signal: options.signal });
        if (embeddings.nEmbd !== this.backbone.nEmbd) {
          throw new MmError(
            ErrorCode.MM_MODEL_MISMATCH,
            `the projector gives width ${embeddings.nEmbd}, the model takes ${this.backbone.nEmbd}`,
          );
        }
        projected.push({
          rows: embeddings.toFloat32Array(),
          nTokens: embeddings.nTokens,
          nx: embeddings.nx,
          ny: embeddings.ny,
          causal: embeddings.causal,
        });
      }
      const value: CachedMedia = layOutSlices(
        this.backbone,
        projector.info.slices,
        layout,
        projected,
      );
      if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
      return { key, ...value, cached: false };
    } finally {
      for (const f of features) f.dispose();
    }
  }

  /** A picture through libmtmd's fused encoder + projector, laid out as mtmd_tokenize lays it out. */
  async #embedFused(
    fused: FusedMedia,
    input: ImageInput,
    options: { signal?: AbortSignal },
  ): Promise<EmbeddedMedia> {
    const image = await loadImage(input, {
      maxPixels: this.#maxImagePixels,
      signal: options.signal,
    });
    const key = pixelKey(image.width, image.height, image.data);
    const hit = this.imageCache.get(key);
    if (hit) return { key, ...hit, cached: true };
    const { items } = await fused.embed(image, { signal: options.signal });
    const value = fusedLayout(items);
    if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
    return { key, ...value, cached: false };
  }

  /** Frees every component and the embedding cache. A second call is MM_DISPOSED. */
  dispose(): void {
    this.#check();
    this.#disposed = true;
    this.fused?.dispose();
    this.projector?.dispose();
    this.encoder?.dispose();
    this.backbone.dispose();
    this.imageCache.clear();
  }

  [Symbol.dispose](): void {
    if (!this.#disposed) this.dispose();
  }
}

/**
 * libmtmd's layout of one picture (text and image chunks in its order) as a media part: the text
 * before each chunk, and after the last, goes to `between` (the family's begin / end markers, the
 * tile or slice markers), each image chunk to `chunks`.
 */
export function fusedLayout(items: readonly FusedItem[]): CachedMedia {
  const chunks: MediaChunk[] = [];
  const between: Int32Array[] = [];
  let text: number[] = [];
  for (const it of items) {
    if (it.kind === 'text') {
      text.push(...it.tokens);
      continue;
    }
    between.push(Int32Array.from(text));
    text = [];
    chunks.push({ rows: it.rows, nTokens: it.nTokens, nx: it.nx, ny: it.ny, causal: it.causal });
  }
  if (chunks.length === 0) {
    throw new MmError(ErrorCode.MM_INTERNAL, 'libmtmd made no image chunk of the picture');
  }
  between.push(Int32Array.from(text));
  return { chunks, between };
}
