import { MultimodalModel } from '@mm/core';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerOf,
  answers,
  ask,
  dataUrl,
  health,
  postJson,
  startTiny,
  tiny,
} from './helpers.test-util.js';
import type { MmServer } from './server.js';

describe('mm serve with the official openai client, on loopback, tiny-shapes', () => {
  let server: MmServer;
  let client: OpenAI;
  let reference: MultimodalModel;
  const greedy = new Map<string, string>();

  async function expected(image: string, question: string): Promise<string> {
    const key = `${image}\n${question}`;
    let text = greedy.get(key);
    if (text === undefined) {
      text = (await reference.chat(ask(dataUrl(image), question), { maxTokens: 64 })).text;
      greedy.set(key, text);
    }
    return text;
  }

  beforeAll(async () => {
    server = await startTiny({ parallel: 2 });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    reference = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
  });
  afterAll(async () => {
    await server?.close();
    reference?.dispose();
  });

  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-shapes-llm']);
    expect((await client.models.retrieve('tiny-shapes-llm')).id).toBe('tiny-shapes-llm');
  });

  it('answers every sample correctly, streaming and not, equal to model.chat greedy output', async () => {
    let checked = 0;
    for (const item of answers()) {
      for (const q of item.questions.filter((_, i) => i % 3 === 0)) {
        const want = await expected(item.image, q.question);
        expect(want.trim()).toBe(q.answer);
        const r = await client.chat.completions.create({
          model: 'tiny-shapes-llm',
          messages: ask(dataUrl(item.image), q.question),
          temperature: 0,
          max_tokens: 64,
        });
        expect(r.object).toBe('chat.completion');
        expect(r.choices[0]?.message.content).toBe(want);
        expect(r.choices[0]?.finish_reason).toBe('stop');
        expect(r.usage?.completion_tokens).toBeGreaterThan(0);
        expect(r.usage?.prompt_tokens).toBeGreaterThan(36);

        const s = await client.chat.completions.create({
          model: 'tiny-shapes-llm',
          messages: ask(dataUrl(item.image), q.question),
          temperature: 0,
          max_tokens: 64,
          stream: true,
          stream_options: { include_usage: true },
        });
        const deltas: string[] = [];
        let finish: string | null = null;
        let completionTokens = 0;
        for await (const chunk of s) {
          expect(chunk.object).toBe('chat.completion.chunk');
          const c = chunk.choices[0];
          if (c?.delta.content) deltas.push(c.delta.content);
          if (c?.finish_reason) finish = c.finish_reason;
          if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        }
        expect(deltas.length).toBeGreaterThan(1);
        expect(deltas.join('')).toBe(want);
        expect(finish).toBe('stop');
        expect(completionTokens).toBe(r.usage?.completion_tokens);
        checked++;
      }
    }
    expect(checked).toBe(answers().length * 5);
  });

  it('answers concurrent clients correctly (more requests than slots: they queue)', async () => {
    const jobs = answers().flatMap((item) => item.questions.slice(0, 2).map((q) => ({ item, q })));
    const results = await Promise.all(
      jobs.map(({ item, q }) =>
        client.chat.completions.create({
          model: 'tiny-shapes-llm',
          messages: ask(dataUrl(item.image), q.question),
          temperature: 0,
        }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.choices[0]?.message.content?.trim()).toBe(jobs[i]?.q.answer);
    });
    const h = await health(server.url);
    expect(h.slots).toEqual({ total: 2, in_use: 0 });
    expect(h.queue.depth).toBe(0);
    // Continuous batching: both sequences were decoded together in some steps.
    expect(h.batch?.max_batch).toBe(2);
    expect(h.batch?.tokens).toBeGreaterThan(h.batch?.steps ?? 0);
  });

  it('max_tokens, stop and seed behave as in OpenAI', async () => {
    const messages = ask(dataUrl('sample_000.png'), 'Describe the image.');
    const short = await client.chat.completions.create({
      model: 'tiny-shapes-llm',
      messages,
      max_tokens: 2,
    });
    expect(short.choices[0]?.finish_reason).toBe('length');
    expect(short.usage?.completion_tokens).toBe(2);
    expect(short.choices[0]?.message.content).toBe(' a red');

    const stopped = await client.chat.completions.create({
      model: 'tiny-shapes-llm',
      messages,
      stop: [' circle'],
    });
    expect(stopped.choices[0]?.message.content).toBe(' a red');
    expect(stopped.choices[0]?.finish_reason).toBe('stop');

    const seeded = () =>
      client.chat.completions.create({
        model: 'tiny-shapes-llm',
        messages,
        temperature: 1.5,
        top_p: 0.9,
        seed: 42,
        max_tokens: 8,
      });
    const a = await seeded();
    const b = await seeded();
    expect(b.choices[0]?.message.content).toBe(a.choices[0]?.message.content);
  });

  it('response_format json_schema constrains the answer', async () => {
    const r = await client.chat.completions.create({
      model: 'tiny-shapes-llm',
      messages: ask(dataUrl('sample_000.png'), 'Describe the image.'),
      max_tokens: 64,
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'color',
          schema: {
            type: 'object',
            properties: { color: { enum: ['red', 'green', 'blue'] } },
            required: ['color'],
          },
        },
      },
    });
    const parsed = JSON.parse(r.choices[0]?.message.content ?? '');
    expect(['red', 'green', 'blue']).toContain(parsed.color);
    expect(Object.keys(parsed)).toEqual(['color']);
  });

  it('a client that disconnects mid-stream aborts its generation and frees its slot', async () => {
    const before = await health(server.url);
    const ac = new AbortController();
    // A grammar that forces a long answer: it runs until the context is full unless aborted.
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      signal: ac.signal,
      body: JSON.stringify({
        model: 'tiny-shapes-llm',
        stream: true,
        max_tokens: 4096,
        messages: [{ role: 'user', content: 'Hello' }],
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'long',
            schema: {
              type: 'object',
              properties: { a: { type: 'array', items: { type: 'string' }, minItems: 500 } },
              required: ['a'],
            },
          },
        },
      }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.closed.catch(() => undefined);
    let h = before;
    for (let i = 0; i < 200 && h.requests.aborted === before.requests.aborted; i++) {
      await new Promise((r) => setTimeout(r, 25));
      h = await health(server.url);
    }
    expect(h.requests.aborted).toBe(before.requests.aborted + 1);
    expect(h.requests.served).toBe(before.requests.served);
    expect(h.slots.in_use).toBe(0);
    const again = await postJson(`${server.url}/v1/chat/completions`, {
      model: 'tiny-shapes-llm',
      messages: ask(dataUrl('sample_002.png'), 'What color is the shape?'),
    });
    expect(again.status).toBe(200);
  });
});

describe('mm serve: API key, demo page', () => {
  let server: MmServer;
  beforeAll(async () => {
    server = await startTiny({ apiKey: 'sekret' });
  });
  afterAll(async () => server?.close());

  it('needs the bearer key on /v1 and serves the demo and /health without it', async () => {
    const body = { model: 'tiny-shapes-llm', messages: [{ role: 'user', content: 'Hello' }] };
    const none = await postJson(`${server.url}/v1/chat/completions`, body);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('invalid_api_key');
    const wrong = await postJson(`${server.url}/v1/chat/completions`, body, {
      authorization: 'Bearer nope',
    });
    expect(wrong.status).toBe(401);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sekret', maxRetries: 0 });
    const r = await client.chat.completions.create({
      model: 'tiny-shapes-llm',
      messages: ask(dataUrl('sample_001.png'), 'What shape is it?'),
    });
    expect(r.choices[0]?.message.content?.trim()).toBe(answerOf(1, 'What shape is it?'));
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('/app.js');
    expect((await fetch(`${server.url}/app.js`)).status).toBe(200);
    expect((await fetch(`${server.url}/../package.json`)).status).toBe(404);
    expect(page.headers.get('access-control-allow-origin')).toBeNull();
  });
});
