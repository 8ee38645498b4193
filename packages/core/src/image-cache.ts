import { createHash } from 'node:crypto';

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
    v.chunks.reduce((n, c) => n + c.rows.byteLength, 0) +
    v.between.reduce((n, t) => n + t.byteLength, 0)
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

  set(key: string, value: CachedMedia): void {
    if (bytesOf(value) > this.maxBytes) return;
    const old = this.#entries.get(key);
    if (old) {
      this.#bytes -= bytesOf(old);
      this.#entries.delete(key);
    }
    this.#entries.set(key, value);
    this.#bytes += bytesOf(value);
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= bytesOf(v);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
