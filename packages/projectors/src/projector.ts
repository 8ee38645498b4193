import { availableParallelism } from 'node:os';
import {
  type Features,
  Image,
  nativeFeatures,
  nativeVisionEncoder,
  resolveRpc,
  type SliceLayout,
  VisionEncoder,
} from '@mm/encoders';
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
  type NativeMmprojInfo,
  type NativeProjector,
  type NativeProjectorInfo,
  type NativeSliceTemplate,
  runNative,
} from '@mm/native';
import { Embeddings } from './embeddings.js';

export interface ProjectorLoadOptions {
  /** CPU threads for the graph (default: all cores). */
  threads?: number;
  /** Use the first GPU when mm.node was built with one (default true). */
  gpu?: boolean;
  /**
   * A ggml RPC worker ('host:port', started with `mm rpc-worker`) whose first device runs the
   * graph and holds the weights, in place of a GPU. MM_RPC_CONNECT when it cannot be reached,
   * MM_RPC_LOST when it is lost later. The protocol is unauthenticated: trusted networks only.
   */
  rpc?: string;
  /**
   * The audio projector (`mm.a.*`, after the Whisper-style `a.*` tower: ultravox, qwen2a) instead
   * of the vision one; it takes an AudioEncoder's Features.
   */
  audio?: boolean;
  signal?: AbortSignal;
}

export interface ProjectOptions {
  signal?: AbortSignal;
}

export type ProjectorInfo = NativeProjectorInfo;
export type MmprojInfo = NativeMmprojInfo;
/** How libmtmd lays out the chunks of a tiled picture (markers around the overview and slices). */
export type SliceTemplate = NativeSliceTemplate;

/** The projector families mm implements (the `clip.projector_type` strings). */
export const SUPPORTED_PROJECTOR_FAMILIES = [
  'mlp',
  'mlp_norm',
  'ldp',
  'ldpv2',
  'qwen2vl_merger',
  'qwen2.5vl_merger',
  'gemma3',
  'idefics3',
  'resampler',
] as const;

/** The audio projector families mm implements (`clip.audio.projector_type` / `clip.projector_type`). */
export const SUPPORTED_AUDIO_PROJECTOR_FAMILIES = ['ultravox', 'qwen2a'] as const;

function checkMmprojPath(mmproj: unknown): string {
  if (typeof mmproj !== 'string' || mmproj.length === 0) {
    throw new MmInvalidArgumentError('mmproj', 'must be a non-empty string');
  }
  return mmproj;
}

function mismatch(info: MmprojInfo, path: string, nEmbdText: number): MmError {
  return new MmError(
    ErrorCode.MM_MODEL_MISMATCH,
    `the mmproj '${path}' projects to ${info.nEmbdOut}-wide embeddings but the text model's ` +
      `n_embd is ${nEmbdText}: they do not belong together`,
    { details: { mmproj: path, projectionWidth: info.nEmbdOut, nEmbdText } },
  );
}

function checkWidth(nEmbdText: unknown): number {
  if (typeof nEmbdText !== 'number' || !Number.isSafeInteger(nEmbdText) || nEmbdText < 1) {
    throw new MmInvalidArgumentError(
      'nEmbdText',
      `must be a positive integer, got ${String(nEmbdText)}`,
    );
  }
  return nEmbdText;
}

/**
 * Reads an mmproj's header (no weights) and validates it as a load would: projector family,
 * vision tower shape, projection width and token count.
 */
export async function inspectMmproj(
  mmproj: string,
  options: { signal?: AbortSignal; audio?: boolean } = {},
): Promise<MmprojInfo> {
  checkMmprojPath(mmproj);
  const signal = checkSignal(options.signal);
  const audio = options.audio === true;
  const info = await runNative(() => loadAddon().inspectMmproj(mmproj, { audio }), signal);
  if (signal?.aborted) throw signal.reason;
  return info;
}

/**
 * Checks that an mmproj fits a text model: its projection width must equal the model's n_embd.
 * Throws MM_MODEL_MISMATCH otherwise; returns the mmproj's facts.
 */
export async function checkPair(
  mmproj: string,
  nEmbdText: number,
  options: { signal?: AbortSignal; audio?: boolean } = {},
): Promise<MmprojInfo> {
  checkWidth(nEmbdText);
  const info = await inspectMmproj(mmproj, options);
  if (info.nEmbdOut !== nEmbdText) throw mismatch(info, mmproj, nEmbdText);
  return info;
}

/**
 * The input projector of an mmproj (llama.cpp's `mm.*` tensors), chosen by
 * `clip.projector_type`: mlp (LLaVA-1.5), mlp_norm, ldp (MobileVLM), ldpv2 (MobileVLM V2),
 * qwen2vl_merger / qwen2.5vl_merger (2x2 patch merger), gemma3 (pool + soft-embedding norm),
 * resampler (MiniCPM-V: learned queries cross-attending to each slice). It maps a VisionEncoder's
 * Features into the LLM's embedding space. Calls run off the JS thread.
 */
