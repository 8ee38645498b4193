import { createHash } from 'node:crypto';
import type { Embeddings } from '@mm/projectors';

/** A key for decoded pixels: the same picture from a file, a Buffer or a data URL hits. */
export function pixelKey(width: number, height: number, rgb: Uint8Array): string {
  const h = createHash('sha256');
  const dims = Buffer.alloc(8);
  dims.writeUInt32LE(width, 0);
  dims.writeUInt32LE(height, 4);
  h.update(dims);
  h.update(rgb);
  return h.digest('hex');
}

/**
 * A key for decoded audio: the same sound from a file, a Buffer, a data URL or an `Audio` (at the
 * model's rate) hits; the rate is part of it.
 */
export function audioKey(sampleRate: number, samples: Float32Array): string {
  const h = createHash('sha256');
  const head = Buffer.alloc(12);
  head.write('aud:', 0, 'latin1');
  head.writeUInt32LE(sampleRate, 4);
  head.writeUInt32LE(samples.length >>> 0, 8);
  h.update(head);
  h.update(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
  return h.digest('hex');
}

/**
 * One chunk of a media part in the LLM's space, as the projector gave it: `[nTokens][nEmbd]`
 * rows, the grid they form (M-RoPE positions come from it) and whether the LLM attends causally
 * inside the span.
 */
export interface MediaChunk {
  rows: Float32Array;
  nTokens: number;
  nx: number;
  ny: number;
  causal: boolean;
  /**
   * The rows lie on one line of positions, one each (audio): with M-RoPE every section takes the
   * same position (mtmd-helper's set_position_mrope_1d) instead of the grid's. Default false.
   */
  sequential?: boolean;
}

/**
 * A chunk whose rows stay where the projector left them, in native memory, until something
 * reads `rows` (a view then, made once). The scheduler takes them from `tensor`, without an
 * ArrayBuffer.
 *
 * Why: V8 counts every ArrayBuffer's bytes toward its old-generation limit until a full
 * collection. A CLIP-L picture's rows are 4.7 MB; as ArrayBuffers in `mm serve`'s embedding
 * cache, each new picture brought a full collection of the 10 MB heap within about one
 * request (3-15 ms pauses on a loaded 2-core machine, the event loop's largest stalls at the
 * realistic shape). Memory that only the cache can let go of is not V8's to count; once the
 * cache lets go (`EmbeddingCache` evicts, or keeps nothing), `settle()` makes the view, so V8
 * counts what its collector can then free.
 */
export class NativeRowsChunk implements MediaChunk {
  readonly nTokens: number;
  readonly nx: number;
  readonly ny: number;
  readonly causal: boolean;
  readonly sequential?: boolean;
  /** The rows' size in bytes. */
  readonly byteLength: number;
  readonly #embeddings: Embeddings;
  #view: Float32Array | undefined;

  /** Takes `embeddings` (the chunk owns it from now on; it is freed with the chunk). */
  constructor(embeddings: Embeddings) {
    this.#embeddings = embeddings;
    this.nTokens = embeddings.nTokens;
    this.nx = embeddings.nx;
    this.ny = embeddings.ny;
    this.causal = embeddings.causal;
    if (embeddings.sequential) this.sequential = true;
    this.byteLength = embeddings.nTokens * embeddings.nEmbd * 4;
  }

  /** The rows, `[nTokens][nEmbd]`: a view of the native memory, made on the first read. */
  get rows(): Float32Array {
    this.#view ??= this.#embeddings.toFloat32Array();
    return this.#view;
  }

  /** Whether `rows` was read (or the chunk settled): V8 counts the rows from then on. */
  get viewed(): boolean {
    return this.#view !== undefined;
  }

  /** The native rows, for `ScheduleItem.embeddings`; the view's, if one was made. */
  get tensor(): Float32Array | Embeddings['nativeTensor'] {
    return this.#view ?? this.#embeddings.nativeTensor;
  }

  /** Makes the view now, so that V8 counts the rows from here on (see the class). */
  settle(): void {
    void this.rows;
  }
}

/** Hands every native chunk of `value` over to V8's count (`NativeRowsChunk.settle`). */
export function settleMedia(value: CachedMedia): void {
  for (const c of value.chunks) if (c instanceof NativeRowsChunk) c.settle();
}

/**
 * A media part's chunks in prompt order (libmtmd's), with the text tokens libmtmd puts between
 * them when the part is a tiled picture: `between[i]` precedes `chunks[i]`, `between[n]` follows
 * the last chunk; empty (no text) otherwise.
 */
export interface CachedMedia {
  chunks: MediaChunk[];
  between: Int32Array[];
}

/** @deprecated the media cache holds chunks of any modality: use CachedMedia. */
export type CachedImage = CachedMedia;

function bytesOf(v: CachedMedia): number {
  return (
    v.chunks.reduce(
      (n, c) => n + (c instanceof NativeRowsChunk ? c.byteLength : c.rows.byteLength),
      0,
    ) + v.between.reduce((n, t) => n + t.byteLength, 0)
  );
}

/** Least-recently-used map of media embeddings, keyed by decoded content, bounded in bytes. */
export class EmbeddingCache {
  readonly #entries = new Map<string, CachedMedia>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): CachedMedia | undefined {
    const v = this.#entries.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.#entries.delete(key);
    this.#entries.set(key, v);
    return v;
  }

  /**
   * Keeps `value` (unless it alone is over `maxBytes`), evicting the least recently used. What
   * is not kept, or is evicted, is settled (`settleMedia`): its rows are V8's to count.
   */
  set(key: string, value: CachedMedia): void {
    if (bytesOf(value) > this.maxBytes) {
      settleMedia(value);
      return;
    }
    const old = this.#entries.get(key);
    if (old) {
      this.#bytes -= bytesOf(old);
      this.#entries.delete(key);
      if (old !== value) settleMedia(old);
    }
    this.#entries.set(key, value);
    this.#bytes += bytesOf(value);
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= bytesOf(v);
      settleMedia(v);
    }
  }

  clear(): void {
    for (const v of this.#entries.values()) settleMedia(v);
    this.#entries.clear();
    this.#bytes = 0;
  }
}
