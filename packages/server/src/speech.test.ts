import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpeechModel } from '@mm/core';
import { encodeWav, synthAudio, tinyPocketTtsFixture, tinyQwen3TtsPair } from '@mm/testing';
import OpenAI from 'openai';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerOf, ask, dataUrl, health, postJson, startTiny, tiny } from './helpers.test-util.js';
import type { MmServer } from './server.js';
import { type SpeechServeOptions, streamingWavHeader, toS16le } from './speech.js';

const CHROMIUM = '/usr/bin/chromium';

interface SpeechReply {
  status: number;
  headers: Headers;
  bytes: Buffer;
  /** Reads that brought bytes: more than one when the reply was streamed chunk by chunk. */
  reads: number;
  /** performance.now() when the headers came, and when the last byte did. */
  headersAt: number;
  endAt: number;
}

async function speech(base: string, body: unknown): Promise<SpeechReply> {
  const res = await fetch(`${base}/v1/audio/speech`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const headersAt = performance.now();
  const parts: Buffer[] = [];
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (value.length > 0) parts.push(Buffer.from(value));
  }
  return {
    status: res.status,
    headers: res.headers,
    bytes: Buffer.concat(parts),
    reads: parts.length,
    headersAt,
    endAt: performance.now(),
  };
}

/** Largest |a - b| between the s16 samples sent and the PCM a direct speakAll gave. */
function maxDiff(s16: Buffer, pcm: Float32Array): number {
  let m = 0;
  for (let i = 0; i < pcm.length; i++)
    m = Math.max(m, Math.abs(s16.readInt16LE(i * 2) / 32767 - (pcm[i] as number)));
  return m;
}

async function waitIdle(base: string): Promise<void> {
  await expect
    .poll(
      async () => ((await health(base)) as unknown as { speech: { in_use: number } }).speech.in_use,
    )
    .toBe(0);
}

