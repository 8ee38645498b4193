import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import type { Context } from './context.js';
import { tinyShapes } from './helpers.test-util.js';
import { PushStream } from './push-stream.js';

const PROMPT = '<|im_start|>user\nDescribe the image.<|im_end|>\n<|im_start|>assistant\n';

const listeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

describe('generations on one long-lived AbortSignal', () => {
  let backbone: Backbone;
  let ctx: Context;
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  beforeAll(async () => {
    backbone = await Backbone.load(tinyShapes.llm);
    ctx = await backbone.createContext({ contextSize: 256, threads: 2 });
    process.on('warning', onWarning);
  });
  afterAll(() => {
    process.off('warning', onWarning);
    ctx?.dispose();
    backbone?.dispose();
  });

  it('leave no abort listener behind, whichever way each ends, and abort still stops one', async () => {
    const c = new AbortController();
    const { signal } = c;
    const opts = { maxTokens: 4, ignoreEndOfGeneration: true, signal };
    let runs = 0;
    for (let round = 0; round < 3; round++) {
      // Awaited result.
      const r = await ctx.generate({ prompt: PROMPT, ...opts }).result;
      expect(r.tokens.length).toBeGreaterThan(0);
      runs++;
      expect(listeners(signal)).toBe(0);
      // Iterated to the end.
      let n = 0;
      for await (const _ of ctx.generate({ prompt: PROMPT, ...opts })) n++;
      expect(n).toBeGreaterThan(0);
      runs++;
      expect(listeners(signal)).toBe(0);
      // Broken out of (stop).
      const broken = ctx.generate({ prompt: 'Hello', ...opts, maxTokens: 50 });
      for await (const _ of broken) break;
      expect((await broken.result).stopReason).toBe('stop');
      runs++;
      expect(listeners(signal)).toBe(0);
      // Cancelled.
      const cancelled = ctx.generate({ prompt: 'Hello', ...opts, maxTokens: 50 });
      cancelled.cancel();
      await cancelled.result;
      runs++;
      expect(listeners(signal)).toBe(0);
      // Failed (the prompt does not fit).
      const long = 'the shape is red and blue and green '.repeat(40);
      await expect(ctx.generate({ prompt: long, signal }).result).rejects.toMatchObject({
        code: 'MM_OUT_OF_CONTEXT',
      });
      runs++;
      expect(listeners(signal)).toBe(0);
    }
    expect(runs).toBeGreaterThanOrEqual(12);

    // Several at once on the same signal (they queue on the context): one listener each while in
    // flight (5, under the warning's 10), none once all end.
    const many = Array.from({ length: 5 }, () => ctx.generate({ prompt: PROMPT, ...opts }));
    expect(listeners(signal)).toBeGreaterThan(0);
    await Promise.all(many.map((g) => g.result));
    expect(listeners(signal)).toBe(0);

    // The signal still aborts a running generation, within one token, with its reason.
    const gen = ctx.generate({
      prompt: 'Hello world',
      maxTokens: 200,
      ignoreEndOfGeneration: true,
      signal,
    });
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const t of gen) {
          seen.push(t.token);
          if (seen.length === 2) c.abort(new Error('stop now'));
        }
      })(),
    ).rejects.toThrow('stop now');
    await expect(gen.result).rejects.toThrow('stop now');
    expect(seen.length).toBe(2);
    expect(listeners(signal)).toBe(0);

    // The context is still usable afterwards.
    expect((await ctx.generate({ prompt: PROMPT, maxTokens: 4 }).result).tokens.length).toBe(4);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });
});

describe('PushStream.watch', () => {
  function deferred<R>() {
    let resolve!: (r: R) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<R>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  }

  it('removes its listener when the operation resolves or rejects', async () => {
    const { signal } = new AbortController();
    for (let i = 0; i < 20; i++) {
      const d = deferred<number>();
      const s = new PushStream<number, number>(() => d.promise);
      s.watch(signal);
      expect(listeners(signal)).toBe(1);
      if (i % 2) d.resolve(i);
      else d.reject(new Error('failed'));
      await s.result.catch(() => undefined);
      expect(listeners(signal)).toBe(0);
    }
  });

  it('watching several signals, or one twice, leaves none behind; none is added once finished', async () => {
    const a = new AbortController().signal;
    const b = new AbortController().signal;
    const d = deferred<string>();
    const s = new PushStream<number, string>(() => d.promise);
    s.watch(a);
    s.watch(a);
    s.watch(b);
    expect([listeners(a), listeners(b)]).toEqual([1, 1]);
    d.resolve('ok');
    await s.result;
    expect([listeners(a), listeners(b)]).toEqual([0, 0]);
    s.watch(a);
    expect(listeners(a)).toBe(0);
  });

  it('an abort after the operation ended still stops handing out queued values', async () => {
    const c = new AbortController();
    const s = new PushStream<number, string>(async (st) => {
      st.push(1);
      st.push(2);
      st.push(3);
      return 'done';
    });
    s.watch(c.signal);
    await s.result;
    expect(listeners(c.signal)).toBe(0);
    const got: number[] = [];
    for await (const v of s) {
      got.push(v);
      c.abort();
    }
    expect(got).toEqual([1]);
  });

  it('an abort while waiting wakes the iteration, which ends with the rejection', async () => {
    const c = new AbortController();
    const reason = new Error('aborted');
    const s = new PushStream<number, string>(
      (st) =>
        new Promise((_, reject) => {
          st.push(1);
          c.signal.addEventListener('abort', () => setTimeout(() => reject(c.signal.reason), 5), {
            once: true,
          });
        }),
    );
    s.watch(c.signal);
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const v of s) {
          got.push(v);
          setTimeout(() => c.abort(reason), 5);
        }
      })(),
    ).rejects.toBe(reason);
    expect(got).toEqual([1]);
    expect(listeners(c.signal)).toBe(0);
  });
});
