import { readFileSync } from 'node:fs';
import {
  LONG_TAIL_FAMILIES,
  LONG_TAIL_TEST_IMAGE_SIZES,
  type LongTailFamily,
  mtmdCli,
  syntheticPngFixture,
  tinyLongTailPair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { postJson } from './helpers.test-util.js';
import { startServer } from './server.js';

// mm serve on projector types that run through libmtmd's fused encoder + projector: the batched
// engine decodes libmtmd's chunks (marker text, tiles, M-RoPE spans, deepstack rows) for requests
// in flight together, and answers greedy requests as llama-mtmd-cli does (templates rendered as it
// renders them: jinja off).

const png = (path: string) => `data:image/png;base64,${readFileSync(path).toString('base64')}`;

describe.each(LONG_TAIL_FAMILIES)(
  'mm serve with a %s model (libmtmd fused)',
  (family: LongTailFamily) => {
    it('answers concurrent requests about 2 pictures as llama-mtmd-cli does', {
      timeout: 600_000,
    }, async () => {
      const files = await tinyLongTailPair({ family });
      const images = await Promise.all(
        LONG_TAIL_TEST_IMAGE_SIZES[family].map(([w, h], i) => syntheticPngFixture(w, h, 30 + i)),
      );
      const question = 'What is in the picture?';
      const refs: string[] = [];
      for (const image of images) {
        refs.push(
          await mtmdCli({
            model: files.llm,
            mmproj: files.mmproj,
            images: [image],
            prompt: question,
            maxTokens: 10,
            threads: 2,
          }),
        );
      }
      const server = await startServer({
        model: files.llm,
        mmproj: files.mmproj,
        port: 0,
        threads: 2,
        parallel: 2,
        jinja: false,
        staticDir: false,
        modelId: 'long-tail',
      });
      try {
        const answers = await Promise.all(
          images.map((image) =>
            postJson(`${server.url}/v1/chat/completions`, {
              model: 'long-tail',
              messages: [
                {
                  role: 'user',
                  content: [
                    { type: 'image_url', image_url: { url: png(image) } },
                    { type: 'text', text: question },
                  ],
                },
              ],
              temperature: 0,
              max_tokens: 10,
            }),
          ),
        );
        answers.forEach((a, i) => {
          console.log(
            `${family} picture ${i}: mm serve ${JSON.stringify(a.body?.choices?.[0]?.message?.content)} llama-mtmd-cli ${JSON.stringify(refs[i])}`,
          );
          expect(a.status, JSON.stringify(a.body)).toBe(200);
          expect(a.body.choices[0].message.content).toBe(refs[i]);
        });
      } finally {
        await server.close();
      }
    });
  },
);
