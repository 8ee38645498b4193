import { describe, expect, it } from 'vitest';
import { type ChatOptions, type ChatResult, chatStats, samplingOf, streamChat } from './chat.js';

const prompt = { positions: 100, media: 2, mediaTokens: 64, cacheHits: 1, encodeMs: 7 };

describe('chatStats', () => {
  it('assembles every field from the prompt, the times and the answer', () => {
    const stats = chatStats(
      prompt,
      { start: 1000, prefill: 1010, firstToken: 1030, end: 1130 },
      { cachedTokens: 40, generatedTokens: 11, stopReason: 'eog' },
    );
    expect(stats).toEqual({
      promptTokens: 100,
      cachedTokens: 40,
      images: 2,
      imageTokens: 64,
      imageCacheHits: 1,
      encodeMs: 7,
      prefillMs: 20,
      decodeMs: 100,
      timeToFirstTokenMs: 30,
      generatedTokens: 11,
      tokensPerSecond: 100,
      stopReason: 'eog',
    });
  });

  it('no token: the first token is the end; one token has no decode rate', () => {
    const none = chatStats(
      prompt,
      { start: 0, prefill: 5, firstToken: 0, end: 50 },
      { cachedTokens: 0, generatedTokens: 0, stopReason: 'eog' },
    );
    expect(none).toMatchObject({ prefillMs: 45, decodeMs: 0, timeToFirstTokenMs: 50 });
    expect(none.tokensPerSecond).toBe(0);
    const one = chatStats(
      prompt,
      { start: 0, prefill: 5, firstToken: 20, end: 20 },
      { cachedTokens: 0, generatedTokens: 1, stopReason: 'length' },
    );
    expect(one.tokensPerSecond).toBe(0);
  });
});

describe('samplingOf', () => {
  it('lays the call options over `sampling`; nothing set is greedy', () => {
    expect(samplingOf({})).toEqual({});
    expect(
      samplingOf({ temperature: 0.5, seed: 3, sampling: { temperature: 1, topK: 4 } }),
    ).toEqual({ temperature: 0.5, seed: 3, topK: 4 });
  });
});

/** A respond() that pushes `parts` one per tick, stopping early when its signal aborts. */
function fake(parts: string[]) {
  const seen: { signal?: AbortSignal } = {};
  const respond = async (o: ChatOptions, onText: (t: string) => void): Promise<ChatResult> => {
    seen.signal = o.signal;
    let text = '';
    for (const p of parts) {
      o.signal?.throwIfAborted();
      onText(p);
      text += p;
      await new Promise((r) => setTimeout(r, 1));
    }
    o.signal?.throwIfAborted();
    return { text, stats: {} as ChatResult['stats'] };
  };
  return { respond, seen };
}

describe('streamChat', () => {
  it('yields the deltas and resolves .result with the whole answer', async () => {
    const { respond } = fake(['a', 'b', 'c']);
    const stream = streamChat({}, respond);
    const got: string[] = [];
    for await (const d of stream) got.push(d);
    expect(got).toEqual(['a', 'b', 'c']);
    expect((await stream.result).text).toBe('abc');
  });

  it("breaking out aborts respond's signal with MM_ABORTED and waits for it to end", async () => {
    const { respond, seen } = fake(['a', 'b', 'c', 'd']);
    const stream = streamChat({}, respond);
    for await (const _ of stream) break;
    expect(seen.signal?.aborted).toBe(true);
    expect(seen.signal?.reason).toMatchObject({ code: 'MM_ABORTED' });
    await expect(stream.result).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });

  it("the caller's signal: already aborted, aborted mid-stream, never aborted", async () => {
    const before = new AbortController();
    before.abort(new Error('before'));
    const s1 = streamChat({ signal: before.signal }, fake(['a']).respond);
    await expect(s1.result).rejects.toThrow('before');

    const mid = new AbortController();
    const s2 = streamChat({ signal: mid.signal }, fake(['a', 'b', 'c', 'd']).respond);
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const d of s2) {
          got.push(d);
          mid.abort(new Error('mid'));
        }
      })(),
    ).rejects.toThrow('mid');
    expect(got).toEqual(['a']);

    const never = new AbortController();
    const s3 = streamChat({ signal: never.signal }, fake(['x']).respond);
    expect((await s3.result).text).toBe('x');
  });
});
