import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { callNative, loadAddon, runNative } from '@mm/native';
import { checkPath, readFileBounded, readSmallFileSync, toBytes } from './options.js';

/** The default pixel limit: images with more pixels are MM_IMAGE_TOO_LARGE before decoding. */
export const DEFAULT_MAX_PIXELS = 50_000_000;
/** The default limit on an image file's size in bytes. */
export const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024;

export interface ImageDecodeOptions {
  /** Largest width * height accepted, checked on the header before decoding (default 50 M). */
  maxPixels?: number;
  signal?: AbortSignal;
}

export interface ImageFileOptions extends ImageDecodeOptions {
  /** Largest file accepted, in bytes (default 256 MiB). */
  maxFileBytes?: number;
}

export interface ImageHeader {
  width: number;
  height: number;
  /** 'png' | 'jpeg' | 'gif' | 'bmp' | 'pnm' | 'hdr' */
  format: string;
}

function checkMaxPixels(v: number | undefined): number {
  const m = v ?? DEFAULT_MAX_PIXELS;
  if (typeof m !== 'number' || !(m >= 1)) {
    throw new MmInvalidArgumentError('maxPixels', `must be a number >= 1, got ${String(m)}`);
  }
  return m;
}

/** Pictures up to this size are decoded on the calling thread (well under a millisecond). */
const SMALL_IMAGE_BYTES = 64 * 1024;
const SMALL_IMAGE_PIXELS = 128 * 128;

/**
 * A decoded image: 8-bit RGB, row-major, `width * height * 3` bytes. Decoding is native
 * (stb_image, the decoder libmtmd uses) and runs off the JS thread; the size is checked on the
 * header before anything is decoded. PNG, JPEG (baseline and progressive), GIF (first frame),
 * BMP, PNM and HDR are read; corrupt or truncated data is MM_IMAGE_DECODE.
 */
export class Image {
  readonly width: number;
  readonly height: number;
  /** RGB bytes, `width * height * 3`. */
  readonly data: Uint8Array;

  private constructor(width: number, height: number, data: Uint8Array) {
    this.width = width;
    this.height = height;
    this.data = data;
  }

  /** Reads and decodes an image file. */
  static async fromFile(path: string, options: ImageFileOptions = {}): Promise<Image> {
    checkPath(path);
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const maxBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    // a small file is read here, as a small picture is decoded here (see fromBuffer)
    const small = readSmallFileSync(path, Math.min(maxBytes, SMALL_IMAGE_BYTES));
    if (small) return Image.fromBuffer(small, options);
    const bytes = await readFileBounded(
      path,
      maxBytes,
      (size) =>
        new MmError(
          ErrorCode.MM_IMAGE_TOO_LARGE,
          `'${path}' is ${size} bytes, more than the limit of ${maxBytes}`,
          { details: { size, maxFileBytes: maxBytes } },
        ),
    );
    return Image.fromBuffer(bytes, options);
  }

  /** Decodes an encoded image held in memory. */
  static async fromBuffer(
    buffer: Uint8Array | ArrayBuffer | ArrayBufferView,
    options: ImageDecodeOptions = {},
  ): Promise<Image> {
    const bytes = toBytes(buffer);
    const maxPixels = checkMaxPixels(options.maxPixels);
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const addon = loadAddon();
    if (bytes.length <= SMALL_IMAGE_BYTES) {
      // A small picture decodes on this thread: the hop to a worker and back costs more.
      let header: { width: number; height: number } | undefined;
      try {
        header = addon.probeImage(bytes);
      } catch {
        // not a header stb reads: the worker's decode gives the typed error
      }
      if (header && header.width * header.height <= SMALL_IMAGE_PIXELS) {
        const img = callNative(() => addon.decodeImageSync(bytes, maxPixels));
        return new Image(img.width, img.height, img.data);
      }
    }
    const img = await runNative(() => addon.decodeImage(bytes, maxPixels), signal);
    if (signal?.aborted) throw signal.reason;
    return new Image(img.width, img.height, img.data);
  }

  /** Wraps raw 8-bit RGB pixels (copied), row-major, `width * height * 3` bytes. */
  static fromRGB(
    data: Uint8Array | Uint8ClampedArray | ArrayLike<number>,
    width: number,
    height: number,
    options: { maxPixels?: number } = {},
  ): Image {
    if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
      throw new MmInvalidArgumentError(
        'width/height',
        `must be positive integers, got ${String(width)}x${String(height)}`,
      );
    }
    const maxPixels = checkMaxPixels(options.maxPixels);
    if (width * height > maxPixels) {
      throw new MmError(
        ErrorCode.MM_IMAGE_TOO_LARGE,
        `image is ${width}x${height}, more than the limit of ${maxPixels} pixels`,
        { details: { width, height, maxPixels } },
      );
    }
    if (data === null || typeof data !== 'object' || typeof data.length !== 'number') {
      throw new MmInvalidArgumentError('data', 'must be a Uint8Array of RGB bytes');
    }
    if (data.length !== width * height * 3) {
      throw new MmInvalidArgumentError(
        'data',
        `has ${data.length} bytes, width * height * 3 = ${width * height * 3}`,
      );
    }
    return new Image(width, height, Uint8Array.from(data));
  }

  /** Reads the format and size from an encoded image's header, without decoding it. */
  static probe(buffer: Uint8Array | ArrayBuffer | ArrayBufferView): ImageHeader {
    const bytes = toBytes(buffer);
    return callNative(() => loadAddon().probeImage(bytes));
  }
}
