import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spanPositionIds } from '@mm/projectors';
import {
  compareVectors,
  type MtmdLayoutResult,
  type MtmdMediaChunk,
  mtmdCli,
  runMtmdLayout,
  tinyShapesPaths,
} from '@mm/testing';
import { expect } from 'vitest';
import type { ChatResult } from './chat.js';
import { type PreparedPrompt, type PromptChunk, preparePrompt, usesMrope } from './media.js';
import { flattenMessages, MEDIA_MARKER, type Message } from './messages.js';
import type { MultimodalModel } from './multimodal-model.js';

export const tiny = tinyShapesPaths();
export const testsetDir = tiny.testset;

export interface AnswerItem {
  image: string;
  questions: { kind: string; question: string; answer: string }[];
}

export function answers(dir: string): AnswerItem[] {
  return JSON.parse(readFileSync(join(dir, 'answers.json'), 'utf8')).items;
}

export function ask(image: string, question: string) {
  return [
    {
      role: 'user',
      content: [
        { type: 'image' as const, image },
        { type: 'text' as const, text: question },
      ],
    },
  ];
}

/** A text model and its mmproj, as the tiny fixture pairs of @mm/testing give them. */
export interface ModelFiles {
  llm: string;
  mmproj: string;
}

/** One media chunk of ours next to libmtmd's, and how close their embeddings are. */
export interface MediaMatch {
  /** Where the chunk stands in the prompt. */
  index: number;
  ours: Extract<PromptChunk, { kind: 'media' }>;
  ref: MtmdMediaChunk;
  maxAbsDiff: number;
  cosine: number;
}

export interface LayoutMatch {
  ours: PreparedPrompt;
  ref: MtmdLayoutResult;
  /** The media chunks, in prompt order. */
  media: MediaMatch[];
  /** Over all media chunks: the largest max |diff| and the smallest cosine. */
  worst: number;
  cosMin: number;
  /** Our text tokens, all text chunks in order. */
  text: number[];
}

/**
 * Asks `question` about `image` and checks that our prompt is laid out as mtmd_tokenize lays it
 * out: the same chunk kinds in the same order, the same text tokens, and for each media chunk the
 * same nTokens / nPos / causality (and nx / ny with M-RoPE), the same position ids and embeddings
 * within max |diff| 1e-3 and cosine 0.9999. With a `label`, prints each media chunk's figures.
 */
export async function expectLayoutLikeMtmd(
  model: MultimodalModel,
  files: ModelFiles,
  image: string,
  options: { question?: string; label?: string } = {},
): Promise<LayoutMatch> {
  const messages = ask(image, options.question ?? 'What is in the picture?');
  return expectPromptLayoutLikeMtmd(model, files, messages, [image], options);
}

/**
 * expectLayoutLikeMtmd for any conversation: `media` are the files of its media parts (pictures
 * or sounds), in order, as libmtmd reads them.
 */