export class Projector {
  readonly path: string;
  readonly info: Readonly<ProjectorInfo>;
  #native: NativeProjector | undefined;
  readonly #serial = new SerialQueue();

  private constructor(path: string, native: NativeProjector) {
    this.path = path;
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  /**
   * Loads the projector of an mmproj. The header is validated first: an unknown family is
   * MM_UNSUPPORTED_FAMILY listing the supported ones, a malformed file MM_GGUF_INVALID.
   */
  static async load(mmproj: string, options: ProjectorLoadOptions = {}): Promise<Projector> {
    checkMmprojPath(mmproj);
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
    if (options.audio !== undefined && typeof options.audio !== 'boolean') {
      throw new MmInvalidArgumentError('audio', 'must be a boolean');
    }
    const rpc = resolveRpc(options.rpc);
    const native = await runNative(
      () =>
        loadAddon().loadProjector(mmproj, {
          threads,
          gpu: options.gpu ?? true,
          ...(rpc !== undefined && { rpc }),
          audio: options.audio ?? false,
        }),
      signal,
    );
    if (signal?.aborted) {
      native.dispose();
      throw signal.reason;
    }
    return new Projector(mmproj, native);
  }

  private get native(): NativeProjector {
    if (!this.#native) throw new MmDisposedError('Projector');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Whether this is an audio projector (its input: an AudioEncoder's Features). */
  get audio(): boolean {
    return this.info.audio !== undefined;
  }

  /** Projector family: one of SUPPORTED_PROJECTOR_FAMILIES (audio: SUPPORTED_AUDIO_PROJECTOR_FAMILIES). */
  get family(): string {
    return this.info.family;
  }

  /** Width of the embeddings: the text model's n_embd. */
  get nEmbd(): number {
    return this.info.nEmbdOut;
  }

  /** Embedding rows per image (dynamic-resolution families: for a typical picture). */
  get nTokens(): number {
    return this.info.nTokensOut;
  }

  /** Throws MM_MODEL_MISMATCH unless `nEmbdText` (the text model's n_embd) equals nEmbd. */
  checkPair(nEmbdText: number): void {
    checkWidth(nEmbdText);
    if (this.info.nEmbdOut !== nEmbdText) throw mismatch(this.info, this.path, nEmbdText);
  }

  /** Projects an encoder's features into the LLM's embedding space. */
  async project(features: Features, options: ProjectOptions = {}): Promise<Embeddings> {
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    const tensor = nativeFeatures(features);
    if (
      features.nEmbd !== this.info.nEmbdIn ||
      (!this.info.dynamicResolution && features.nTokens !== this.info.nTokensIn)
    ) {
      throw new MmError(
        ErrorCode.MM_MODEL_MISMATCH,
        `features are [${features.nTokens}, ${features.nEmbd}] but this projector takes ` +
          `[${this.info.nTokensIn}, ${this.info.nEmbdIn}]: they come from another vision encoder`,
      );
    }
    return this.#serial.run(async () => {
      const r = await runNative(() => native.project(tensor), signal);
      const embeddings = new Embeddings(r.embeddings, r.projectMs, this.audio);
      if (signal?.aborted) {
        embeddings.dispose();
        throw signal.reason;
      }
      return embeddings;
    });
  }

  /**
   * A picture through `encoder` and this projector in one native call (one trip off the JS thread
   * instead of two, the features never reaching JS): `encoder.encodeMedia(image)` then
   * `project()` of each chunk, with the same results. The encoder must give this projector's
   * features (MM_MODEL_MISMATCH otherwise, as project() says).
   */
  async encodeAndProject(
    encoder: VisionEncoder,
    image: Image,
    options: ProjectOptions = {},
  ): Promise<{
    embeddings: Embeddings[];
    layout: SliceLayout;
    timings: { preprocessMs: number; encodeMs: number; projectMs: number };
  }> {
    if (!(encoder instanceof VisionEncoder))
      throw new MmInvalidArgumentError('encoder', 'must be a VisionEncoder from @mm/encoders');
    if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
    if (this.audio)
      throw new MmInvalidArgumentError('encoder', 'an audio projector takes an AudioEncoder');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    const enc = nativeVisionEncoder(encoder);
    return this.#serial.run(async () => {
      const r = await runNative(
        () => native.encodeProject(enc, image.data, image.width, image.height),
        signal,
      );
      const each = r.embeddings.length > 0 ? r.projectMs / r.embeddings.length : 0;
      const embeddings = r.embeddings.map((t) => new Embeddings(t, each, false));
      if (signal?.aborted) {
        for (const e of embeddings) e.dispose();
        throw signal.reason;
      }
      return {
        embeddings,
        layout: { ...r.layout },
        timings: { preprocessMs: r.preprocessMs, encodeMs: r.encodeMs, projectMs: r.projectMs },
      };
    });
  }

  /**
   * Frees the projector: later calls are MM_DISPOSED (a second dispose too); projections already
   * called still complete, and the native memory is released after them.
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
