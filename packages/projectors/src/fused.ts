import { availableParallelism } from 'node:os';
import {
  checkSignal,
  ErrorCode,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
  SerialQueue,
} from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeFusedInfo,
  type NativeFusedMedia,
  type NativeModel,
  runNative,
} from '@mm/native';

/**
 * The long tail: every projector type the vendored libmtmd runs and mm has no own graph for goes
 * through libmtmd's fused encoder + projector, on the text model's own llama_model. One stage, no
 * separate Features: a picture becomes what mtmd_tokenize makes of the media marker alone (libmtmd's
 * marker text around and between the chunks, each chunk's embeddings in the text model's input
 * space), in libmtmd's order, decoded by the backbone as libmtmd's helpers decode them.
 */

export type FusedInfo = NativeFusedInfo;

/** One image or audio chunk libmtmd made of a picture or a sound. */
export interface FusedChunk {
  /** An image chunk, or an audio chunk (causal, rows on one line of positions). */
  modality: 'image' | 'audio';
  /** [nTokens][nEmbd] rows in the text model's input space. */
  rows: Float32Array;
  nTokens: number;
  nEmbd: number;
  /** The token grid (M-RoPE models: merged patches across and down; else nTokens × 1). */
  nx: number;
  ny: number;
  /** Whether the text model attends causally inside the chunk. */
  causal: boolean;
  /** KV positions the chunk takes (libmtmd's mtmd_input_chunk_get_n_pos). */
  nPos: number;
}

/** A picture or a sound as libmtmd lays it out: text tokens and media chunks, in its order. */
export type FusedItem = { kind: 'text'; tokens: Int32Array } | ({ kind: 'media' } & FusedChunk);

export interface FusedEmbedding {
  items: FusedItem[];
  /** libmtmd's encode of the chunks (preprocessing, vision tower and projector), ms. */
  encodeMs: number;
  /** The whole call (layout + encode), ms. */
  totalMs: number;
}

export interface FusedLoadOptions {
  /** CPU threads (default: all cores). */
  threads?: number;
  /** Use the first GPU when mm.node was built with one (default true). */
  gpu?: boolean;
  signal?: AbortSignal;
}

/**
 * The projector types mm runs with its own graphs, and those it hands to libmtmd (pinned commit):
 * `fused` for pictures, `fusedAudio` for sound.
 */
export function projectorTypes(): { own: string[]; fused: string[]; fusedAudio: string[] } {
  return callNative(() => loadAddon().fusedProjectorTypes());
}

/**
 * Reads an mmproj's header and validates it as libmtmd will read it (the type of every key it reads,
 * bounds of the vision and audio towers, tensor types and, for families mm generates files of,
 * shapes), for each encoder the file has: `hasVision` / `hasAudio` say which, `audioSampleRate` the
 * rate its audio is taken at. MM_UNSUPPORTED_FAMILY lists the supported types (own graphs and
 * fused) when libmtmd does not run the type either; MM_MODALITY_UNSUPPORTED for a file with
 * neither a vision nor an audio encoder.
 */
export async function inspectFused(
  mmproj: string,
  options: { signal?: AbortSignal } = {},
): Promise<FusedInfo> {
  if (typeof mmproj !== 'string' || mmproj.length === 0) {
    throw new MmInvalidArgumentError('mmproj', 'must be a non-empty string');
  }
  const signal = checkSignal(options.signal);
  const info = await runNative(() => loadAddon().inspectFused(mmproj), signal);
  if (signal?.aborted) throw signal.reason;
  return info;
}

/**
 * libmtmd's fused encoder + projector of an mmproj, bound to a loaded text model (whose native
 * handle it takes, e.g. `nativeModel(backbone)` from @mm/backbone-gguf; it keeps that model loaded).
 * Calls run off the JS thread, one at a time.
 */
export class FusedMedia {
  readonly path: string;
  readonly info: Readonly<
    FusedInfo & { nEmbd: number; mrope: boolean; nThreads: number; audioSampleRate: number }
  >;
  #native: NativeFusedMedia | undefined;
  readonly #serial = new SerialQueue();

