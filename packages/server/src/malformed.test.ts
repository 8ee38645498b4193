import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerOf, ask, dataUrl, health, postJson, startTiny, tiny } from './helpers.test-util.js';
import type { MmServer } from './server.js';

/** A PNG whose header claims `w`×`h` pixels (no image data: a decoding "bomb" stand-in). */
function pngHeader(w: number, h: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const type = Buffer.from('IHDR');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(13);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, ihdr])));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), len, type, ihdr, crc]);
}

describe('mm serve survives malformed requests (each gets a 4xx JSON error)', () => {
  let server: MmServer;
  let url: string;
  const good = () => ({
    model: 'tiny-shapes-llm',
    messages: ask(dataUrl('sample_004.png'), 'What color is the shape?'),
  });
  const goodAnswer = answerOf(4, 'What color is the shape?');
  const withImage = (u: string) => ({
    model: 'tiny-shapes-llm',
    messages: ask(u, 'What color is the shape?'),
  });

  beforeAll(async () => {
    server = await startTiny({ parallel: 1, limits: { maxQueue: 1 } });
    url = `${server.url}/v1/chat/completions`;
  });
  afterAll(async () => server?.close());

  async function expectError(
    body: unknown,
    status: number,
    code: string | RegExp,
    headers?: Record<string, string>,
  ) {
    const r = await postJson(url, body, headers);
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(typeof r.body.error.message).toBe('string');
    expect(typeof r.body.error.type).toBe('string');
    expect(r.body.error.code).toMatch(code);
    // ... and the server keeps answering.
    const ok = await postJson(url, good());
    expect(ok.status).toBe(200);
    expect(ok.body.choices[0].message.content.trim()).toBe(goodAnswer);
    return r.body.error;
  }

  it('bad base64', async () => {
    await expectError(withImage('data:image/png;base64,@@not*base64!!'), 400, 'invalid_base64');
    await expectError(withImage('data:image/png;base64,'), 400, 'invalid_image');
    await expectError(withImage('data:image/png,rawbytes'), 400, 'invalid_image_url');
  });

  it('bytes that are not an image', async () => {
    const bytes = Buffer.from('this is plain text, not a picture at all!!');
    await expectError(
      withImage(`data:image/png;base64,${bytes.toString('base64')}`),
      400,
      'invalid_image',
    );
    const truncated = Buffer.from(dataUrl('sample_000.png').split(',')[1]!, 'base64').subarray(
      0,
      100,
    );
    await expectError(
      withImage(`data:image/png;base64,${truncated.toString('base64')}`),
      400,
      'invalid_image',
    );
  });

  it('long payloads (taken out of the body before the parse) are checked alike', async () => {
    const junk = Buffer.alloc(6000, 'not a picture ');
    await expectError(
      withImage(`data:image/png;base64,${junk.toString('base64')}`),
      400,
      'invalid_image',
    );
    const bad = `${junk.toString('base64').slice(0, -4)}*AAA`;
    await expectError(withImage(`data:image/png;base64,${bad}`), 400, 'invalid_base64');
  });

  it('an image whose header claims 30000 × 30000 pixels', async () => {
    await expectError(
      withImage(`data:image/png;base64,${pngHeader(30000, 30000).toString('base64')}`),
      400,
      'image_too_large',
    );
  });

  it('a 50 MB body', async () => {
    const big = JSON.stringify(withImage(`data:image/png;base64,${'A'.repeat(50 * 1024 * 1024)}`));
    await expectError(big, 413, 'body_too_large');
  });

  it('not JSON, and wrong JSON types', async () => {
    await expectError('{"model": "tiny-shapes-llm", "messages": [', 400, /invalid_json/);
    await expectError('', 400, 'ctp_empty_json_body');
    // a key that would poison an object merged from the body (refused as fastify's parser does)
    const poisoned = JSON.stringify(good()).replace('{', '{"__proto__": {"isAdmin": true}, ');
    expect(JSON.parse(poisoned).messages).toEqual(good().messages);
    await expectError(poisoned, 400, 'ctp_invalid_json_body');
    await expectError([1, 2, 3], 400, 'invalid_type');
    await expectError({ model: 'tiny-shapes-llm', messages: 'hello' }, 400, 'invalid_type');
    await expectError({ model: 'tiny-shapes-llm', messages: [] }, 400, 'invalid_type');
    await expectError(
      { model: 42, messages: [{ role: 'user', content: 'hi' }] },
      400,
      'invalid_type',
    );
    await expectError(
      { model: 'tiny-shapes-llm', messages: [{ role: 'user', content: 42 }] },
      400,
      'invalid_type',
    );
    await expectError(
      { model: 'tiny-shapes-llm', messages: [{ role: 'wizard', content: 'hi' }] },
      400,
      'invalid_value',
    );
    await expectError(
      { model: 'tiny-shapes-llm', messages: [{ role: 'user', content: [{ type: 'video' }] }] },
      400,
      'invalid_value',
    );
    await expectError(
      {
        model: 'tiny-shapes-llm',
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 7 } }] }],
      },
      400,
      'invalid_type',
    );
    await expectError({ ...good(), temperature: 'hot' }, 400, 'invalid_type');
    await expectError({ ...good(), max_tokens: -1 }, 400, 'invalid_value');
    await expectError({ ...good(), max_tokens: 1.5 }, 400, 'invalid_type');
    await expectError({ ...good(), stream: 'yes' }, 400, 'invalid_type');
    await expectError({ ...good(), stop: [1] }, 400, 'invalid_value');
    await expectError({ ...good(), n: 3 }, 400, 'invalid_value');
    await expectError({ ...good(), response_format: { type: 'json_schema' } }, 400, 'invalid_type');
    await expectError(
      { ...good(), messages: [{ role: 'user', content: 'a <__media__> b' }] },
      400,
      'invalid_value',
    );
  });

  it('an unknown model', async () => {
    const e = await expectError({ ...good(), model: 'gpt-4o' }, 404, 'model_not_found');
    expect(e.param).toBe('model');
  });

  it('too many images, and more image tokens than the context holds', async () => {
    const img = dataUrl('sample_000.png');
    const part = { type: 'image_url', image_url: { url: img } };
    const message = (n: number) => ({
      model: 'tiny-shapes-llm',
      messages: [
        {
          role: 'user',
          content: [...Array.from({ length: n }, () => part), { type: 'text', text: 'Hi' }],
        },
      ],
    });
    await expectError(message(9), 400, 'too_many_images');
    // 7 images × 36 tokens + the text: more than the 256 positions of tiny-shapes' context.
    const e = await expectError(message(7), 400, 'context_length_exceeded');
    expect(e.message).toMatch(/7 image/);
  });

  it('file paths and remote URLs are not fetched', async () => {
    await expectError(withImage('/etc/passwd'), 400, 'invalid_image_url');
    await expectError(withImage(`${tiny.samples}/sample_000.png`), 400, 'invalid_image_url');
    await expectError(withImage('http://127.0.0.1:1/x.png'), 400, 'remote_images_disabled');
  });

  it('a full queue is 429; the others are answered', async () => {
    // Each answer is held to at least 120 characters by a JSON-schema grammar, so the one slot stays
    // busy while the 12 requests arrive (a plain tiny-shapes answer can end before the next lands).
    const long = {
      ...good(),
      max_tokens: 400,
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'long', schema: { type: 'string', minLength: 120 } },
      },
    };
    const results = await Promise.all(Array.from({ length: 12 }, () => postJson(url, long)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    for (const r of results) {
      if (r.status === 429) expect(r.body.error.type).toBe('rate_limit_error');
      else {
        expect(r.status).toBe(200);
        expect(r.body.choices[0].message.content.length).toBeGreaterThanOrEqual(120);
      }
    }
    const h = await health(server.url);
    expect(h.queue.depth).toBe(0);
    expect(h.slots.in_use).toBe(0);
    // and the server still answers as before
    const ok = await postJson(url, good());
    expect(ok.body.choices[0].message.content.trim()).toBe(goodAnswer);
  });

  it('unknown routes are JSON 404s', async () => {
    const r = await fetch(`${server.url}/v1/nothing`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: { type: string } }).error.type).toBe('not_found_error');
  });
});

describe('mm serve: per-request timeout', () => {
  it('a request that runs past the limit is a 408 and frees its slot', async () => {
    const server = await startTiny({ limits: { requestTimeoutMs: 1 } });
    try {
      const r = await postJson(`${server.url}/v1/chat/completions`, {
        model: 'tiny-shapes-llm',
        messages: ask(dataUrl('sample_000.png'), 'Describe the image.'),
      });
      expect(r.status).toBe(408);
      expect(r.body.error.code).toBe('timeout');
      expect((await health(server.url)).slots.in_use).toBe(0);
    } finally {
      await server.close();
    }
  });
});