export async function expectPromptLayoutLikeMtmd(
  model: MultimodalModel,
  files: ModelFiles,
  messages: Message[],
  mediaFiles: string[],
  options: { label?: string } = {},
): Promise<LayoutMatch> {
  const prompt = model.backbone.applyChatTemplate(flattenMessages(messages).messages, {
    addGenerationPrompt: true,
    jinja: model.jinja,
  });
  expect(prompt).toContain(MEDIA_MARKER);
  const ref = await runMtmdLayout({
    mmproj: files.mmproj,
    textModel: files.llm,
    prompt,
    images: mediaFiles,
    threads: 2,
  });
  model.imageCache.clear();
  const ours = await preparePrompt(model, messages, {
    positions: model.contextSize,
    what: 'the context',
  });
  expect(ours.chunks.map((c) => c.kind)).toEqual(
    ref.chunks.map((c) => (c.type === 'text' ? 'text' : 'media')),
  );
  const mrope = usesMrope(model.backbone);
  const media: MediaMatch[] = [];
  const text: number[] = [];
  let pos = 0;
  ours.chunks.forEach((c, index) => {
    const r = ref.chunks[index]!;
    expect(r.pos0).toBe(pos);
    if (c.kind === 'text' && r.type === 'text') {
      expect(Array.from(c.tokens)).toEqual(r.tokens);
      text.push(...c.tokens);
      pos += c.tokens.length;
      return;
    }
    if (c.kind !== 'media' || r.type === 'text') throw new Error('chunk kinds differ');
    expect(c.chunk.rows.length).toBe(r.embd.length);
    const { maxAbsDiff, cosine } = compareVectors(c.chunk.rows, r.embd);
    if (options.label) {
      const { nTokens, nx, ny, rows } = c.chunk;
      console.log(
        `${options.label}: chunk ${index}: ${nTokens} rows x ${rows.length / nTokens} (${nx}x${ny}), ${c.nPos} positions, max |diff| ${maxAbsDiff.toExponential(2)}, cosine ${cosine.toFixed(6)}`,
      );
    }
    expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
    expect(cosine).toBeGreaterThanOrEqual(0.9999);
    expect([c.chunk.nTokens, c.nPos, c.chunk.causal]).toEqual([r.nTokens, r.nPos, !r.nonCausal]);
    if (mrope && r.type === 'image') expect([c.chunk.nx, c.chunk.ny]).toEqual([r.nx, r.ny]);
    expect(c.chunk.sequential === true).toBe(r.type === 'audio');
    const ids = spanPositionIds(c.chunk, pos, mrope);
    const n = c.chunk.nTokens;
    const mine = Array.from({ length: n }, (_, k) =>
      mrope
        ? { t: ids[k], y: ids[n + k], x: ids[2 * n + k], z: ids[3 * n + k] }
        : { t: ids[k], y: ids[k], x: ids[k], z: ids[k] },
    );
    expect(mine).toEqual(r.positions);
    media.push({ index, ours: c, ref: r, maxAbsDiff, cosine });
    pos += c.nPos;
  });
  expect(pos).toBe(ref.nPosTotal);
  expect(ours.positions).toBe(ref.nPosTotal);
  return {
    ours,
    ref,
    media,
    worst: Math.max(0, ...media.map((m) => m.maxAbsDiff)),
    cosMin: Math.min(1, ...media.map((m) => m.cosine)),
    text,
  };
}

/**
 * Asks `question` about `image` from a fresh KV cache and an empty image cache, and checks that
 * the greedy answer is llama-mtmd-cli's for the same files, picture, question and token budget
 * (and not empty). `dropNul`: llama-mtmd-cli prints each piece as a C string, so a <0x00> byte
 * token prints nothing; ours is compared without those.
 */
export async function expectGreedyLikeMtmdCli(
  model: MultimodalModel,
  files: ModelFiles,
  image: string,
  options: {
    label: string;
    question?: string;
    maxTokens?: number;
    contextSize?: number;
    dropNul?: boolean;
  },
): Promise<ChatResult> {
  const question = options.question ?? 'Describe it.';
  const maxTokens = options.maxTokens ?? 12;
  const ref = await mtmdCli({
    model: files.llm,
    mmproj: files.mmproj,
    images: [image],
    prompt: question,
    maxTokens,
    threads: 2,
    ...(options.contextSize ? { contextSize: options.contextSize } : {}),
  });
  await model.reset();
  model.imageCache.clear();
  const ours = await model.chat(ask(image, question), { maxTokens });
  console.log(
    `${options.label}: ours ${JSON.stringify(ours.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
  );
  expect(options.dropNul ? ours.text.replaceAll('\u0000', '') : ours.text).toBe(ref);
  expect(ours.text.length).toBeGreaterThan(0);
  return ours;
}

/**
 * Another question about the picture of the last answer: the encoder does not run and the KV
 * prefix is reused; unless `fresh` is false, the answer equals that of a fresh run (KV and image
 * caches cleared).
 */
export async function expectFollowUpFromCache(
  model: MultimodalModel,
  image: string,
  options: { fresh?: boolean } = {},
): Promise<void> {
  const follow = ask(image, 'Anything else?');
  const second = await model.chat(follow, { maxTokens: 12 });
  expect(second.stats.imageCacheHits).toBe(1);
  expect(second.stats.encodeMs).toBe(0);
  expect(second.stats.cachedTokens).toBeGreaterThan(0);
  if (options.fresh === false) return;
  await model.reset();
  model.imageCache.clear();
  const fresh = await model.chat(follow, { maxTokens: 12 });
  expect(fresh.stats.imageCacheHits).toBe(0);
  expect(second.text).toBe(fresh.text);
}
