import { ErrorCode, MmDisposedError, MmError, MmInvalidArgumentError } from '@mm/errors';
import { callNative, loadAddon, type NativeTensor } from '@mm/native';

const nativeOf = Symbol.for('@mm/encoders.Features.native');

export interface EncodeTimings {
  /** Resize + normalise, ms (0 when the input was already preprocessed). */
  preprocessMs: number;
  /** The vision tower's graph, ms. */
  encodeMs: number;
}

/**
 * F_X, the encoder's output: `[nTokens, nEmbd]` f32 features (one row per image patch), held by
 * native code. Read them with `toFloat32Array()`; free them with `dispose()` (or `using`).
 */
export class Features {
  readonly nTokens: number;
  readonly nEmbd: number;
  /** The rows as the encoder's patch grid (nx·ny = nTokens), 0 when unknown. */
  readonly nx: number;
  readonly ny: number;
  readonly timings: Readonly<EncodeTimings>;
  #native: NativeTensor | undefined;

  /** @internal */
  constructor(native: NativeTensor, timings: EncodeTimings = { preprocessMs: 0, encodeMs: 0 }) {
    const info = callNative(() => native.info());
    this.nTokens = info.nTokens;
    this.nEmbd = info.nEmbd;
    this.nx = info.nx;
    this.ny = info.ny;
    this.timings = Object.freeze({ ...timings });
    this.#native = native;
  }

  /**
   * Features from rows computed elsewhere (copied): `data` is `[nTokens][nEmbd]`; `grid` gives
   * the patch grid for dynamic-resolution projectors (Qwen-VL).
   */
  static fromFloat32Array(
    data: Float32Array,
    nTokens: number,
    nEmbd: number,
    grid?: { nx: number; ny: number },
  ): Features {
    if (!(data instanceof Float32Array)) {
      throw new MmInvalidArgumentError('data', 'must be a Float32Array');
    }
    return new Features(
      callNative(() => loadAddon().tensorFromFloat32(data, nTokens, nEmbd, grid ?? {})),
    );
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** @internal the native handle, for @mm/projectors. */
  get [nativeOf](): NativeTensor {
    if (!this.#native) throw new MmDisposedError('Features');
    return this.#native;
  }

  /**
   * The features, row-major `[nTokens][nEmbd]`: a view of the native memory, not a copy (it
   * keeps that memory alive after `dispose()`, until the array is collected); a second call while
   * the first array lives gives a copy.
   */
  toFloat32Array(): Float32Array {
    return callNative(() => this[nativeOf].toFloat32Array());
  }

  /** Frees the native memory. A second call is MM_DISPOSED. */
  dispose(): void {
    const n = this[nativeOf];
    this.#native = undefined;
    n.dispose();
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}

/** @internal The native handle of a Features object (used by @mm/projectors). */
export function nativeFeatures(features: Features): NativeTensor {
  if (
    !(features instanceof Features) &&
    !(typeof features === 'object' && features !== null && nativeOf in features)
  ) {
    throw new MmError(
      ErrorCode.MM_INVALID_ARGUMENT,
      'features must be a Features object from @mm/encoders',
    );
  }
  return (features as Features)[nativeOf];
}
