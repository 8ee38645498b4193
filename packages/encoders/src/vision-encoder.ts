import { MmDisposedError, MmInvalidArgumentError } from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeVisionEncoder,
  type NativeVisionEncoderInfo,
  runNative,
} from '@mm/native';
import { Features } from './features.js';
import { Image } from './image.js';
import {
  type ComputeOptions,
  checkPath,
  checkSignal,
  resolveGpu,
  resolveThreads,
} from './options.js';
import type { PreprocessedImage, PreprocessParams } from './preprocess.js';
import { Serial } from './serial.js';

export interface VisionEncoderLoadOptions extends ComputeOptions {
  /** Flash attention: 'auto' (default) uses it when the backend runs it, as libmtmd does. */
  flashAttn?: 'auto' | 'on' | 'off';
  signal?: AbortSignal;
}

export interface EncodeOptions {
  signal?: AbortSignal;
}

export type VisionEncoderInfo = NativeVisionEncoderInfo;

/**
 * The modality encoder of an mmproj (llama.cpp's `v.*` tensors): a CLIP ViT over ggml, chosen by
 * `clip.projector_type` (mlp, mlp_norm, ldp, ldpv2). Its output, `Features`, goes to a
 * `Projector` (@mm/projectors). Calls run off the JS thread, one at a time per encoder.
 */
export class VisionEncoder {
  readonly path: string;
  readonly info: Readonly<VisionEncoderInfo>;
  #native: NativeVisionEncoder | undefined;
  readonly #serial = new Serial();

  private constructor(path: string, native: NativeVisionEncoder) {
    this.path = path;
    this.#native = native;
    this.info = Object.freeze(callNative(() => native.info()));
  }

  /**
   * Loads the vision tower of an mmproj. The whole header (keys, key types, tensor shapes and
   * types) is validated before any weight is read: a hostile file is MM_GGUF_INVALID, an unknown
   * projector MM_UNSUPPORTED_FAMILY (listing the supported ones).
   */
  static async load(
    mmproj: string,
    options: VisionEncoderLoadOptions = {},
  ): Promise<VisionEncoder> {
    checkPath(mmproj, 'mmproj');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const flashAttn = options.flashAttn ?? 'auto';
    if (flashAttn !== 'auto' && flashAttn !== 'on' && flashAttn !== 'off') {
      throw new MmInvalidArgumentError('flashAttn', "must be 'auto', 'on' or 'off'");
    }
    const opts = {
      threads: resolveThreads(options.threads),
      gpu: resolveGpu(options.gpu),
      flashAttn,
    };
    const native = await runNative(() => loadAddon().loadVisionEncoder(mmproj, opts), signal);
    if (signal?.aborted) {
      native.dispose();
      throw signal.reason;
    }
    return new VisionEncoder(mmproj, native);
  }

  private get native(): NativeVisionEncoder {
    if (!this.#native) throw new MmDisposedError('VisionEncoder');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Encoder family ('clip'). */
  get family(): string {
    return this.info.family;
  }

  /** clip.projector_type of the file. */
  get projectorType(): string {
    return this.info.projectorType;
  }

  /** Side of the square input, in pixels. */
  get imageSize(): number {
    return this.info.imageSize;
  }

  /** Rows of the features: one per patch. */
  get nTokens(): number {
    return this.info.nPatches;
  }

  /** Width of the features (the vision width times the stacked feature layers). */
  get nEmbd(): number {
    return this.info.nEmbdFeatures;
  }

  /** How this model's images are resized, padded and normalised (libmtmd's parameters). */
  get preprocessParams(): PreprocessParams {
    const p = this.info.preprocess;
    return { ...p, padColor: [...p.padColor], mean: [...p.mean], std: [...p.std] };
  }

  /** The pixels this encoder would see for `image`: planar [3][imageSize][imageSize]. */
  async preprocess(image: Image, options: EncodeOptions = {}): Promise<PreprocessedImage> {
    if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
    const signal = checkSignal(options.signal);
    const native = this.native;
    const data = await runNative(
      () => native.preprocess(image.data, image.width, image.height),
      signal,
    );
    if (signal?.aborted) throw signal.reason;
    return { size: this.imageSize, data };
  }

  /** Preprocesses and encodes an image into features `[nTokens, nEmbd]`. */
  async encode(image: Image, options: EncodeOptions = {}): Promise<Features> {
    if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    return this.#serial.run(async () => {
      const r = await runNative(() => native.encode(image.data, image.width, image.height), signal);
      const features = new Features(r.features, {
        preprocessMs: r.preprocessMs,
        encodeMs: r.encodeMs,
      });
      if (signal?.aborted) {
        features.dispose();
        throw signal.reason;
      }
      return features;
    });
  }

  /** Encodes pixels that were already preprocessed (planar [3][imageSize][imageSize]). */
  async encodePreprocessed(
    pixels: PreprocessedImage | Float32Array,
    options: EncodeOptions = {},
  ): Promise<Features> {
    const data = pixels instanceof Float32Array ? pixels : pixels?.data;
    if (!(data instanceof Float32Array) || data.length !== 3 * this.imageSize * this.imageSize) {
      throw new MmInvalidArgumentError(
        'pixels',
        `must hold 3 x ${this.imageSize} x ${this.imageSize} f32 values`,
      );
    }
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    return this.#serial.run(async () => {
      const r = await runNative(() => native.encodePixels(data), signal);
      const features = new Features(r.features, { preprocessMs: 0, encodeMs: r.encodeMs });
      if (signal?.aborted) {
        features.dispose();
        throw signal.reason;
      }
      return features;
    });
  }

  /**
   * Frees the encoder: later calls are MM_DISPOSED (a second dispose too); encodes already called
   * still complete, and the native memory is released after them.
   */
  dispose(): void {
    const n = this.native;
    this.#native = undefined;
    void this.#serial.run(async () => n.dispose());
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}
