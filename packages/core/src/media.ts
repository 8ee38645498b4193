import type { Backbone, Context, ScheduleItem } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import { spanPositionIds, spanPositions } from '@mm/projectors';
import { type CachedMedia, type MediaChunk, NativeRowsChunk } from './image-cache.js';
import type { MediaRef, Message } from './messages.js';
import { checkRoom, type MediaPromptInfo, tokenizePrompt } from './prompt.js';

/**
 * The media layer: a conversation becomes a list of prompt chunks, text tokens and media spans
 * of any modality, each span with the KV positions it occupies (M-RoPE: fewer than its rows) and
 * its attention (causal or not); the chunks are decoded into a context, reusing what it already
 * holds. MultimodalModel and @mm/server both build and decode prompts through here.
 */

export type PromptChunk =
  | { kind: 'text'; tokens: Int32Array }
  | {
      kind: 'media';
      /** Identifies the content (the decoded pixels) and the chunk within the part. */
      key: string;
      chunk: MediaChunk;
      /** KV positions the span occupies. */
      nPos: number;
    };

export interface PreparedPrompt {
  /** In decode order; the last one is text. */
  chunks: PromptChunk[];
  /** KV positions of the whole prompt (where the first generated token goes). */
  positions: number;
  /** KV cells it uses (text tokens + media rows). */
  cells: number;
  /** Media parts, their rows, and how many came from the embedding cache. */
  media: number;
  mediaTokens: number;
  cacheHits: number;
  /** Decode + encode + project of the parts that missed the cache, ms (0 when all hit). */
  encodeMs: number;
  /**
   * The path the media parts took (when there were any): one of MediaPath, or 'mixed' when some
   * went through mm's own graphs and some through libmtmd (e.g. own-graph pictures with sound
   * through libmtmd).
   */
  mediaPath?: MediaPath | 'mixed';
}

/**
 * How a model's pictures (or sounds) become chunks: mm's own encoder → projector graphs, or
 * libmtmd's fused encoder + projector (the projector types mm has no own graph for).
 */
export type MediaPath = 'own graph' | 'libmtmd (fused)';

/**
 * A media part's chunks with the key of its content; `cached` when no encoder ran; `path` the way
 * it was (or, cached, would have been) embedded.
 */
export type EmbeddedMedia = CachedMedia & { key: string; cached: boolean; path?: MediaPath };

/** What preparePrompt needs of a loaded model. */
export interface PromptSource {
  readonly backbone: Backbone;
  /** The loaded media encoder's prompt facts; undefined without one. */
  readonly mediaPromptInfo: MediaPromptInfo | undefined;
  /** Render the chat template with the Jinja engine (llama-server) instead of llama-mtmd-cli's way. */
  readonly jinja?: boolean;
  /** How its pictures become chunks (own graphs or libmtmd fused); parts may say their own. */
  readonly mediaPath?: MediaPath | undefined;
  embedMedia(ref: MediaRef, options: { signal?: AbortSignal }): Promise<EmbeddedMedia>;
}

/** True when the backbone places media spans with M-RoPE (Qwen2-VL family). */
export function usesMrope(backbone: Backbone): boolean {
  return backbone.info.nPosPerEmbd === 4;
}

/**
 * Tokenizes a conversation and embeds its media parts (from the cache when the same content was
 * seen). `room.positions` bounds the KV cells (MM_OUT_OF_CONTEXT, checked before any media is
 * encoded when the token count is known up front, and again with the real spans).
 */
export async function preparePrompt(
  source: PromptSource,
  messages: readonly Message[],
  room: { positions: number; what: string },
  signal?: AbortSignal,
): Promise<PreparedPrompt> {
  const tp = tokenizePrompt(source.backbone, messages, source.mediaPromptInfo, room, {
    jinja: source.jinja,
  });
  const mrope = usesMrope(source.backbone);
  const chunks: PromptChunk[] = [];
  const pushText = (tokens: Int32Array) => {
    if (tokens.length === 0) return;
    const prev = chunks[chunks.length - 1];
    if (prev?.kind === 'text') {
      const merged = new Int32Array(prev.tokens.length + tokens.length);
      merged.set(prev.tokens, 0);
      merged.set(tokens, prev.tokens.length);
      prev.tokens = merged;
    } else chunks.push({ kind: 'text', tokens });
  };
  const t0 = performance.now();
  let hits = 0;
  let mediaTokens = 0;
  const paths = new Set<MediaPath>();
  for (let i = 0; i < tp.texts.length; i++) {
    pushText(tp.texts[i] as Int32Array);
    const ref = tp.media[i];
    if (!ref) continue;
    const e = await source.embedMedia(ref, { signal });
    if (e.cached) hits++;
    const path = e.path ?? source.mediaPath;
    if (path !== undefined) paths.add(path);
    e.chunks.forEach((chunk, j) => {
      const before = e.between[j];
      if (before) pushText(before);
      mediaTokens += chunk.nTokens;
      chunks.push({
        kind: 'media',
        key: `${e.key}/${j}`,
        chunk,
        nPos: spanPositions(chunk, mrope),
      });
    });
    const after = e.between[e.chunks.length];
    if (after) pushText(after);
  }
  const encodeMs = hits === tp.media.length && hits > 0 ? 0 : performance.now() - t0;
  let positions = 0;
  let cells = 0;
  for (const c of chunks) {
    positions += c.kind === 'text' ? c.tokens.length : c.nPos;
    cells += c.kind === 'text' ? c.tokens.length : c.chunk.nTokens;
  }
  checkRoom(cells, room, { textTokens: tp.textTokens, media: tp.media.length, mediaTokens });
  return {
    chunks,
    positions,
    cells,
    media: tp.media.length,
    mediaTokens,
    cacheHits: hits,
    encodeMs,
    ...(paths.size > 0 && {
      mediaPath: paths.size === 1 ? ([...paths][0] as MediaPath) : ('mixed' as const),
    }),
  };
}

