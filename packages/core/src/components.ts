import { availableParallelism } from 'node:os';
import { Backbone, nativeModel } from '@mm/backbone-gguf';
import { type Audio, AudioEncoder, VisionEncoder } from '@mm/encoders';
import {
  checkSignal,
  ErrorCode,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
} from '@mm/errors';
import { getBool, readGguf } from '@mm/gguf';
import {
  checkPair,
  type FusedItem,
  FusedMedia,
  inspectFused,
  type MmprojInfo,
  Projector,
} from '@mm/projectors';
import {
  audioKey,
  type CachedMedia,
  EmbeddingCache,
  type MediaChunk,
  NativeRowsChunk,
  pixelKey,
  settleMedia,
} from './image-cache.js';
import type { EmbeddedMedia, MediaPath, PromptSource } from './media.js';
import {
  type AudioInput,
  type ImageInput,
  loadAudio,
  loadImage,
  type MediaRef,
  type Modality,
} from './messages.js';
import type { MediaPromptInfo } from './prompt.js';
import { layOutSlices } from './slices.js';

export interface ModelComponentsLoadOptions {
  /** A llama.cpp text-model GGUF. */
  model: string;
  /**
   * The matching llama.cpp mmproj GGUF: a vision encoder, an audio encoder or both, with their
   * projectors. Without it: text only.
   */
  mmproj?: string;
  /** Layers of the LLM to offload to the GPU (a count or 'all'); the mmproj goes to the GPU when > 0. */
  gpuLayers?: number | 'all';
  /**
   * ggml RPC workers ('host:port', started with `mm rpc-worker`) that take the LLM's layers (all of
   * them unless `gpuLayers` says otherwise), as llama.cpp's `--rpc`. The encoder and projector stay
   * in this process unless `mmprojRpc` names a worker for them. MM_RPC_CONNECT when a worker cannot
   * be reached, MM_RPC_LOST when one is lost later. The protocol is unauthenticated: trusted
   * networks only.
   */
  rpc?: readonly string[];
  /**
   * A ggml RPC worker ('host:port') whose first device runs the mmproj's encoders and projectors
   * (mm's own graphs) and holds their weights, in place of a GPU. It may be one of `rpc`'s workers.
   * MM_INVALID_ARGUMENT for a file on libmtmd's fused path (its graphs stay local).
   */
  mmprojRpc?: string;
  /** CPU threads for every component (default: all hardware threads). */
  threads?: number;
  /**
   * Bytes of media embeddings (pictures and sounds) kept for repeated inputs (default 256 MiB; 0
   * disables).
   */
  imageCacheBytes?: number;
  /** Largest image accepted, in pixels (checked from the header before decoding). */
  maxImagePixels?: number;
  /** Longest audio accepted, in seconds (default 3600): MM_AUDIO_TOO_LONG. */
  maxAudioSeconds?: number;
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

/** The own-graph encoder and projector of one modality, with the mmproj's facts for it. */
interface OwnMedia<E> {
  encoder: E;
  projector: Projector;
  info: MmprojInfo;
}

/**
 * The parts of a multimodal model without a KV cache: the LLM backbone, and the mmproj's media
 * encoders and projectors (vision, audio or both) with their embedding cache. They turn a
 * conversation into prompt chunks (a PromptSource for preparePrompt); whoever answers adds the
 * context: MultimodalModel one of its own, @mm/server's batched engine one shared by its requests.
 *
 * Each modality takes mm's own encoder → projector graphs when mm has them for the file's
 * projector type, else libmtmd's fused encoder + projector (one FusedMedia serves every modality
 * that needs it).
 */
export class ModelComponents implements PromptSource {
  readonly backbone: Backbone;
  /** mm's own vision encoder (undefined when pictures go through libmtmd or are not taken). */
  readonly encoder: VisionEncoder | undefined;
  readonly projector: Projector | undefined;
  readonly mmprojInfo: Readonly<MmprojInfo> | undefined;
  /** mm's own audio encoder and projector (Whisper-style: ultravox, qwen2a, qwen2.5o's audio). */
  readonly audioEncoder: AudioEncoder | undefined;
  readonly audioProjector: Projector | undefined;
  /**
   * libmtmd's fused encoder + projector, for the modalities whose projector type has no own graph
   * in mm but libmtmd runs it (the long tail); `fused.info.hasVision` / `hasAudio` say which it holds.
   */
  readonly fused: FusedMedia | undefined;
  readonly imageCache: EmbeddingCache;
  /** The chat template is rendered with the Jinja engine (see ModelComponentsLoadOptions.jinja). */
  readonly jinja: boolean;
  /** CPU threads the components run with (a context made for them should use as many). */
  readonly threads: number;
  readonly #maxImagePixels: number | undefined;
  readonly #maxAudioSeconds: number | undefined;
  readonly #audioMarkers: { begin: Int32Array; end: Int32Array } | undefined;
  #disposed = false;

