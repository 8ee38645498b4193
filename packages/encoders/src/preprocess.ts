import { checkSignal, MmInvalidArgumentError } from '@mm/errors';
import { loadAddon, type NativePreprocessParams, runNative } from '@mm/native';
import { Image } from './image.js';

/** Pillow-compatible resampling filters (libmtmd's). */
export type ResizeAlgorithm = 'bilinear' | 'bicubic' | 'lanczos';
/**
 * How an image is fitted into the target: 'none' stretches; 'ceil' (libmtmd's default) and
 * 'nearest' keep the aspect ratio and pad, rounding the resized side up or to nearest.
 */
export type PadStyle = 'none' | 'ceil' | 'nearest';

/**
 * The preprocessing of one model, as libmtmd does it: resize (and pad) to a square, or with
 * `align` to the picture's aspect ratio (dynamic resolution), scale to [0, 1], normalise per
 * channel. `VisionEncoder#preprocessParams` gives a model's.
 */
export type PreprocessParams = NativePreprocessParams;

/** Pixels ready for an encoder: planar `[3][height][width]` f32. */
export interface PreprocessedImage {
  width: number;
  height: number;
  /** = width (the side of a square input; kept for fixed-size families). */
  size: number;
  data: Float32Array;
}

export interface ResizeOptions {
  resize?: ResizeAlgorithm;
  pad?: PadStyle;
  /** RGB fill of the padding (default black). */
  padColor?: [number, number, number];
  signal?: AbortSignal;
}

function checkImage(image: unknown): Image {
  if (!(image instanceof Image)) throw new MmInvalidArgumentError('image', 'must be an Image');
  return image;
}

/** libmtmd's resize: a copy when the size matches, else Pillow resampling (+ padding). */
export async function resizeImage(
  image: Image,
  width: number,
  height: number,
  options: ResizeOptions = {},
): Promise<Image> {
  checkImage(image);
  const signal = checkSignal(options.signal);
  const out = await runNative(
    () =>
      loadAddon().resizeImage(image.data, image.width, image.height, width, height, {
        resize: options.resize ?? 'bicubic',
        pad: options.pad ?? 'none',
        padColor: options.padColor ?? [0, 0, 0],
      }),
    signal,
  );
  if (signal?.aborted) throw signal.reason;
  return Image.fromRGB(out.data, out.width, out.height, { maxPixels: Number.POSITIVE_INFINITY });
}

/** Resize, pad, scale and normalise an image with explicit parameters (off the JS thread). */
export async function preprocessImage(
  image: Image,
  params: PreprocessParams,
  options: { signal?: AbortSignal } = {},
): Promise<PreprocessedImage> {
  checkImage(image);
  const signal = checkSignal(options.signal);
  const p = await runNative(
    () => loadAddon().preprocessImage(image.data, image.width, image.height, params),
    signal,
  );
  if (signal?.aborted) throw signal.reason;
  return { width: p.width, height: p.height, size: p.width, data: p.data };
}
