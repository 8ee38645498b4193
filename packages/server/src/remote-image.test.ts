import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, ask, postJson, startTiny, tiny } from './helpers.test-util.js';
import type { MmServer } from './server.js';

describe('--allow-remote-images (an image host on loopback)', () => {
  let images: Server;
  let host: string;
  let server: MmServer;

  beforeAll(async () => {
    const png = readFileSync(join(tiny.samples, 'sample_006.png'));
    images = createServer((req, res) => {
      if (req.url === '/sample.png') res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      else if (req.url === '/big.png') res.writeHead(200).end(Buffer.alloc(2 * 1024 * 1024, 1));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    host = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    server = await startTiny({
      limits: { allowRemoteImages: true, maxImageBytes: 1024 * 1024 },
    });
  });
  afterAll(async () => {
    await server?.close();
    await new Promise((r) => images?.close(r));
  });

  it('fetches http images, with a byte limit; a failed fetch is a 400', async () => {
    const url = `${server.url}/v1/chat/completions`;
    const q = answers()[6]!.questions.find((x) => x.kind === 'shape')!;
    const ok = await postJson(url, {
      model: 'tiny-shapes-llm',
      messages: ask(`${host}/sample.png`, q.question),
    });
    expect(ok.status).toBe(200);
    expect(ok.body.choices[0].message.content.trim()).toBe(q.answer);

    const big = await postJson(url, {
      model: 'tiny-shapes-llm',
      messages: ask(`${host}/big.png`, q.question),
    });
    expect(big.status).toBe(400);
    expect(big.body.error.code).toBe('image_too_large');

    const missing = await postJson(url, {
      model: 'tiny-shapes-llm',
      messages: ask(`${host}/nothing.png`, q.question),
    });
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe('image_fetch_failed');
  });
});
