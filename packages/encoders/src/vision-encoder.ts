import { checkSignal, MmDisposedError, MmInvalidArgumentError, SerialQueue } from '@mm/errors';
import {
  callNative,
  loadAddon,
  type NativeSliceLayout,
  type NativeTensor,
  type NativeVisionEncoder,
  type NativeVisionEncoderInfo,
  runNative,
} from '@mm/native';
import { Features } from './features.js';
import { Image } from './image.js';
import { type ComputeOptions, encoderLoadArgs } from './options.js';
import type { PreprocessedImage, PreprocessParams } from './preprocess.js';

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
 * How a tiling family (LLaVA-1.6 anyres, MiniCPM-V slices, Idefics3 tiles) cut a picture: its
 * chunks are the overview first (when `hasOverview`), then `gridY` rows of `gridX` slices,
 * row-major, as libmtmd's preprocessor gives them. All zero / false for a one-chunk picture.
 */
export type SliceLayout = NativeSliceLayout;

/** A picture's chunks: their features and how the picture was cut. */
export interface EncodedMedia {
  features: Features[];
  layout: SliceLayout;
}

let nativeOfEncoder: (e: VisionEncoder) => NativeVisionEncoder;

/**
 * @internal The native handle of a VisionEncoder (MM_DISPOSED after dispose()), for @mm/projectors'
 * fused encode + project.
 */
export function nativeVisionEncoder(encoder: VisionEncoder): NativeVisionEncoder {
  if (!(encoder instanceof VisionEncoder)) {
    throw new MmInvalidArgumentError('encoder', 'must be a VisionEncoder from @mm/encoders');
  }
  return nativeOfEncoder(encoder);
}

/**
 * The modality encoder of an mmproj (llama.cpp's `v.*` tensors) over ggml, chosen by
 * `clip.projector_type`: CLIP ViT (mlp, mlp_norm, ldp, ldpv2), the Qwen2/2.5-VL ViT
 * (qwen2vl_merger, qwen2.5vl_merger: dynamic resolution, 2-D RoPE, windows), SigLIP (gemma3;
 * idefics3, whose pictures are cut into tiles plus a global image, one chunk each) or MiniCPM-V's
 * ViT (resampler: an overview and slices whose sizes follow the picture, one chunk each).
 * Its output, `Features` (one per chunk of the picture), goes to a `Projector` (@mm/projectors).
 * Calls run off the JS thread, one at a time per encoder.
 */
export class VisionEncoder {
  static {
    nativeOfEncoder = (e) => e.native;
  }
  readonly path: string;
  readonly info: Readonly<VisionEncoderInfo>;
  #native: NativeVisionEncoder | undefined;
  readonly #serial = new SerialQueue();

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
    const { signal, args: opts } = encoderLoadArgs(mmproj, options);
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

  /** Side of the square input, in pixels (dynamic-resolution families: a typical side). */
  get imageSize(): number {
    return this.info.imageSize;
  }

  /** Rows of the features: one per patch (dynamic-resolution families: for an imageSize square). */
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

  /**
   * The pixels this encoder would see for `image`, planar [3][height][width]: one input per chunk
   * of the picture (every family mm runs today makes one).
   */
  async preprocessChunks(image: Image, options: EncodeOptions = {}): Promise<PreprocessedImage[]> {
    return (await this.slice(image, options)).inputs;
  }

  /**
   * The encoder inputs of `image` with the layout a tiling family cut it into (the overview
   * first, then the slices row by row), as libmtmd's preprocessor gives them.
   */
  async slice(
    image: Image,
    options: EncodeOptions = {},
  ): Promise<{ inputs: PreprocessedImage[]; layout: SliceLayout }> {
    if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
    const signal = checkSignal(options.signal);
    const native = this.native;
    const out = await runNative(
      () => native.preprocess(image.data, image.width, image.height),
      signal,
    );
    if (signal?.aborted) throw signal.reason;
    return {
      inputs: out.inputs.map((p) => ({
        width: p.width,
        height: p.height,
        size: p.width,
        data: p.data,
      })),
      layout: { ...out.layout },
    };
  }

