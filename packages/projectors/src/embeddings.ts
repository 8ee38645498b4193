import { MmDisposedError } from '@mm/errors';
import { callNative, type NativeTensor } from '@mm/native';

/**
 * The projector's output in the LLM's embedding space: `[nTokens, nEmbd]` f32 rows, held by
 * native code, with how the LLM must place them. Feed it to a backbone (it calls
 * `toFloat32Array()`), then `dispose()` it (or `using`).
 */
export class Embeddings {
  readonly nTokens: number;
  readonly nEmbd: number;
  /** Position scheme of the image span in the LLM: one position per token, in order. */
  readonly positions = 'linear' as const;
  /** Whether the LLM attends causally inside the image span (true for these families). */
  readonly causal = true;
  /** Projector time, ms. */
  readonly projectMs: number;
  #native: NativeTensor | undefined;

  /** @internal */
  constructor(native: NativeTensor, projectMs = 0) {
    const info = callNative(() => native.info());
    this.nTokens = info.nTokens;
    this.nEmbd = info.nEmbd;
    this.projectMs = projectMs;
    this.#native = native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  private get native(): NativeTensor {
    if (!this.#native) throw new MmDisposedError('Embeddings');
    return this.#native;
  }

  /** A copy of the rows, `[nTokens][nEmbd]` (one memcpy). */
  toFloat32Array(): Float32Array {
    const n = this.native;
    return callNative(() => n.toFloat32Array());
  }

  /** Frees the native memory. A second call is MM_DISPOSED. */
  dispose(): void {
    const n = this.native;
    this.#native = undefined;
    n.dispose();
  }

  [Symbol.dispose](): void {
    if (!this.disposed) this.dispose();
  }
}