/**
 * Positions at the start of `next` that a context holding `held` (the chunks decoded before)
 * already has: equal text tokens, and whole media spans with the same key.
 */
export function reusablePrefix(held: readonly PromptChunk[], next: readonly PromptChunk[]): number {
  let keep = 0;
  for (let i = 0; i < next.length && i < held.length; i++) {
    const a = next[i] as PromptChunk;
    const b = held[i] as PromptChunk;
    if (a.kind === 'media' && b.kind === 'media' && a.key === b.key) {
      keep += a.nPos;
      continue;
    }
    if (a.kind === 'text' && b.kind === 'text') {
      let k = 0;
      while (k < a.tokens.length && k < b.tokens.length && a.tokens[k] === b.tokens[k]) k++;
      keep += k;
      if (k === a.tokens.length && k === b.tokens.length) continue;
    }
    break;
  }
  return keep;
}

/** Each chunk with the position it starts at, from the one that reaches position `from` on. */
function* chunksFrom(
  chunks: readonly PromptChunk[],
  from: number,
): Generator<{ c: PromptChunk; pos: number; skip: number }> {
  let pos = 0;
  for (const c of chunks) {
    const n = c.kind === 'text' ? c.tokens.length : c.nPos;
    if (pos + n > from) {
      const skip = Math.max(0, from - pos);
      if (c.kind === 'media' && skip !== 0)
        throw new MmError(ErrorCode.MM_INTERNAL, 'a media span was cut by the KV reuse');
      yield { c, pos, skip };
    }
    pos += n;
  }
}

/**
 * Decodes `chunks` into sequence `seq` from position `from` on (what is before is already in the
 * KV cache; `from` must not cut a media span). Media spans go with their positions (M-RoPE (t, y,
 * x) from the grid) and their attention. Returns the position after the last chunk.
 */
export async function decodeChunks(
  ctx: Context,
  chunks: readonly PromptChunk[],
  options: { seq?: number; from?: number; signal?: AbortSignal },
): Promise<number> {
  const seq = options.seq ?? 0;
  const mrope = usesMrope(ctx.backbone);
  for (const { c, pos, skip } of chunksFrom(chunks, options.from ?? 0)) {
    if (c.kind === 'text') {
      await ctx.decode({
        tokens: c.tokens.subarray(skip),
        pos: pos + skip,
        seq,
        logits: 'none',
        signal: options.signal,
      });
    } else {
      // pictures: M-RoPE (t, y, x) from the grid; sound: one line of positions (1-D sections)
      await ctx.decode({
        embeddings: c.chunk.rows,
        positions: mrope ? spanPositionIds(c.chunk, pos, true) : undefined,
        nPos: c.nPos,
        causal: c.chunk.causal,
        pos,
        seq,
        logits: 'none',
        signal: options.signal,
      });
    }
  }
  return chunks.reduce((n, c) => n + (c.kind === 'text' ? c.tokens.length : c.nPos), 0);
}

/**
 * The prompt from position `from` on as items for @mm/backbone-gguf's `Scheduler` (each at its
 * explicit positions, as decodeChunks decodes them); `from` must not cut a media span.
 */
export function scheduleItems(
  backbone: Backbone,
  chunks: readonly PromptChunk[],
  from: number,
): ScheduleItem[] {
  const mrope = usesMrope(backbone);
  const items: ScheduleItem[] = [];
  for (const { c, pos, skip } of chunksFrom(chunks, from)) {
    if (c.kind === 'text') items.push({ tokens: c.tokens.subarray(skip), pos0: pos + skip });
    else
      items.push({
        // a native chunk's rows as they are (no ArrayBuffer for V8 to count)
        ...(c.chunk instanceof NativeRowsChunk
          ? { embeddings: c.chunk.tensor, nEmbd: c.chunk.byteLength / 4 / c.chunk.nTokens }
          : { embeddings: c.chunk.rows, nEmbd: c.chunk.rows.length / c.chunk.nTokens }),
        positions: mrope ? spanPositionIds(c.chunk, pos, true) : undefined,
        causal: c.chunk.causal,
        pos0: pos,
      });
  }
  return items;
}