  /** preprocessChunks() for a picture that makes one chunk; an array when it makes several. */
  async preprocess(
    image: Image,
    options: EncodeOptions = {},
  ): Promise<PreprocessedImage | PreprocessedImage[]> {
    const all = await this.preprocessChunks(image, options);
    return all.length === 1 ? (all[0] as PreprocessedImage) : all;
  }

  /**
   * Preprocesses and encodes an image: `Features` `[nTokens, nEmbd]`, or an array of them (in
   * libmtmd's chunk order) when the picture yields several chunks. `encodeChunks` always gives
   * the array.
   */
  async encode(image: Image, options: EncodeOptions = {}): Promise<Features | Features[]> {
    const all = await this.encodeChunks(image, options);
    return all.length === 1 ? (all[0] as Features) : all;
  }

  /** Preprocesses and encodes an image into one Features per chunk, in libmtmd's order. */
  async encodeChunks(image: Image, options: EncodeOptions = {}): Promise<Features[]> {
    return (await this.encodeMedia(image, options)).features;
  }

  /** encodeChunks() with the layout of a tiled picture (see slice()). */
  async encodeMedia(image: Image, options: EncodeOptions = {}): Promise<EncodedMedia> {
    if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    return this.#serial.run(async () => {
      const r = await runNative(() => native.encode(image.data, image.width, image.height), signal);
      const timings = { preprocessMs: r.preprocessMs, encodeMs: r.encodeMs };
      const features = r.features.map((t) => new Features(t, timings));
      if (signal?.aborted) {
        for (const f of features) f.dispose();
        throw signal.reason;
      }
      return { features, layout: { ...r.layout } };
    });
  }

  /**
   * Encodes many pictures in one native call (no hop back to JS between them) into one
   * Float32Array: each picture's `[nTokens][nEmbd]` feature rows, in order. For families that
   * give one feature map per picture (MM_UNSUPPORTED_FAMILY for tiled ones) and pictures that give
   * one shape (MM_INVALID_ARGUMENT otherwise). Used to cache features for projector training.
   */
  async encodeMany(
    images: readonly Image[],
    options: EncodeOptions = {},
  ): Promise<{ rows: Float32Array; nTokens: number; nEmbd: number; encodeMs: number }> {
    if (!Array.isArray(images) || images.some((i) => !(i instanceof Image))) {
      throw new MmInvalidArgumentError('images', 'must be an array of Image');
    }
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    const list = images.map((i) => ({ data: i.data, width: i.width, height: i.height }));
    return this.#serial.run(() => runNative(() => native.encodeMany(list), signal));
  }

  /**
   * Encodes pixels that were already preprocessed (planar [3][height][width]; a Float32Array
   * alone is taken as an imageSize square).
   */
  async encodePreprocessed(
    pixels: PreprocessedImage | Float32Array,
    options: EncodeOptions = {},
  ): Promise<Features> {
    const data = pixels instanceof Float32Array ? pixels : pixels?.data;
    const width = pixels instanceof Float32Array ? this.imageSize : pixels?.width;
    const height = pixels instanceof Float32Array ? this.imageSize : pixels?.height;
    if (
      !(data instanceof Float32Array) ||
      !Number.isInteger(width) ||
      !Number.isInteger(height) ||
      data.length !== 3 * (width as number) * (height as number)
    ) {
      throw new MmInvalidArgumentError(
        'pixels',
        `must hold 3 x ${String(height)} x ${String(width)} f32 values`,
      );
    }
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const native = this.native;
    return this.#serial.run(async () => {
      const r = await runNative(() => native.encodePixels(data, width, height), signal);
      const features = new Features(r.features[0] as NativeTensor, {
        preprocessMs: 0,
        encodeMs: r.encodeMs,
      });
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
