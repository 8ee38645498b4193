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
  /**
   * The rows as a row-major token grid (nx·ny = nTokens): M-RoPE text models (Qwen2-VL) place
   * row r, column c at (t, y, x) = (pos0, pos0 + r, pos0 + c). Not a grid: nx = nTokens, ny = 1.
   */
  readonly nx: number;
  readonly ny: number;
  /** Whether the LLM attends causally inside the span (false for Gemma 3: the span sees itself whole). */
  readonly causal: boolean;
  /**
   * The rows lie on one line of positions (an audio projector's output): one KV position each, the
   * same in every M-RoPE section.
   */
  readonly sequential: boolean;
  /** Projector time, ms. */
  readonly projectMs: number;
  #native: NativeTensor | undefined;

  /** @internal */
  constructor(native: NativeTensor, projectMs = 0, sequential = false) {
    const info = callNative(() => native.info());
    this.nTokens = info.nTokens;
    this.nEmbd = info.nEmbd;
    this.nx = info.nx > 0 ? info.nx : info.nTokens;
    this.ny = info.ny > 0 ? info.ny : 1;
    this.causal = info.causal;
    this.sequential = sequential;
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

  /**
   * KV positions the span occupies in a text model: nTokens with linear positions (and for
   * sequential rows), max(nx, ny) with M-RoPE (libmtmd's mtmd_image_tokens_get_n_pos).
   */
  nPos(mrope: boolean): number {
    return spanPositions(this, mrope);
  }

  /**
   * The span's positions from `pos0`, in the backbone's layout: `[t..., y..., x..., z...]` (4·n)
   * for M-RoPE models, else pos0, pos0 + 1, ... (n).
   */
  positions(pos0: number, mrope: boolean): Int32Array {
    return spanPositionIds(this, pos0, mrope);
  }

  /**
   * The rows, row-major `[nTokens][nEmbd]`: a view of the native memory, not a copy (it keeps
   * that memory alive after `dispose()`, until the array itself is collected). A second call
   * while the first array lives gives a copy. The scheduler takes such a view's rows without
   * copying them, so writing into it after a prompt was submitted changes what is decoded.
   */
  toFloat32Array(): Float32Array {
    const n = this.native;
    return callNative(() => n.toFloat32Array());
  }

  /**
   * @internal The native tensor, for a backbone's scheduler (`ScheduleItem.embeddings`), which
   * shares its rows without an ArrayBuffer. MM_DISPOSED after `dispose()`.
   */
  get nativeTensor(): NativeTensor {
    return this.native;
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

/** The shape of a media span: rows as a grid, and whether the LLM attends causally inside it. */
export interface SpanLayout {
  nTokens: number;
  nx: number;
  ny: number;
  /**
   * The rows lie on one line of positions (audio): one position each, the same in every M-RoPE
   * section (mtmd-helper's set_position_mrope_1d), whatever the grid. Default false.
   */
  sequential?: boolean;
}

/** KV positions a span occupies (see Embeddings#nPos). */
export function spanPositions(span: SpanLayout, mrope: boolean): number {
  return mrope && !span.sequential ? Math.max(span.nx, span.ny) : span.nTokens;
}

/** A span's positions from pos0 (see Embeddings#positions). */
export function spanPositionIds(span: SpanLayout, pos0: number, mrope: boolean): Int32Array {
  const n = span.nTokens;
  if (!mrope) {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = pos0 + i;
    return out;
  }
  const out = new Int32Array(4 * n);
  if (span.sequential) {
    for (let i = 0; i < n; i++) {
      out[i] = out[n + i] = out[2 * n + i] = out[3 * n + i] = pos0 + i;
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    out[i] = pos0;
    out[n + i] = pos0 + Math.floor(i / span.nx);
    out[2 * n + i] = pos0 + (i % span.nx);
    out[3 * n + i] = 0;
  }
  return out;
}
