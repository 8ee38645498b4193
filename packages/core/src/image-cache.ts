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

/** An image's embeddings in the LLM's space, as the projector gave them. */
export interface CachedImage {
  embeddings: Float32Array;
  /** Whether the LLM attends causally inside the image span. */
  causal: boolean;
}

/** Least-recently-used map of image embeddings, bounded in bytes. */
export class EmbeddingCache {
  readonly #entries = new Map<string, CachedImage>();
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

  get(key: string): CachedImage | undefined {
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

  set(key: string, value: CachedImage): void {
    if (value.embeddings.byteLength > this.maxBytes) return;
    const old = this.#entries.get(key);
    if (old) {
      this.#bytes -= old.embeddings.byteLength;
      this.#entries.delete(key);
    }
    this.#entries.set(key, value);
    this.#bytes += value.embeddings.byteLength;
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= v.embeddings.byteLength;
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
