import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AudioProjector,
  encodeWav,
  mtmdCli,
  repoRoot,
  synthAudio,
  synthWavFixture,
  tinyAudioPair,
} from '@mm/testing';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { postJson, startTiny } from './helpers.test-util.js';
import { startServer } from './server.js';

// mm serve with OpenAI `input_audio` parts, sent by the official openai client: greedy answers as
// llama-mtmd-cli --audio prints them (templates rendered as it renders them: jinja off), on the
// tiny voxtral pair (libmtmd fused) and the tiny qwen2a and ultravox pairs (mm's own audio graphs), streaming and
// not, two requests in flight together; bad parts are 400s with their error code.

const N = 10;

function wavPart(path: string, format: 'wav' | 'mp3' = 'wav') {
  return {
    type: 'input_audio' as const,
    input_audio: { data: readFileSync(path).toString('base64'), format },
  };
}

describe.each<AudioProjector>(['voxtral', 'qwen2a', 'ultravox'])(
  'mm serve, input_audio, %s',
  (projector) => {
    it('answers as llama-mtmd-cli --audio, streaming and not, two requests at once', {
      timeout: 600_000,
    }, async () => {
      const pair = await tinyAudioPair({ projector });
      const sounds = [
        await synthWavFixture(2, { seed: 11 }),
        await synthWavFixture(4, { seed: 12 }),
      ];
      const question = 'What do you hear?';
      const refs: string[] = [];
      for (const wav of sounds) {
        refs.push(
          await mtmdCli({ ...pair, audio: [wav], prompt: question, maxTokens: N, threads: 2 }),
        );
      }
      const server = await startServer({
        model: pair.model,
        mmproj: pair.mmproj,
        port: 0,
        threads: 2,
        parallel: 2,
        jinja: false,
        staticDir: false,
        modelId: 'tiny-audio',
      });
      try {
        const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const ask = (wav: string) => ({
          model: 'tiny-audio',
          messages: [
            {
              role: 'user' as const,
              content: [wavPart(wav), { type: 'text' as const, text: question }],
            },
          ],
          temperature: 0,
          max_tokens: N,
        });
        const answers = await Promise.all(
          sounds.map((wav) => client.chat.completions.create(ask(wav))),
        );
        answers.forEach((a, i) => {
          console.log(
            `${projector} sound ${i}: mm serve ${JSON.stringify(a.choices[0]?.message.content)} llama-mtmd-cli ${JSON.stringify(refs[i])}`,
          );
          expect(a.choices[0]?.message.content).toBe(refs[i]);
          expect(a.usage?.prompt_tokens).toBeGreaterThan(100);
        });
        const s = await client.chat.completions.create({
          ...ask(sounds[0] as string),
          stream: true,
        });
        let text = '';
        for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? '';
        expect(text).toBe(refs[0]);

        // bad parts: 400 with the error code, naming the field
        const bad = async (input_audio: unknown, code: string, param: string) => {
          const e = await client.chat.completions
            .create({
              model: 'tiny-audio',
              messages: [
                {
                  role: 'user',
                  content: [
                    { type: 'input_audio', input_audio } as never,
                    { type: 'text', text: question },
                  ],
                },
              ],
              max_tokens: 2,
            })
            .then(
              () => undefined,
              (x: unknown) => x,
            );
          expect(e).toBeInstanceOf(OpenAI.APIError);
          const err = e as InstanceType<typeof OpenAI.APIError>;
          expect([err.status, err.code, err.param]).toEqual([400, code, param]);
        };
        const where = 'messages[0].content[0].input_audio';
        await bad({ data: '@@@@', format: 'wav' }, 'invalid_base64', `${where}.data`);
        await bad({ data: 'AAA', format: 'wav' }, 'invalid_base64', `${where}.data`);
        await bad({ data: 'AAAA', format: 'ogg' }, 'invalid_audio_format', `${where}.format`);
        await bad({ data: 'AAAA' }, 'invalid_audio_format', `${where}.format`);
        await bad({ data: '', format: 'wav' }, 'invalid_audio', `${where}.data`);
        await bad('AAAA', 'invalid_type', where);
        // well-formed base64 that is not audio: the decoder's typed error, as a 400
        const garbage = Buffer.from('this is not a sound at all').toString('base64');
        const padded = garbage + '='.repeat((4 - (garbage.length % 4)) % 4);
        const g = await postJson(`${server.url}/v1/chat/completions`, {
          model: 'tiny-audio',
          messages: [
            {
              role: 'user',
              content: [{ type: 'input_audio', input_audio: { data: padded, format: 'mp3' } }],
            },
          ],
        });
        expect([g.status, g.body.error.code]).toEqual([400, 'invalid_audio']);
        // flac-labelled bytes are decoded by what they are; the answer is the same as for wav
        const f = await client.chat.completions.create({
          ...ask(sounds[0] as string),
          messages: [
            {
              role: 'user',
              content: [
                // the openai client's types know wav and mp3; the server takes flac too
                {
                  ...wavPart(sounds[0] as string),
                  input_audio: {
                    data: readFileSync(sounds[0] as string).toString('base64'),
                    format: 'flac',
                  },
                } as never,
                { type: 'text', text: question },
              ],
            },
          ],
        });
        expect(f.choices[0]?.message.content).toBe(refs[0]);
        // MP3 (llama.cpp's own test-2.mp3): decoded as libmtmd decodes it, the same answer
        const mp3 = join(
          repoRoot(),
          'native',
          'vendor',
          'llama.cpp',
          'tools',
          'mtmd',
          'test-2.mp3',
        );
        const mp3Ref = await mtmdCli({
          ...pair,
          audio: [mp3],
          prompt: question,
          maxTokens: N,
          threads: 2,
        });
        const m = await client.chat.completions.create({
          ...ask(sounds[0] as string),
          messages: [
            { role: 'user', content: [wavPart(mp3, 'mp3'), { type: 'text', text: question }] },
          ],
        });
        console.log(
          `${projector} test-2.mp3: mm serve ${JSON.stringify(m.choices[0]?.message.content)} llama-mtmd-cli ${JSON.stringify(mp3Ref)}`,
        );
        expect(m.choices[0]?.message.content).toBe(mp3Ref);
        // the server still answers after the errors
        const again = await client.chat.completions.create(ask(sounds[1] as string));
        expect(again.choices[0]?.message.content).toBe(refs[1]);
      } finally {
        await server.close();
      }
    });
  },
);

