import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LlamaServer, startLlamaServer } from './llama-server.js';
import { mtmdCli } from './oracle.js';
import { tinyShapesPaths } from './paths.js';

const tiny = tinyShapesPaths();
const items: { image: string; questions: { question: string; answer: string }[] }[] = JSON.parse(
  readFileSync(join(tiny.samples, 'answers.json'), 'utf8'),
).items;

describe('llama-server (test-only build from the vendored tree)', () => {
  let server: LlamaServer;
  beforeAll(async () => {
    server = await startLlamaServer({
      model: tiny.llm,
      mmproj: tiny.mmproj,
      parallel: 2,
      threads: 1,
    });
  });
  afterAll(() => server?.stop());

  it('answers a tiny-shapes picture (data URL) as llama-mtmd-cli does, greedy', async () => {
    for (const [i, item] of items.slice(0, 2).entries()) {
      const q = item.questions[i] as { question: string; answer: string };
      const image = join(tiny.samples, item.image);
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          temperature: 0,
          max_tokens: 32,
          messages: [
            {
              role: 'user',
              content: [
                {
                  type: 'image_url',
                  image_url: {
                    url: `data:image/png;base64,${readFileSync(image).toString('base64')}`,
                  },
                },
                { type: 'text', text: q.question },
              ],
            },
          ],
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        choices: { message: { content: string } }[];
        timings: { prompt_n: number };
        usage: { completion_tokens: number };
      };
      const text = body.choices[0]?.message.content ?? '';
      const cli = await mtmdCli({
        model: tiny.llm,
        mmproj: tiny.mmproj,
        images: [image],
        prompt: q.question,
        threads: 1,
      });
      expect(text.trim()).toBe(cli.trim());
      expect(text.trim()).toBe(q.answer);
      // its timings (what the side-by-side script reads)
      expect(body.timings.prompt_n).toBeGreaterThan(0);
      expect(body.usage.completion_tokens).toBeGreaterThan(0);
    }
  });

  it('a model it cannot load fails the start with its log, not a hang', async () => {
    await expect(
      startLlamaServer({ model: join(tiny.dir, 'no-such-model.gguf'), startTimeoutMs: 30_000 }),
    ).rejects.toThrow(/exited/);
  });
});
