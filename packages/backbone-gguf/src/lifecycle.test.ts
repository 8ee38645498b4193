import { MmError } from '@mm/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import { tinyShapes } from './helpers.test-util.js';

const PROMPT = '<|im_start|>user\nDescribe the image.<|im_end|>\n<|im_start|>assistant\n';

describe('load', () => {
  it('reports progress up to 1 and can be aborted before it starts', async () => {
    const seen: number[] = [];
    const b = await Backbone.load(tinyShapes.llm, { onProgress: (p) => seen.push(p) });
    expect(seen.at(-1)).toBe(1);
    b.dispose();
    const reason = new Error('nope');
    await expect(Backbone.load(tinyShapes.llm, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
  });

  it('aborted mid-load rejects with signal.reason', async () => {
    const c = new AbortController();
    const p = Backbone.load(tinyShapes.llm, { signal: c.signal });
    queueMicrotask(() => c.abort(new Error('cancelled load')));
    await expect(p).rejects.toThrow('cancelled load');
  });

  it('missing file, mmproj instead of a model, and bad options are typed errors', async () => {
    await expect(Backbone.load('/nonexistent/model.gguf')).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
    await expect(Backbone.load(tinyShapes.mmproj)).rejects.toMatchObject({ code: 'MM_MODEL_LOAD' });
    await expect(Backbone.load(tinyShapes.llm, { gpuLayers: -5 })).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    await expect(
      Backbone.load(tinyShapes.llm, { signal: {} as AbortSignal }),
    ).rejects.toBeInstanceOf(TypeError);
  });
});

describe('generation lifecycle', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    backbone = await Backbone.load(tinyShapes.llm);
  });
  afterAll(() => backbone.dispose());

  async function collect(gen: AsyncIterable<{ token: number; text: string }>): Promise<number[]> {
    const out: number[] = [];
    for await (const t of gen) out.push(t.token);
    return out;
  }

  it('four abort cases: already aborted, mid-flight, never aborted, invalid signal', async () => {
    const ctx = await backbone.createContext({ contextSize: 256, threads: 2 });
    const reason = new Error('already');
    expect(() => ctx.generate({ prompt: 'Hello', signal: AbortSignal.abort(reason) })).toThrow(
      reason,
    );
    // Mid-flight: abort after the first token; the iteration rejects with the reason within one token.
    const c = new AbortController();
    const seen: number[] = [];
    const gen = ctx.generate({
      prompt: 'Hello world',
      maxTokens: 200,
      ignoreEndOfGeneration: true,
      signal: c.signal,
    });
    await expect(
      (async () => {
        for await (const t of gen) {
          seen.push(t.token);
          if (seen.length === 1) c.abort(new Error('stop now'));
        }
      })(),
    ).rejects.toThrow('stop now');
    await expect(gen.result).rejects.toThrow('stop now');
    expect(seen.length).toBe(1); // no token is handed out after the abort
    // Never aborted:
    const never = new AbortController();
    const ok = await ctx.generate({ prompt: PROMPT, maxTokens: 16, signal: never.signal }).result;
    expect(ok.tokens.length).toBeGreaterThan(0);
    expect(['eog', 'length']).toContain(ok.stopReason);
    expect(() => ctx.generate({ prompt: 'x', signal: {} as AbortSignal })).toThrow(TypeError);
    ctx.dispose();
  });

  it('an aborted generation leaves the context usable and consistent', async () => {
    const ctx = await backbone.createContext({ contextSize: 256, threads: 2 });
    const fresh = await backbone.createContext({ contextSize: 256, threads: 2 });
    const c = new AbortController();
    const gen = ctx.generate({
      prompt: 'The quick brown fox',
      maxTokens: 100,
      ignoreEndOfGeneration: true,
      signal: c.signal,
    });
    let n = 0;
    await expect(
      (async () => {
        for await (const _ of gen) if (++n === 5) c.abort();
      })(),
    ).rejects.toBeDefined();
    const after = await collect(ctx.generate({ prompt: PROMPT, maxTokens: 16 }));
    const expected = await collect(fresh.generate({ prompt: PROMPT, maxTokens: 16 }));
    expect(after).toEqual(expected);
    expect(after.length).toBeGreaterThan(0);
    ctx.dispose();
    fresh.dispose();
  });

  it('breaking out of the loop stops generation and frees the context', async () => {
    const ctx = await backbone.createContext({ contextSize: 256, threads: 2 });
    const gen = ctx.generate({ prompt: 'Hello', maxTokens: 200, ignoreEndOfGeneration: true });
    let n = 0;
    for await (const _ of gen) if (++n === 3) break;
    const r = await gen.result;
    expect(r.stopReason).toBe('stop');
    expect(r.tokens.length).toBeLessThan(10);
    expect(
      (await ctx.generate({ prompt: PROMPT, maxTokens: 8 }).result).tokens.length,
    ).toBeGreaterThan(0);
    ctx.dispose();
  });

  it('a prompt longer than the context is MM_OUT_OF_CONTEXT with the numbers, before any work', async () => {
    const ctx = await backbone.createContext({ contextSize: 32, threads: 2 });
    const long = 'the shape is red and blue and green '.repeat(20);
    const err = await ctx.generate({ prompt: long }).result.catch((e) => e);
    expect(err.code).toBe('MM_OUT_OF_CONTEXT');
    expect(err.message).toMatch(/needs \d+ positions; the context holds 32/);
    await expect(ctx.decode({ tokens: new Int32Array(40).fill(5) })).rejects.toMatchObject({
      code: 'MM_OUT_OF_CONTEXT',
    });
    expect(ctx.nPast()).toBe(0);
    ctx.dispose();
  });

  it('use after dispose and double dispose are MM_DISPOSED', async () => {
    const b = await Backbone.load(tinyShapes.llm);
    const ctx = await b.createContext({ contextSize: 64 });
    ctx.dispose();
    expect(() => ctx.generate({ prompt: 'x' })).toThrow(
      expect.objectContaining({ code: 'MM_DISPOSED' }),
    );
    await expect(ctx.decode({ tokens: [1] })).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    expect(() => ctx.clear()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => ctx.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    ctx[Symbol.dispose](); // idempotent for `using`
    b.dispose();
    expect(() => b.tokenize('x')).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    await expect(b.createContext()).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    let caught: unknown;
    try {
      b.dispose();
    } catch (e) {
      caught = e;
    }
    expect(MmError.hasCode(caught, 'MM_DISPOSED')).toBe(true);
  });

  it('a context keeps working after its backbone is disposed, and dispose mid-generation cancels it', async () => {
    const b = await Backbone.load(tinyShapes.llm);
    const ctx = await b.createContext({ contextSize: 128, threads: 2 });
    b.dispose();
    const r = await ctx.generate({ tokens: [1, 3, 365, 15], maxTokens: 4 }).result;
    expect(r.tokens.length).toBeGreaterThan(0);
    const gen = ctx.generate({ prompt: 'Hello', maxTokens: 100, ignoreEndOfGeneration: true });
    ctx.dispose();
    const settled = await gen.result.then(
      (x) => x.stopReason,
      (e) => e.code,
    );
    expect(['stop', 'MM_DISPOSED']).toContain(settled);
  });
});