  private constructor(path: string, native: NativeFusedMedia) {
    this.path = path;
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  /**
   * Validates the header (inspectFused), then lets libmtmd load the file for `model`. What libmtmd
   * refuses is a typed error: MM_MODEL_MISMATCH when the projection does not fit the model,
   * MM_GGUF_INVALID for a file it cannot load.
   */
  static async load(
    mmproj: string,
    model: NativeModel,
    options: FusedLoadOptions = {},
  ): Promise<FusedMedia> {
    if (typeof mmproj !== 'string' || mmproj.length === 0) {
      throw new MmInvalidArgumentError('mmproj', 'must be a non-empty string');
    }
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1 || threads > 512) {
      throw new MmInvalidArgumentError(
        'threads',
        `must be an integer in [1, 512], got ${String(threads)}`,
      );
    }
    if (options.gpu !== undefined && typeof options.gpu !== 'boolean') {
      throw new MmInvalidArgumentError('gpu', 'must be a boolean');
    }
    const native = await runNative(
      () => loadAddon().loadFusedMedia(mmproj, model, { threads, gpu: options.gpu ?? true }),
      signal,
    );
    if (signal?.aborted) {
      native.dispose();
      throw signal.reason;
    }
    return new FusedMedia(mmproj, native);
  }

  private get native(): NativeFusedMedia {
    if (!this.#native) throw new MmDisposedError('FusedMedia');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** The projector type as the file names it. */
  get projectorType(): string {
    return this.info.projectorType;
  }

  /** Width of the rows: the text model's input width. */
  get nEmbd(): number {
    return this.info.nEmbd;
  }

  /**
   * One picture (8-bit RGB, row-major) through libmtmd: its layout and every chunk's embeddings.
   * MM_MODALITY_UNSUPPORTED when the file has no vision encoder. The signal is honoured before the
   * call and between chunks.
   */
  async embed(
    image: { width: number; height: number; data: Uint8Array },
    options: { signal?: AbortSignal } = {},
  ): Promise<FusedEmbedding> {
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    if (
      image === null ||
      typeof image !== 'object' ||
      !(image.data instanceof Uint8Array) ||
      !Number.isInteger(image.width) ||
      !Number.isInteger(image.height)
    ) {
      throw new MmInvalidArgumentError('image', 'must be { width, height, data: Uint8Array } RGB');
    }
    const native = this.native;
    if (!this.info.hasVision) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `'${this.path}' has no vision encoder (projector type '${this.info.projectorType}')`,
      );
    }
    return this.#serial.run(async () => {
      const r = await runNative(() => native.embed(image.data, image.width, image.height), signal);
      if (signal?.aborted) throw signal.reason;
      this.#checkWidths(r);
      return r;
    });
  }

  /**
   * One sound through libmtmd: mono f32 PCM at `info.audioSampleRate` (decode and resample with
   * `Audio` from @mm/encoders), laid out as mtmd_tokenize lays it out (the begin marker text, one
   * audio chunk per 30 s mel chunk, the end marker text), every chunk encoded. MM_MODALITY_UNSUPPORTED
   * when the file has no audio encoder; MM_AUDIO_DECODE for fewer than 2 samples. The signal is
   * honoured before the call and between chunks.
   */
  async embedAudio(
    pcm: Float32Array,
    options: { signal?: AbortSignal } = {},
  ): Promise<FusedEmbedding> {
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    if (!(pcm instanceof Float32Array)) {
      throw new MmInvalidArgumentError('pcm', 'must be a Float32Array of mono samples');
    }
    const native = this.native;
    if (!this.info.hasAudio) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `'${this.path}' has no audio encoder (projector type '${this.info.projectorType}')`,
      );
    }
    return this.#serial.run(async () => {
      const r = await runNative(() => native.embedAudio(pcm), signal);
      if (signal?.aborted) throw signal.reason;
      this.#checkWidths(r);
      return r;
    });
  }

  #checkWidths(r: FusedEmbedding): void {
    for (const it of r.items) {
      if (it.kind === 'media' && it.nEmbd !== this.info.nEmbd) {
        throw new MmError(
          ErrorCode.MM_INTERNAL,
          `libmtmd gave rows of width ${it.nEmbd}, the text model takes ${this.info.nEmbd}`,
        );
      }
    }
  }

  /**
   * Frees libmtmd's context: later calls are MM_DISPOSED (a second dispose too); calls already made
   * still complete, and the native memory is released after them.
   */
  dispose(): void {
    const n = this.native;
    this.#native = undefined;
    void this.#serial.run(() => n.dispose());
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}