  private constructor(
    backbone: Backbone,
    parts: {
      vision?: OwnMedia<VisionEncoder>;
      audio?: OwnMedia<AudioEncoder>;
      fused?: FusedMedia;
    },
    options: {
      cacheBytes: number;
      maxImagePixels?: number;
      maxAudioSeconds?: number;
      jinja: boolean;
      threads: number;
    },
  ) {
    this.backbone = backbone;
    this.encoder = parts.vision?.encoder;
    this.projector = parts.vision?.projector;
    this.mmprojInfo = parts.vision?.info;
    this.audioEncoder = parts.audio?.encoder;
    this.audioProjector = parts.audio?.projector;
    this.fused = parts.fused;
    this.imageCache = new EmbeddingCache(options.cacheBytes);
    this.#maxImagePixels = options.maxImagePixels;
    this.#maxAudioSeconds = options.maxAudioSeconds;
    this.jinja = options.jinja;
    this.threads = options.threads;
    // libmtmd's audio begin / end text (mtmd.cpp init_audio), tokenized apart with special tokens
    const info = parts.audio?.projector.info;
    if (info) {
      const marker = (t: string) =>
        t ? backbone.tokenize(t, { addBos: false, parseSpecial: true }) : new Int32Array(0);
      this.#audioMarkers = { begin: marker(info.imageBegin), end: marker(info.imageEnd) };
    }
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
    if (options.mmprojRpc !== undefined && options.mmproj === undefined) {
      throw new MmInvalidArgumentError('mmprojRpc', 'places the mmproj: give mmproj too');
    }
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1)
      throw new MmInvalidArgumentError('threads', 'must be an integer >= 1');
    const cacheBytes = options.imageCacheBytes ?? DEFAULT_CACHE_BYTES;
    if (!Number.isFinite(cacheBytes) || cacheBytes < 0) {
      throw new MmInvalidArgumentError('imageCacheBytes', 'must be a number >= 0');
    }
    const maxAudioSeconds = options.maxAudioSeconds;
    if (
      maxAudioSeconds !== undefined &&
      !(typeof maxAudioSeconds === 'number' && maxAudioSeconds > 0)
    ) {
      throw new MmInvalidArgumentError('maxAudioSeconds', 'must be a number > 0');
    }
    const progress = options.onProgress;
    // Which encoders the file holds (an unreadable header: the vision path reports it).
    const has =
      options.mmproj === undefined ? undefined : await mmprojModalities(options.mmproj, signal);
    if (has?.speech && !has.vision) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `${options.mmproj} is a speech-generation mmproj (text → speech): it has no encoder to understand images or audio with. Load it with SpeechModel (@mm/core) or run \`mm tts -m <talker.gguf> --mmproj ${options.mmproj} -p "text" -o out.wav\``,
        { details: { mmproj: options.mmproj, kind: 'speech-generation' } },
      );
    }
    const owned: { dispose(): void }[] = [];
    try {
      const backbone = await Backbone.load(options.model, {
        gpuLayers: options.gpuLayers,
        rpc: options.rpc,
        signal,
        onProgress: progress ? (p) => progress({ component: 'model', progress: p }) : undefined,
      });
      owned.push(backbone);
      const parts: {
        vision?: OwnMedia<VisionEncoder>;
        audio?: OwnMedia<AudioEncoder>;
        fused?: FusedMedia;
      } = {};
      if (options.mmproj !== undefined) {
        const mmproj = options.mmproj;
        const gpu = options.gpuLayers !== undefined && options.gpuLayers !== 0;
        const rpc = options.mmprojRpc;
        progress?.({ component: 'mmproj', progress: 0 });
        const wantVision = has === undefined || has.vision || !has.audio;
        const wantAudio = has?.audio === true;
        let needFused = false;
        // mm's own graphs first; a projector type they do not implement goes to libmtmd when it
        // runs the type (inspectFused throws MM_UNSUPPORTED_FAMILY, listing both, when not).
        if (wantVision) {
          const vision = await ownMedia(async (own) => {
            const info = await checkPair(mmproj, backbone.nEmbd, { signal });
            const encoder = own(await VisionEncoder.load(mmproj, { threads, gpu, rpc, signal }));
            const projector = own(await Projector.load(mmproj, { threads, gpu, rpc, signal }));
            return { encoder, projector, info };
          });
          if (vision) {
            parts.vision = vision;
            owned.push(vision.projector, vision.encoder);
          } else needFused = true;
        }
        if (wantAudio) {
          const audio = await ownMedia(async (own) => {
            const info = await checkPair(mmproj, backbone.nEmbd, { signal, audio: true });
            const encoder = own(await AudioEncoder.load(mmproj, { threads, gpu, rpc, signal }));
            const projector = own(
              await Projector.load(mmproj, { threads, gpu, rpc, audio: true, signal }),
            );
            return { encoder, projector, info };
          });
          if (audio) {
            parts.audio = audio;
            owned.push(audio.projector, audio.encoder);
          } else needFused = true;
        }
        if (needFused) {
          await inspectFused(mmproj, { signal });
          if (rpc !== undefined) {
            throw new MmInvalidArgumentError(
              'mmprojRpc',
              `${mmproj} runs on libmtmd's fused path, whose graphs stay in this process: load it without mmprojRpc`,
            );
          }
          parts.fused = await FusedMedia.load(mmproj, nativeModel(backbone), {
            threads,
            gpu,
            signal,
          });
          owned.push(parts.fused);
        }
        progress?.({ component: 'mmproj', progress: 1 });
      }
      return new ModelComponents(backbone, parts, {
        cacheBytes,
        maxImagePixels: options.maxImagePixels,
        maxAudioSeconds,
        jinja: options.jinja ?? false,
        threads,
      });
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

  /** The modalities this model's media parts may carry (empty without an mmproj). */
  get modalities(): readonly Modality[] {
    const out: Modality[] = [];
    if (this.encoder || this.fused?.info.hasVision) out.push('image');
    if (this.audioEncoder || this.fused?.info.hasAudio) out.push('audio');
    return out;
  }

  /**
   * How pictures become chunks: mm's own encoder → projector graphs, or libmtmd's fused encoder +
   * projector (the long tail); for a model that takes sound only, how sound does; undefined
   * without an mmproj.
   */
  get mediaPath(): MediaPath | undefined {
    if (this.encoder && this.projector) return 'own graph';
    if (this.fused?.info.hasVision) return 'libmtmd (fused)';
    return this.audioPath;
  }

  /** How sound becomes chunks (own graphs or libmtmd fused); undefined when no audio is taken. */
  get audioPath(): MediaPath | undefined {
    if (this.audioEncoder && this.audioProjector) return 'own graph';
    if (this.fused?.info.hasAudio) return 'libmtmd (fused)';
    return undefined;
  }

  /** The PCM rate sound is decoded to for this model (Hz); undefined when no audio is taken. */
  get audioSampleRate(): number | undefined {
    if (this.audioEncoder) return this.audioEncoder.sampleRate;
    if (this.fused?.info.hasAudio) return this.fused.info.audioSampleRate;
    return undefined;
  }

  /** The loaded media encoders' prompt facts (markers, fixed token count); undefined without one. */
  get mediaPromptInfo(): MediaPromptInfo | undefined {
    const modalities = this.modalities;
    if (modalities.length === 0) return undefined;
    // libmtmd's marker text comes with each part's chunks (CachedMedia.between) on the fused path
    // and for sound; own-graph pictures put theirs around the part's marker.
    const info = this.encoder && this.projector ? this.mmprojInfo : undefined;
    if (!info) return { imageBegin: '', imageEnd: '', fixedTokens: undefined, modalities };
    return {
      imageBegin: info.imageBegin,
      imageEnd: info.imageEnd,
      fixedTokens: info.dynamicResolution || info.tiled ? undefined : info.nTokensOut,
      modalities,
    };
  }

  /**
   * A media part's chunks in the LLM's space: from the cache (keyed by the decoded content), or
   * decoded, encoded and projected, then cached. `cached` tells which. A modality the mmproj has
   * no encoder for is MM_MODALITY_UNSUPPORTED.
   */
  async embedMedia(ref: MediaRef, options: { signal?: AbortSignal } = {}): Promise<EmbeddedMedia> {
    this.#check();
    if (ref?.modality === 'image') return this.embedImage(ref.input, options);
    if (ref?.modality === 'audio') return this.embedAudio(ref.input, options);
    throw new MmError(
      ErrorCode.MM_MODALITY_UNSUPPORTED,
      `a '${String((ref as { modality?: unknown } | undefined)?.modality)}' part cannot be embedded: this model takes ${this.modalities.join(' and ') || 'text only'}`,
    );
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
      if (this.fused?.info.hasVision) return this.#embedFused(this.fused, input, options);
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        this.modalities.length > 0
          ? `this model takes ${this.modalities.join(' and ')}, not images: its mmproj has no vision encoder`
          : 'no mmproj (vision encoder) was loaded with the model',
      );
    }
    const image = await loadImage(input, {
      maxPixels: this.#maxImagePixels,
      signal: options.signal,
    });
    const key = pixelKey(image.width, image.height, image.data);
    const hit = this.imageCache.get(key);
    if (hit) return { key, ...hit, cached: true, path: 'own graph' };
    // encoder and projector in one native call: one trip off the JS thread, not two
    const { embeddings, layout } = await projector.encodeAndProject(encoder, image, {
      signal: options.signal,
    });
    const mismatch = embeddings.find((e) => e.nEmbd !== this.backbone.nEmbd);
    if (mismatch) {
      for (const e of embeddings) e.dispose();
      throw new MmError(
        ErrorCode.MM_MODEL_MISMATCH,
        `the projector gives width ${mismatch.nEmbd}, the model takes ${this.backbone.nEmbd}`,
      );
    }
    // the rows stay native (each chunk owns its Embeddings) until something reads them
    const projected: MediaChunk[] = embeddings.map((e) => new NativeRowsChunk(e));
    const value: CachedMedia = layOutSlices(
      this.backbone,
      projector.info.slices,
      layout,
      projected,
    );
    if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
    else settleMedia(value);
    return { key, ...value, cached: false, path: 'own graph' };
  }

  /**
   * A sound's chunks in the LLM's space, laid out as libmtmd's mtmd_tokenize lays it out: the
   * begin marker text, one chunk per 30 s of mel frames (causal, one KV position per row), the
   * end marker text. Decoded (WAV, MP3, FLAC) at the model's rate, then from the cache (keyed by
   * the samples and the rate), or encoded and projected (own graphs, else libmtmd fused) and cached.
   */
  async embedAudio(
    input: AudioInput,
    options: { signal?: AbortSignal } = {},
  ): Promise<EmbeddedMedia> {
    this.#check();
    const sampleRate = this.audioSampleRate;
    const path = this.audioPath;
    if (sampleRate === undefined || path === undefined) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        this.modalities.length > 0
          ? `this model takes ${this.modalities.join(' and ')}, not audio: its mmproj has no audio encoder`
          : 'no mmproj (audio encoder) was loaded with the model',
      );
    }
    const audio = await loadAudio(input, {
      sampleRate,
      maxSeconds: this.#maxAudioSeconds,
      signal: options.signal,
    });
    const key = audioKey(audio.sampleRate, audio.samples);
    const hit = this.imageCache.get(key);
    if (hit) return { key, ...hit, cached: true, path };
    let value: CachedMedia;
    if (this.audioEncoder && this.audioProjector) {
      value = await this.#embedAudioOwn(this.audioEncoder, this.audioProjector, audio, options);
    } else {
      const fused = this.fused as FusedMedia;
      const { items } = await fused.embedAudio(audio.samples, { signal: options.signal });
      value = fusedLayout(items);
    }
    if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
    return { key, ...value, cached: false, path };
  }

  /**
   * Sound through mm's own graphs: the audio encoder's Features per 30 s mel chunk, each projected
   * (AudioEncoder → Projector with `audio: true`), between libmtmd's audio markers.
   */
  async #embedAudioOwn(
    encoder: AudioEncoder,
    projector: Projector,
    audio: Audio,
    options: { signal?: AbortSignal },
  ): Promise<CachedMedia> {
    const features = await encoder.encode(audio, { signal: options.signal });
    try {
      const chunks: MediaChunk[] = [];
      for (const f of features) {
        using embeddings = await projector.project(f, { signal: options.signal });
        if (embeddings.nEmbd !== this.backbone.nEmbd) {
          throw new MmError(
            ErrorCode.MM_MODEL_MISMATCH,
            `the audio projector gives width ${embeddings.nEmbd}, the model takes ${this.backbone.nEmbd}`,
          );
        }
        chunks.push({
          rows: embeddings.toFloat32Array(),
          nTokens: embeddings.nTokens,
          nx: embeddings.nTokens,
          ny: 1,
          causal: embeddings.causal,
          sequential: true,
        });
      }
      if (chunks.length === 0) {
        throw new MmError(ErrorCode.MM_INTERNAL, 'the audio encoder made no chunk of the sound');
      }
      const markers = this.#audioMarkers as { begin: Int32Array; end: Int32Array };
      const between = chunks.map((_, i) => (i === 0 ? markers.begin : new Int32Array(0)));
      between.push(markers.end);
      return { chunks, between };
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
    if (hit) return { key, ...hit, cached: true, path: 'libmtmd (fused)' };
    const { items } = await fused.embed(image, { signal: options.signal });
    const value = fusedLayout(items);
    if (this.imageCache.maxBytes > 0) this.imageCache.set(key, value);
    return { key, ...value, cached: false, path: 'libmtmd (fused)' };
  }

  /** Frees every component and the embedding cache. A second call is MM_DISPOSED. */
  dispose(): void {
    this.#check();
    this.#disposed = true;
    this.fused?.dispose();
    this.audioProjector?.dispose();
    this.audioEncoder?.dispose();
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
 * libmtmd's layout of one picture or sound (text and media chunks in its order) as a media part:
 * the text before each chunk, and after the last, goes to `between` (the family's begin / end
 * markers, the tile or slice markers), each media chunk to `chunks` (audio chunks sequential).
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
    chunks.push({
      rows: it.rows,
      nTokens: it.nTokens,
      nx: it.nx,
      ny: it.ny,
      causal: it.causal,
      ...(it.modality === 'audio' && { sequential: true }),
    });
  }
  if (chunks.length === 0) {
    throw new MmError(ErrorCode.MM_INTERNAL, 'libmtmd made no media chunk of the input');
  }
  between.push(Int32Array.from(text));
  return { chunks, between };
}

