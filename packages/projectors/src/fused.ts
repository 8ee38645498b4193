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

/** One image chunk libmtmd made of a picture. */
export interface FusedChunk {
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

/** A picture as libmtmd lays it out: text tokens and image chunks, in its order. */
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

/** The projector types mm runs with its own graphs, and those it hands to libmtmd (pinned commit). */
export function projectorTypes(): { own: string[]; fused: string[] } {
  return callNative(() => loadAddon().fusedProjectorTypes());
}

/**
 * Reads an mmproj's header and validates it as libmtmd will read it (the type of every key it reads,
 * bounds of the vision tower, tensor types and, for families mm generates files of, shapes).
 * MM_UNSUPPORTED_FAMILY lists the supported types (own graphs and fused) when libmtmd does not
 * know the type either.
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
  readonly info: Readonly<FusedInfo & { nEmbd: number; mrope: boolean; nThreads: number }>;
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
   * The signal is honoured before the call and between chunks.
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
    return this.#serial.run(async () => {
      const r = await runNative(() => native.embed(image.data, image.width, image.height), signal);
      if (signal?.aborted) throw signal.reason;
      for (const it of r.items) {
        if (it.kind === 'media' && it.nEmbd !== this.info.nEmbd) {
          throw new MmError(
            ErrorCode.MM_INTERNAL,
            `libmtmd gave rows of width ${it.nEmbd}, the text model takes ${this.info.nEmbd}`,
          );
        }
      }
      return r;
    });
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
