import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Image } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { tinyLlamaFixture } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelComponents } from './components.js';
import { answers, ask, tiny } from './helpers.test-util.js';
import { EmbeddingCache, NativeRowsChunk } from './image-cache.js';
import { preparePrompt } from './media.js';
import { MultimodalModel } from './multimodal-model.js';

describe('MultimodalModel on tiny-shapes', () => {
  let model: MultimodalModel;
  beforeAll(async () => {
    model = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
  });
  afterAll(() => model.dispose());

  it('answers the four kinds of question about every sample correctly', async () => {
    let right = 0;
    let all = 0;
    for (const item of answers(tiny.samples)) {
      for (const q of item.questions.slice(0, 4)) {
        const { text } = await model.chat(ask(join(tiny.samples, item.image), q.question), {
          maxTokens: 16,
        });
        all++;
        if (text.trim() === q.answer) right++;
        else
          console.log(
            `${item.image} ${q.question}: got ${JSON.stringify(text)}, want ${JSON.stringify(q.answer)}`,
          );
      }
    }
    console.log(`samples: ${right}/${all} correct`);
    expect(right).toBe(all);
  });

  it('stream() yields the same text as chat(), as deltas', async () => {
    const messages = ask(join(tiny.samples, 'sample_003.png'), 'Describe the image.');
    const whole = await model.chat(messages);
    const parts: string[] = [];
    const s = model.stream(messages);
    for await (const d of s) parts.push(d);
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.join('')).toBe(whole.text);
    expect((await s.result).text).toBe(whole.text);
  });

  it("a picture's rows stay native through an answer; V8 gets them when the cache lets go", async () => {
    const path = join(tiny.samples, 'sample_002.png');
    model.imageCache.clear();
    const { text } = await model.chat(ask(path, 'What color is the shape?'));
    expect(text.trim()).toBe(
      answers(tiny.samples)[2]?.questions.find((q) => q.question === 'What color is the shape?')
        ?.answer,
    );
    // the answer went through the scheduler, which took the rows from the native tensor
    const cached = await model.embedImage(path);
    expect(cached.cached).toBe(true);
    const chunk = cached.chunks[0] as NativeRowsChunk;
    expect(chunk).toBeInstanceOf(NativeRowsChunk);
    expect(chunk.viewed).toBe(false);
    expect(chunk.byteLength).toBe(chunk.nTokens * model.components.backbone.nEmbd * 4);
    // read: the same values as a fresh encode
    const rows = chunk.rows;
    expect(chunk.viewed).toBe(true);
    expect(rows.byteLength).toBe(chunk.byteLength);
    model.imageCache.clear();
    const again = await model.embedImage(path);
    expect(again.cached).toBe(false);
    const fresh = again.chunks[0] as NativeRowsChunk;
    expect(fresh.viewed).toBe(false);
    expect(fresh.rows).toEqual(rows);

    // a cache settles what it evicts, clears or cannot hold, and keeps the rest native
    model.imageCache.clear();
    const media: Awaited<ReturnType<MultimodalModel['embedImage']>>[] = [];
    for (const f of ['sample_003.png', 'sample_004.png', 'sample_001.png'])
      media.push(await model.embedImage(join(tiny.samples, f)));
    const first = (m: (typeof media)[number] | undefined) => m?.chunks[0] as NativeRowsChunk;
    expect(media.map((m) => first(m).viewed)).toEqual([false, false, false]);
    const one = new EmbeddingCache(first(media[0]).byteLength);
    one.set('a', media[0] as (typeof media)[number]);
    one.set('b', media[1] as (typeof media)[number]);
    expect(one.size).toBe(1);
    expect([first(media[0]).viewed, first(media[1]).viewed]).toEqual([true, false]);
    one.clear();
    expect(first(media[1]).viewed).toBe(true);
    new EmbeddingCache(1).set('c', media[2] as (typeof media)[number]);
    expect(first(media[2]).viewed).toBe(true);
  });

  it('the same picture from a path, a Buffer, a data URL or an Image gives the same answer; repeats hit the cache', async () => {
    const path = join(tiny.samples, 'sample_005.png');
    const bytes = readFileSync(path);
    await model.reset();
    model.imageCache.clear();
    const first = await model.chat(ask(path, 'What color is the shape?'));
    expect(first.stats.imageCacheHits).toBe(0);
    expect(first.stats.encodeMs).toBeGreaterThan(0);
    // the decode steps' compute is part of the decode time (a one-token answer has none)
    const { decodeMs, decodeComputeMs, generatedTokens } = first.stats;
    expect(decodeComputeMs).toBeGreaterThanOrEqual(0);
    expect(decodeComputeMs as number).toBeLessThanOrEqual(decodeMs);
    if (generatedTokens > 1) expect(decodeComputeMs).toBeGreaterThan(0);
    const inputs = [
      bytes,
      new Uint8Array(bytes),
      `data:image/png;base64,${bytes.toString('base64')}`,
      await Image.fromFile(path),
    ];
    for (const image of inputs) {
      const r = await model.chat([
        {
          role: 'user',
          content: [
            { type: 'image', image },
            { type: 'text', text: 'What color is the shape?' },
          ],
        },
      ]);
      expect(r.text).toBe(first.text);
      expect(r.stats.imageCacheHits).toBe(1);
      expect(r.stats.encodeMs).toBe(0);
    }
  });

  it('a follow-up turn reuses the KV cache and only decodes the new tokens', async () => {
    await model.reset();
    const img = join(tiny.samples, 'sample_001.png');
    const turn1 = ask(img, 'What color is the shape?');
    const a = await model.chat(turn1);
    const turn2 = [
      ...turn1,
      { role: 'assistant', content: a.text.trim() },
      { role: 'user', content: 'Where is it?' },
    ];
    const b = await model.chat(turn2);
    expect(b.stats.cachedTokens).toBeGreaterThanOrEqual(40);
    expect(b.stats.promptTokens - b.stats.cachedTokens).toBeLessThanOrEqual(24);
    const fresh = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
    const c = await fresh.chat(turn2);
    fresh.dispose();
    expect(b.text).toBe(c.text);
    expect(c.stats.cachedTokens).toBe(0);
  });

  it('errors: corrupt image, over-long prompt — typed, and the model keeps working', async () => {
    const bad = await model
      .chat(ask('data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA', 'What?'))
      .catch((e) => e);
    expect(bad.code).toBe('MM_IMAGE_DECODE');
    const long = 'red blue green yellow '.repeat(200);
    const over = await model.chat([{ role: 'user', content: long }]).catch((e) => e);
    expect(over.code).toBe('MM_OUT_OF_CONTEXT');
    expect(over.message).toMatch(/needs \d+ positions/);
    const many = Array.from({ length: 8 }, () => ({
      type: 'image' as const,
      image: join(tiny.samples, 'sample_000.png'),
    }));
    const tooManyImages = await model
      .chat([{ role: 'user', content: [...many, { type: 'text', text: 'x' }] }])
      .catch((e) => e);
    expect(tooManyImages.code).toBe('MM_OUT_OF_CONTEXT');
    expect(tooManyImages.message).toMatch(/8 image\(s\) × 36 tokens/);
    const ok = await model.chat(ask(join(tiny.samples, 'sample_000.png'), 'What shape is it?'));
    expect(ok.text.trim()).toBe('circle.');
  });

  it('four abort cases and breaking out of a stream', async () => {
    const messages = ask(join(tiny.samples, 'sample_002.png'), 'Describe the image.');
    const reason = new Error('already');
    await expect(model.chat(messages, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    const c = new AbortController();
    // a grammar-forced long answer: a short one can reach JS whole (JS hears of tokens at most
    // once a millisecond), and then there is nothing left to abort
    const s = model.stream(messages, {
      signal: c.signal,
      sampling: { jsonSchema: { type: 'string', minLength: 120 } },
    });
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const d of s) {
          got.push(d);
          c.abort(new Error('mid'));
        }
      })(),
    ).rejects.toThrow('mid');
    expect(got.length).toBeLessThanOrEqual(2);
    const never = new AbortController();
    expect((await model.chat(messages, { signal: never.signal })).text.length).toBeGreaterThan(0);
    await expect(model.chat(messages, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
    const s2 = model.stream(messages);
    for await (const _ of s2) break;
    const again = await model.chat(messages);
    expect(again.text.trim()).toMatch(/\.$/);
  });
});