/** Which encoders an mmproj's header says it holds; undefined when the header cannot be read. */
async function mmprojModalities(
  mmproj: string,
  signal: AbortSignal | undefined,
): Promise<{ vision: boolean; audio: boolean; speech: boolean } | undefined> {
  try {
    const f = await readGguf(mmproj, { signal });
    return {
      vision: getBool(f, 'clip.has_vision_encoder', false) === true,
      audio: getBool(f, 'clip.has_audio_encoder', false) === true,
      speech: getBool(f, 'clip.has_gen_audio_encoder', false) === true,
    };
  } catch {
    // an unreadable header: the loaders below say what is wrong with the file
    if (signal?.aborted) throw signal.reason;
    return undefined;
  }
}

/**
 * Loads one modality's own encoder and projector; undefined when mm has no own graph for the
 * file's projector type (MM_UNSUPPORTED_FAMILY: libmtmd may run it). What was loaded is disposed
 * on failure.
 */
async function ownMedia<T>(
  load: (own: <D extends { dispose(): void }>(d: D) => D) => Promise<T>,
): Promise<T | undefined> {
  const loaded: { dispose(): void }[] = [];
  try {
    return await load((d) => {
      loaded.push(d);
      return d;
    });
  } catch (e) {
    for (const o of loaded.reverse()) o.dispose();
    if (!MmError.isInstance(e) || e.code !== ErrorCode.MM_UNSUPPORTED_FAMILY) throw e;
    return undefined;
  }
}