describe('POST /v1/audio/speech: Pocket TTS (tiny) beside tiny-shapes', () => {
  let server: MmServer;
  let reference: SpeechModel;
  let dir: string;
  const voices: Record<string, string> = {};
  const encoded = new Map<string, Awaited<ReturnType<SpeechModel['encodeVoice']>>>();
  // Seeds are fresh per call only to keep the cases apart: each utterance restarts its seeded
  // draws (checked below), so a repeated seed repeats the audio.
  let seeds = 100;
  const fresh = () => seeds++;

  /** What a direct SpeechModel.speakAll gives for the same text, voice and seed. */
  async function expected(text: string, voice: string, seed: number): Promise<Float32Array> {
    return (await reference.speakAll(text, { voice: encoded.get(voice), sampling: { seed } })).pcm;
  }

  beforeAll(async () => {
    // eosBias -100: the tiny talker never ends early, so a reply runs to its frame budget (several
    // 8-frame chunks)
    const tts = await tinyPocketTtsFixture({ eosBias: -100 });
    dir = mkdtempSync(join(tmpdir(), 'mm-speech-'));
    voices.ref = join(dir, 'ref.wav');
    voices.low = join(dir, 'low.wav');
    writeFileSync(
      voices.ref,
      encodeWav(synthAudio(1, 24000, [{ kind: 'tone', hz: 220, amplitude: 0.3 }]), {
        sampleRate: 24000,
      }),
    );
    writeFileSync(
      voices.low,
      encodeWav(
        synthAudio(0.8, 16000, [
          { kind: 'chirp', fromHz: 90, toHz: 300, amplitude: 0.4 },
          { kind: 'noise', amplitude: 0.05, seed: 3 },
        ]),
        { sampleRate: 16000 },
      ),
    );
    // one thread: on a busy 2-core machine a second ggml thread mostly waits at a barrier
    server = await startTiny({
      threads: 1,
      speech: {
        model: tts.model,
        mmproj: tts.mmproj,
        modelId: 'tiny-pocket',
        voices: { ref: voices.ref, low: voices.low },
        threads: 1,
        limits: { maxInputChars: 200 },
      },
    });
    reference = await SpeechModel.load({ model: tts.model, mmproj: tts.mmproj, threads: 1 });
    for (const [name, path] of Object.entries(voices))
      encoded.set(name, await reference.encodeVoice(path));
  });
  afterAll(async () => {
    await server?.close();
    reference?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists the speech model beside the chat model, and /health describes it', async () => {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as {
      data: { id: string }[];
    };
    expect(models.data.map((m: { id: string }) => m.id)).toEqual([
      'tiny-shapes-llm',
      'tiny-pocket',
    ]);
    expect(
      ((await (await fetch(`${server.url}/v1/models/tiny-pocket`)).json()) as { id: string }).id,
    ).toBe('tiny-pocket');
    const h = (await health(server.url)) as unknown as { speech: Record<string, unknown> };
    expect(h.speech).toEqual({
      model: 'tiny-pocket',
      pipeline: 'pockettts',
      sample_rate: 24000,
      voices: ['ref', 'low'],
      default_voice: 'ref',
      in_use: 0,
      queued: 0,
    });
  });

  it('streams pcm chunk by chunk: s16le bytes equal a direct speakAll with the same seed', async () => {
    const text = 'Hello there, how are you?';
    const seed = fresh();
    const r = await speech(server.url, {
      model: 'tiny-pocket',
      input: text,
      voice: 'low',
      response_format: 'pcm',
      seed,
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('audio/pcm');
    expect(r.headers.get('x-sample-rate')).toBe('24000');
    expect(r.headers.get('x-audio-channels')).toBe('1');
    expect(r.headers.get('x-audio-encoding')).toBe('s16le');
    expect(r.headers.get('transfer-encoding')).toBe('chunked');
    const pcm = await expected(text, 'low', seed);
    expect(pcm.length).toBeGreaterThan(8 * 1920 * 2); // several decoder windows
    console.log(
      `pcm: ${pcm.length} samples in ${r.reads} reads, bytes equal toWav's: ${r.bytes.equals(toS16le(pcm, 24000))}, max |s16/32767 - pcm| ${maxDiff(r.bytes, pcm).toExponential(2)}`,
    );
    expect(r.reads).toBeGreaterThan(1);
    expect(r.bytes.equals(toS16le(pcm, 24000))).toBe(true);
    expect(r.bytes.equals(SpeechModel.toWav(pcm, 24000).subarray(44))).toBe(true);
  });

  it("the official openai client's audio.speech.create gets the same bytes", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const text = 'Through the client.';
    const seed = fresh();
    const res = await client.audio.speech.create({
      model: 'tiny-pocket',
      input: text,
      voice: 'ref',
      response_format: 'pcm',
      // @ts-expect-error: the seed extension
      seed,
    });
    expect(res.headers.get('x-sample-rate')).toBe('24000');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.equals(toS16le(await expected(text, 'ref', seed), 24000))).toBe(true);
  });

  it('wav not streamed is byte for byte SpeechModel.toWav (llama-tts bytes), with a Content-Length', async () => {
    const text = 'A short line.';
    const seed = fresh();
    const r = await speech(server.url, {
      model: 'tiny-pocket',
      input: text,
      voice: 'ref',
      response_format: 'wav',
      seed,
      stream: false,
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('audio/wav');
    expect(r.headers.get('x-sample-rate')).toBe('24000');
    const want = SpeechModel.toWav(await expected(text, 'ref', seed), 24000);
    expect(r.headers.get('content-length')).toBe(String(want.length));
    expect(Number(r.headers.get('x-audio-frames'))).toBeGreaterThan(8);
    expect(r.bytes.equals(want)).toBe(true);
  });

  it('the same seed twice gives the same audio (each request starts its seeded draws afresh)', async () => {
    const body = {
      model: 'tiny-pocket',
      input: 'Again and again.',
      voice: 'ref',
      response_format: 'pcm',
      seed: 7,
    };
    const a = await speech(server.url, body);
    const b = await speech(server.url, body);
    expect(a.status).toBe(200);
    expect(a.bytes.length).toBeGreaterThan(0);
    expect(b.bytes.equals(a.bytes)).toBe(true);
  });

  it('wav streamed: a header with unknown sizes (0xFFFFFFFF), then the same samples', async () => {
    const text = 'A short line.';
    const seed = fresh();
    const r = await speech(server.url, {
      model: 'tiny-pocket',
      input: text,
      voice: 'ref',
      response_format: 'wav',
      seed,
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('audio/wav');
    expect(r.headers.get('content-length')).toBeNull();
    const want = SpeechModel.toWav(await expected(text, 'ref', seed), 24000);
    expect(r.bytes.subarray(0, 44).equals(streamingWavHeader(24000))).toBe(true);
    expect(r.bytes.readUInt32LE(40)).toBe(0xffffffff);
    expect(
      r.bytes
        .subarray(0, 36)
        .equals(
          Buffer.concat([
            want.subarray(0, 4),
            Buffer.from([255, 255, 255, 255]),
            want.subarray(8, 36),
          ]),
        ),
    ).toBe(true);
    expect(r.bytes.subarray(44).equals(want.subarray(44))).toBe(true);
  });

  it("OpenAI's voice names, 'default' and no voice all mean the default voice (the first configured)", async () => {
    const text = 'Same voice.';
    let want: Buffer = Buffer.alloc(0);
    for (const voice of ['alloy', 'nova', 'default', undefined, { id: 'ref' }]) {
      const seed = fresh();
      const r = await speech(server.url, {
        model: 'tiny-pocket',
        input: text,
        ...(voice !== undefined && { voice }),
        response_format: 'pcm',
        seed,
        speed: 1,
      });
      expect(r.status).toBe(200);
      want = toS16le(await expected(text, 'ref', seed), 24000);
      expect(r.bytes.equals(want)).toBe(true);
    }
    // and another voice gives other samples
    const seed = fresh();
    const low = await speech(server.url, {
      model: 'tiny-pocket',
      input: text,
      voice: 'low',
      response_format: 'pcm',
      seed,
    });
    expect(low.bytes.equals(want)).toBe(false);
    expect(low.bytes.equals(toS16le(await expected(text, 'low', seed), 24000))).toBe(true);
  });

  it('a client that goes away mid-stream stops the generation; the next request is answered in full', async () => {
    const before = await health(server.url);
    const ac = new AbortController();
    const res = await fetch(`${server.url}/v1/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-pocket',
        input: 'This one is cut short by the client, long before its end.',
        response_format: 'pcm',
        seed: fresh(),
      }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(first.value?.length).toBeGreaterThan(0);
    ac.abort();
    await waitIdle(server.url);
    await expect
      .poll(async () => (await health(server.url)).requests.aborted)
      .toBe(before.requests.aborted + 1);

    const text = 'Hello there, how are you?';
    const seed = fresh();
    const r = await speech(server.url, {
      model: 'tiny-pocket',
      input: text,
      voice: 'low',
      response_format: 'pcm',
      seed,
    });
    expect(r.status).toBe(200);
    expect(r.bytes.equals(toS16le(await expected(text, 'low', seed), 24000))).toBe(true);
  });

  it('speech requests queue one at a time per model while chat keeps answering', async () => {
    const texts = ['First of two.', 'Second of two.'];
    const s0 = fresh();
    fresh();
    const chat = postJson(`${server.url}/v1/chat/completions`, {
      model: 'tiny-shapes-llm',
      messages: ask(dataUrl('sample_000.png'), 'What color is the shape?'),
      max_tokens: 16,
    });
    const replies = await Promise.all(
      texts.map((input, i) =>
        speech(server.url, {
          model: 'tiny-pocket',
          input,
          voice: 'ref',
          response_format: 'pcm',
          seed: s0 + i,
        }),
      ),
    );
    for (const [i, r] of replies.entries()) {
      expect(r.status).toBe(200);
      expect(
        r.bytes.equals(toS16le(await expected(texts[i] as string, 'ref', s0 + i), 24000)),
      ).toBe(true);
    }
    // one at a time: the later reply's first bytes came after the other's last
    const [a, b] = replies as [SpeechReply, SpeechReply];
    expect(Math.max(a.headersAt, b.headersAt)).toBeGreaterThan(Math.min(a.endAt, b.endAt));
    const c = await chat;
    expect(c.status).toBe(200);
    expect(c.body.choices[0].message.content.trim()).toBe(answerOf(0, 'What color is the shape?'));
    await waitIdle(server.url);
  });

  it('bad requests are typed 4xx JSON errors, and the server keeps answering', async () => {
    const base = { model: 'tiny-pocket', input: 'Hi.', response_format: 'pcm' };
    const cases: [unknown, number, string, string | null][] = [
      [{ ...base, input: '' }, 400, 'invalid_value', 'input'],
      [{ ...base, input: ' \n\t ' }, 400, 'invalid_value', 'input'],
      [{ ...base, input: 'x'.repeat(201) }, 400, 'string_above_max_length', 'input'],
      [{ ...base, input: 42 }, 400, 'invalid_type', 'input'],
      [{ ...base, model: 'tts-1' }, 404, 'model_not_found', 'model'],
      [{ ...base, model: 'tiny-shapes-llm' }, 400, 'model_not_supported', 'model'],
      [{ ...base, response_format: 'mp3' }, 400, 'unsupported_response_format', 'response_format'],
      [{ ...base, response_format: 'ogg' }, 400, 'invalid_value', 'response_format'],
      [{ ...base, response_format: 7 }, 400, 'invalid_value', 'response_format'],
      [{ ...base, voice: 'nobody' }, 400, 'voice_not_found', 'voice'],
      [{ ...base, voice: 3 }, 400, 'invalid_type', 'voice'],
      [{ ...base, speed: 1.5 }, 400, 'unsupported_value', 'speed'],
      [{ ...base, speed: 'fast' }, 400, 'invalid_type', 'speed'],
      [{ ...base, seed: -1 }, 400, 'invalid_value', 'seed'],
      [{ ...base, seed: 1.5 }, 400, 'invalid_type', 'seed'],
      [{ ...base, stream_format: 'sse' }, 400, 'unsupported_value', 'stream_format'],
      [{ ...base, instructions: 'whisper' }, 400, 'unsupported_parameter', 'instructions'],
      [{ ...base, stream: 'yes' }, 400, 'invalid_type', 'stream'],
      [[1, 2], 400, 'invalid_type', null],
      ['{"model": ', 400, 'ctp_invalid_json_body', null],
    ];
    for (const [body, status, code, param] of cases) {
      const res = await fetch(`${server.url}/v1/audio/speech`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const b = (await res.json()) as {
        error: { code: string; param: string | null; message: string };
      };
      expect({ body, status: res.status, code: b.error?.code }).toEqual({ body, status, code });
      if (param !== null) expect(b.error.param).toBe(param);
      expect(typeof b.error.message).toBe('string');
    }
    // the chat endpoint refuses the speech model by name
    const c = await postJson(`${server.url}/v1/chat/completions`, {
      model: 'tiny-pocket',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(c.status).toBe(400);
    expect(c.body.error.code).toBe('model_not_supported');
    const seed = fresh();
    const ok = await speech(server.url, { ...base, seed, voice: 'ref' });
    expect(ok.status).toBe(200);
    expect(ok.bytes.equals(toS16le(await expected('Hi.', 'ref', seed), 24000))).toBe(true);
  });

  it.skipIf(!existsSync(CHROMIUM))(
    'the demo (headless chromium) shows Speak, sends the answer text and plays the streamed pcm',
    async () => {
      const profile = mkdtempSync(join(tmpdir(), 'mm-chromium-'));
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--autoplay-policy=no-user-gesture-required',
        ],
      });
      try {
        const page = await browser.newPage();
        const bodies: string[] = [];
        page.on('request', (r) => {
          if (r.url().endsWith('/v1/audio/speech')) bodies.push(r.postData() ?? '');
        });
        await page.goto(`${server.url}/`);
        await expect.poll(() => page.isVisible('#speech')).toBe(true);
        expect(await page.$$eval('#voice option', (o) => o.map((x) => x.textContent))).toEqual([
          'ref',
          'low',
        ]);
        const text = 'Spoken by the demo.';
        await page.fill('#speak-text', text);
        await page.selectOption('#voice', 'low');
        await page.click('#speak');
        await page.waitForSelector('#speech[data-done="true"]', { timeout: 60_000 });
        expect(await page.isHidden('#error')).toBe(true);
        expect(JSON.parse(bodies[0] as string)).toEqual({
          model: 'tiny-pocket',
          input: text,
          voice: 'low',
          response_format: 'pcm',
        });
        // the page's WAV of what it played: as long as a direct speakAll of the text (the tiny
        // model always runs to its frame budget; the demo sends no seed)
        const bytes = (await page.evaluate(
          'fetch(document.getElementById("speech-audio").src).then((r) => r.arrayBuffer()).then((b) => b.byteLength)',
        )) as number;
        const pcm = await expected(text, 'low', fresh());
        expect(bytes).toBe(44 + pcm.length * 2);
        // a streamed wav (sizes 0xFFFFFFFF) plays in the browser for its whole length
        const played = (await page.evaluate(`(async () => {
          const res = await fetch('/v1/audio/speech', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'tiny-pocket', input: ${JSON.stringify(text)}, voice: 'low' }),
          });
          const blob = await res.blob();
          const a = new Audio(URL.createObjectURL(blob));
          await new Promise((ok, bad) => {
            a.onloadedmetadata = ok;
            a.onerror = () => bad(new Error('cannot play: ' + a.error?.code));
          });
          return { size: blob.size, duration: a.duration };
        })()`)) as { size: number; duration: number };
        expect(played.size).toBe(44 + pcm.length * 2);
        expect(played.duration).toBeCloseTo(pcm.length / 24000, 3);
        expect(await page.textContent('#speech-timings')).toMatch(
          /first audio \d+ ms .* s of speech at 24000 Hz/,
        );
      } finally {
        await browser.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  );

  it('the web demo has the Speak control', async () => {
    const html = await (await fetch(`${server.url}/`)).text();
    expect(html).toMatch(/<button id="speak"[^>]*>Speak<\/button>/);
    expect(html).toMatch(/id="speech"[^>]*hidden/);
    const js = await (await fetch(`${server.url}/app.js`)).text();
    expect(js).toContain('/v1/audio/speech');
  });
});

describe('POST /v1/audio/speech: Qwen3-TTS (tiny), no voices configured', () => {
  let server: MmServer;
  let reference: SpeechModel;
  const MAX_FRAMES = 12;

  beforeAll(async () => {
    const pair = await tinyQwen3TtsPair();
    // one thread: on a busy 2-core machine a second ggml thread mostly waits at a barrier
    server = await startTiny({
      threads: 1,
      speech: {
        model: pair.model,
        mmproj: pair.mmproj,
        modelId: 'tiny-qwen3tts',
        threads: 1,
        limits: { maxFrames: MAX_FRAMES },
      },
    });
    reference = await SpeechModel.load({ model: pair.model, mmproj: pair.mmproj, threads: 1 });
  });
  afterAll(async () => {
    await server?.close();
    reference?.dispose();
  });

  it("speaks in the model's own voice for 'alloy', equal to a direct speakAll (the frame limit applied)", async () => {
    const h = (await health(server.url)) as unknown as { speech: Record<string, unknown> };
    expect(h.speech).toMatchObject({
      model: 'tiny-qwen3tts',
      pipeline: 'qwen3tts',
      voices: [],
      default_voice: null,
    });
    const text = 'Good morning.';
    const direct = await reference.speakAll(text, {
      sampling: { seed: 3 },
      maxFrames: MAX_FRAMES,
      language: 'en',
    });
    expect(direct.frames).toBe(MAX_FRAMES);
    const r = await speech(server.url, {
      model: 'tiny-qwen3tts',
      input: text,
      voice: 'alloy',
      response_format: 'wav',
      seed: 3,
      language: 'en',
      stream: false,
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-sample-rate')).toBe(String(reference.sampleRate));
    console.log(
      `qwen3tts: ${direct.pcm.length} samples, max |s16/32767 - pcm| ${maxDiff(r.bytes.subarray(44), direct.pcm).toExponential(2)}`,
    );
    expect(r.bytes.equals(SpeechModel.toWav(direct.pcm, reference.sampleRate))).toBe(true);
    // streamed, another seed (the projector's generator is reseeded only when the seed changes)
    const p = await speech(server.url, {
      model: 'tiny-qwen3tts',
      input: text,
      response_format: 'pcm',
      seed: 4,
      language: 'en',
    });
    const direct4 = await reference.speakAll(text, {
      sampling: { seed: 4 },
      maxFrames: MAX_FRAMES,
      language: 'en',
    });
    expect(p.bytes.equals(toS16le(direct4.pcm, reference.sampleRate))).toBe(true);
    expect(p.bytes.equals(toS16le(direct.pcm, reference.sampleRate))).toBe(false);
    // an unknown language is a 400 before any audio
    const bad = await postJson(`${server.url}/v1/audio/speech`, {
      model: 'tiny-qwen3tts',
      input: text,
      language: 'xx',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_value');
  });
});

describe('POST /v1/audio/speech with a full queue', () => {
  it('a request beyond the line is 429 queue_full; the one running is answered', async () => {
    const tts = await tinyPocketTtsFixture({ eosBias: -100 });
    const dir = mkdtempSync(join(tmpdir(), 'mm-speech-'));
    const ref = join(dir, 'ref.wav');
    writeFileSync(
      ref,
      encodeWav(synthAudio(1, 24000, [{ kind: 'tone', hz: 220, amplitude: 0.3 }]), {
        sampleRate: 24000,
      }),
    );
    const server = await startTiny({
      threads: 1,
      limits: { maxQueue: 0 },
      speech: { model: tts.model, mmproj: tts.mmproj, modelId: 'p', voices: { ref }, threads: 1 },
    });
    try {
      const body = { model: 'p', input: 'Only one at a time, please.', response_format: 'pcm' };
      const [a, b] = await Promise.all([speech(server.url, body), speech(server.url, body)]);
      const statuses = [a.status, b.status].sort();
      expect(statuses).toEqual([200, 429]);
      const full = a.status === 429 ? a : b;
      expect(JSON.parse(full.bytes.toString()).error.code).toBe('queue_full');
      expect((a.status === 200 ? a : b).bytes.length).toBeGreaterThan(0);
      const again = await speech(server.url, body);
      expect(again.status).toBe(200);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a speech model that cannot be served stops the start with a typed error', () => {
  it('a vision mmproj, a chat model as talker, bad voice names and files', async () => {
    const tts = await tinyPocketTtsFixture({ eosBias: -100 });
    const cases: [Partial<SpeechServeOptions>, string][] = [
      [{ mmproj: tiny.mmproj }, 'MM_MODALITY_UNSUPPORTED'],
      [{ model: tiny.llm }, 'MM_MODEL_MISMATCH'],
      [{ voices: { 'a b': tiny.llm } }, 'MM_INVALID_ARGUMENT'],
      [{ voices: { a: '/nonexistent/ref.wav' } }, 'MM_FILE_NOT_FOUND'],
      [{ voices: { a: tiny.llm } }, 'MM_AUDIO_DECODE'],
      [{ defaultVoice: 'nobody' }, 'MM_INVALID_ARGUMENT'],
      [{ limits: { maxFrames: 0 } }, 'MM_INVALID_ARGUMENT'],
      [{ modelId: 'tiny-shapes-llm' }, 'MM_INVALID_ARGUMENT'],
    ];
    for (const [edit, code] of cases) {
      const err = await startTiny({
        threads: 1,
        speech: { model: tts.model, mmproj: tts.mmproj, threads: 1, ...edit },
      }).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (e: unknown) => e as { code?: string },
      );
      expect({ edit, code: err?.code }).toEqual({ edit, code });
    }
  });
});

describe('POST /v1/audio/speech without a speech model', () => {
  let server: MmServer;
  beforeAll(async () => {
    server = await startTiny({ threads: 1 });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('is a typed 404 and /health has no speech', async () => {
    const r = await postJson(`${server.url}/v1/audio/speech`, { model: 'x', input: 'hi' });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('no_speech_model');
    expect('speech' in (await health(server.url))).toBe(false);
  });
});