describe('MultimodalModel.load errors', () => {
  it('missing files are MM_FILE_NOT_FOUND', async () => {
    await expect(
      MultimodalModel.load({ model: '/nope.gguf', mmproj: tiny.mmproj }),
    ).rejects.toMatchObject({ code: 'MM_FILE_NOT_FOUND' });
    await expect(
      MultimodalModel.load({ model: tiny.llm, mmproj: '/nope.gguf' }),
    ).rejects.toMatchObject({ code: 'MM_FILE_NOT_FOUND' });
  });

  it('a wrong pair is MM_MODEL_MISMATCH naming both widths', async () => {
    const other = await tinyLlamaFixture({ seed: 5 }); // n_embd 64, the mmproj projects to 128
    const err = await MultimodalModel.load({ model: other, mmproj: tiny.mmproj }).catch((e) => e);
    expect(MmError.isInstance(err)).toBe(true);
    expect(err.code).toBe('MM_MODEL_MISMATCH');
    expect(err.message).toContain('128');
    expect(err.message).toContain('64');
  });

  it('images without an mmproj are MM_MODALITY_UNSUPPORTED, never a silent text answer', async () => {
    const m = await MultimodalModel.load({ model: tiny.llm, threads: 2 });
    const err = await m.chat(ask(join(tiny.samples, 'sample_000.png'), 'What?')).catch((e) => e);
    expect(err.code).toBe('MM_MODALITY_UNSUPPORTED');
    expect(
      (await m.chat([{ role: 'user', content: 'What color is the shape?' }], { maxTokens: 4 })).text
        .length,
    ).toBeGreaterThan(0);
    m.dispose();
    expect(() => m.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    await expect(m.chat([{ role: 'user', content: 'x' }])).rejects.toMatchObject({
      code: 'MM_DISPOSED',
    });
  });
});

describe('ModelComponents: the parts without a context', () => {
  it('prepare the same prompt as a MultimodalModel, share nothing with it, and dispose once', async () => {
    const parts = await ModelComponents.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
    const model = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
    try {
      expect(parts.threads).toBe(2);
      expect(parts.mediaPromptInfo).toEqual(model.mediaPromptInfo);
      const messages = ask(join(tiny.samples, 'sample_000.png'), 'What color is the shape?');
      const room = { positions: model.contextSize, what: 'the context' };
      const a = await preparePrompt(parts, messages, room);
      const b = await preparePrompt(model, messages, room);
      expect(a.positions).toBe(b.positions);
      expect(a.chunks.map((c) => (c.kind === 'text' ? Array.from(c.tokens) : c.key))).toEqual(
        b.chunks.map((c) => (c.kind === 'text' ? Array.from(c.tokens) : c.key)),
      );
      expect(a.cacheHits).toBe(0);
      expect((await preparePrompt(parts, messages, room)).cacheHits).toBe(1);
      expect(model.imageCache.size).toBe(1);
      expect(model.components).toBeInstanceOf(ModelComponents);
    } finally {
      model.dispose();
    }
    parts.dispose();
    expect(parts.disposed).toBe(true);
    expect(() => parts.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    parts[Symbol.dispose]();
    await expect(
      parts.embedMedia({ modality: 'image', input: join(tiny.samples, 'sample_000.png') }),
    ).rejects.toMatchObject({ code: 'MM_DISPOSED' });
  });
});