describe('mm serve, input_audio limits', () => {
  it('too many sounds, too many bytes, too long, a vision-only model: 400 with the code', {
    timeout: 300_000,
  }, async () => {
    const pair = await tinyAudioPair({ projector: 'voxtral' });
    const server = await startServer({
      model: pair.model,
      mmproj: pair.mmproj,
      port: 0,
      threads: 2,
      jinja: false,
      staticDir: false,
      modelId: 'tiny-audio',
      limits: { maxAudio: 1, maxAudioBytes: 200_000, maxAudioSeconds: 5 },
    });
    try {
      const post = (content: unknown[]) =>
        postJson(`${server.url}/v1/chat/completions`, {
          model: 'tiny-audio',
          messages: [{ role: 'user', content }],
          max_tokens: 2,
        });
      const b64 = (seconds: number) =>
        Buffer.from(
          encodeWav(synthAudio(seconds, 16000, [{ kind: 'tone', hz: 440, amplitude: 0.3 }]), {
            sampleRate: 16000,
          }),
        ).toString('base64');
      const part = (data: string) => ({
        type: 'input_audio',
        input_audio: { data, format: 'wav' },
      });
      const two = await post([part(b64(1)), part(b64(1))]);
      expect([two.status, two.body.error.code]).toEqual([400, 'too_many_audio']);
      const big = await post([part(b64(7))]);
      expect([big.status, big.body.error.code]).toEqual([400, 'audio_too_large']);
      const long = await post([part(b64(6))]);
      expect([long.status, long.body.error.code]).toEqual([400, 'audio_too_long']);
      const sys = await postJson(`${server.url}/v1/chat/completions`, {
        model: 'tiny-audio',
        messages: [{ role: 'system', content: [part(b64(1))] }],
      });
      expect(sys.status).toBe(400);
      const ok = await post([part(b64(1)), { type: 'text', text: 'Hi' }]);
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    } finally {
      await server.close();
    }
    const vision = await startTiny({ staticDir: false });
    try {
      const r = await postJson(`${vision.url}/v1/chat/completions`, {
        model: vision.modelId,
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'input_audio',
                input_audio: {
                  data: readFileSync(await synthWavFixture(1)).toString('base64'),
                  format: 'wav',
                },
              },
              { type: 'text', text: 'Hi' },
            ],
          },
        ],
      });
      expect([r.status, r.body.error.code]).toEqual([400, 'modality_unsupported']);
    } finally {
      await vision.close();
    }
  });
});
