import { readFileSync } from 'node:fs';
import { Audio } from '@mm/encoders';
import { MmError } from '@mm/errors';
import {
  type AudioProjector,
  encodeWav,
  mtmdCli,
  synthAudio,
  syntheticPngFixture,
  synthWavFixture,
  type TinyAudioPair,
  tinyAudioPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatResult } from './chat.js';
import { expectPromptLayoutLikeMtmd, tiny } from './helpers.test-util.js';
import { usesMrope } from './media.js';
import type { ContentPart, Message } from './messages.js';
import { MultimodalModel } from './multimodal-model.js';

// Audio through @mm/core against libmtmd, on @mm/testing's tiny Whisper-style pairs: voxtral goes
// through libmtmd's fused encoder + projector (mm has no own voxtral projector), ultravox / qwen2a /
// qwen2.5o through mm's own AudioEncoder + audio Projector. For each: the prompt laid out as
// mtmd_tokenize lays it out (text tokens, the begin / end marker text, one chunk per 30 s, nTokens,
// nPos, 1-D positions, embeddings), greedy text as llama-mtmd-cli --audio prints it, the embedding
// cache on a repeated sound. qwen2.5o (M-RoPE backbone, vision + audio in one mmproj) takes a picture
// and a sound in one message. Then the typed errors.

function user(parts: ContentPart[]): Message[] {
  return [{ role: 'user', content: parts }];
}

/** Our greedy answer to `messages` next to llama-mtmd-cli's for the same files and question. */
async function expectGreedyLikeCli(
  model: MultimodalModel,
  pair: TinyAudioPair,
  media: { images?: string[]; audio?: string[] },
  question: string,
  label: string,
): Promise<ChatResult> {
  const maxTokens = 12;
  const ref = await mtmdCli({
    model: pair.model,
    mmproj: pair.mmproj,
    ...media,
    prompt: question,
    maxTokens,
    threads: 2,
  });
  await model.reset();
  model.imageCache.clear();
  const parts: ContentPart[] = [
    ...(media.images ?? []).map((image) => ({ type: 'image' as const, image })),
    ...(media.audio ?? []).map((audio) => ({ type: 'audio' as const, audio })),
    { type: 'text', text: question },
  ];
  const ours = await model.chat(user(parts), { maxTokens });
  console.log(`${label}: ours ${JSON.stringify(ours.text)} llama-mtmd-cli ${JSON.stringify(ref)}`);
  expect(ours.text).toBe(ref);
  expect(ours.text.length).toBeGreaterThan(0);
  return ours;
}

const PATHS: [AudioProjector, 'own graph' | 'libmtmd (fused)'][] = [
  ['voxtral', 'libmtmd (fused)'],
  ['ultravox', 'own graph'],
  ['qwen2a', 'own graph'],
  ['qwen2.5o', 'own graph'],
];

describe.each(PATHS)('%s audio (%s)', (projector, path) => {
  let pair: TinyAudioPair;
  let model: MultimodalModel;
  beforeAll(async () => {
    pair = await tinyAudioPair({ projector });
    model = await MultimodalModel.load({ model: pair.model, mmproj: pair.mmproj, threads: 2 });
  }, 300_000);
  afterAll(() => model?.dispose());

  it('takes audio on the expected path, at 16 kHz', () => {
    expect(model.audioPath).toBe(path);
    expect(model.components.audioSampleRate).toBe(16000);
    const omni = projector === 'qwen2.5o';
    expect(model.modalities).toEqual(omni ? ['image', 'audio'] : ['audio']);
    expect(usesMrope(model.backbone)).toBe(omni);
    if (path === 'libmtmd (fused)') {
      expect(model.fused?.info.hasAudio).toBe(true);
      expect(model.audioEncoder).toBeUndefined();
    } else {
      expect(model.audioEncoder?.projectorType).toBe(omni ? 'qwen2a' : projector);
      expect(model.fused).toBeUndefined();
    }
  });

  it.each([3, 31])(
    'a %d s sound: the prompt laid out as mtmd_tokenize lays it out',
    {
      timeout: 300_000,
    },
    async (seconds) => {
      const wav = await synthWavFixture(seconds, { seed: 1 });
      const messages = user([
        { type: 'audio', audio: wav },
        { type: 'text', text: 'What do you hear?' },
      ]);
      const m = await expectPromptLayoutLikeMtmd(model, toFiles(pair), messages, [wav], {
        label: `${projector} ${seconds} s`,
      });
      expect(m.media.length).toBe(seconds > 30 ? 2 : 1);
      for (const c of m.media) {
        expect(c.ref.type).toBe('audio');
        expect(c.ours.chunk.nTokens).toBe(pair.tokensPerChunk);
        expect(c.ours.nPos).toBe(pair.tokensPerChunk);
        expect(c.ours.chunk.sequential).toBe(true);
      }
      expect(m.ours.mediaPath).toBe(path);
      console.log(`${projector} ${seconds} s: max |diff| ${m.worst}, cosine >= ${m.cosMin}`);
    },
  );

  it('greedy text equals llama-mtmd-cli --audio; a repeated sound comes from the cache', {
    timeout: 600_000,
  }, async () => {
    const wav = await synthWavFixture(4, { seed: 2 });
    const first = await expectGreedyLikeCli(
      model,
      pair,
      { audio: [wav] },
      'Describe the sound.',
      projector,
    );
    expect(first.stats.imageCacheHits).toBe(0);
    expect(first.stats.mediaPath).toBe(path);
    // the same samples as bytes, as a data: URL and as an Audio: cache hits, the same answer
    const bytes = readFileSync(wav);
    const url = `data:audio/wav;base64,${bytes.toString('base64')}`;
    const decoded = await Audio.fromFile(wav);
    for (const audio of [bytes, url, decoded]) {
      await model.reset();
      const again = await model.chat(
        user([
          { type: 'audio', audio },
          { type: 'text', text: 'Describe the sound.' },
        ]),
        { maxTokens: 12 },
      );
      expect(again.stats.imageCacheHits).toBe(1);
      expect(again.stats.encodeMs).toBe(0);
      expect(again.text).toBe(first.text);
    }
    // an Audio at another rate is resampled as libmtmd's decoder would: the same samples, a hit
    const at48k = await Audio.fromFile(wav, { sampleRate: 48000 });
    const e = await model.embedAudio(at48k);
    expect(e.chunks.length).toBeGreaterThan(0);
  });

  it("an aborted embed rejects with the signal's reason; the model answers afterwards", async () => {
    const wav = await synthWavFixture(2, { seed: 3 });
    model.imageCache.clear();
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(model.embedAudio(wav, { signal: ac.signal })).rejects.toThrow('stop');
    const e = await model.embedAudio(wav);
    expect(e.cached).toBe(false);
    expect(e.path).toBe(path);
  });
});

describe('a picture and a sound in one message (qwen2.5o: vision + audio, M-RoPE)', () => {
  let pair: TinyAudioPair;
  let model: MultimodalModel;
  beforeAll(async () => {
    pair = await tinyAudioPair({ projector: 'qwen2.5o' });
    model = await MultimodalModel.load({ model: pair.model, mmproj: pair.mmproj, threads: 2 });
  }, 300_000);
  afterAll(() => model?.dispose());

  it('layout and greedy text equal libmtmd', { timeout: 600_000 }, async () => {
    const image = await syntheticPngFixture(64, 48, 2);
    const wav = await synthWavFixture(3, { seed: 4 });
    const m = await expectPromptLayoutLikeMtmd(
      model,
      toFiles(pair),
      user([
        { type: 'image', image },
        { type: 'audio', audio: wav },
        { type: 'text', text: 'What do you see and hear?' },
      ]),
      [image, wav],
      { label: 'qwen2.5o image + audio' },
    );
    expect(m.media.map((c) => c.ref.type)).toEqual(['image', 'audio']);
    expect(m.media[0]?.ours.chunk.sequential).toBeUndefined();
    // M-RoPE: the picture's span takes max(nx, ny) positions, the sound's one per row
    const [img, aud] = m.media;
    expect(img?.ours.nPos).toBe(Math.max(img?.ours.chunk.nx ?? 0, img?.ours.chunk.ny ?? 0));
    expect(aud?.ours.nPos).toBe(aud?.ours.chunk.nTokens);
    const r = await expectGreedyLikeCli(
      model,
      pair,
      { images: [image], audio: [wav] },
      'What do you see and hear?',
      'qwen2.5o image + audio',
    );
    expect(r.stats.images).toBe(2);
  });
});

async function code(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!MmError.isInstance(e)) throw new Error(`not an MmError: ${String(e)}`);
  return e.code;
}

describe('bad audio gives typed errors', () => {
  let pair: TinyAudioPair;
  let model: MultimodalModel;
  beforeAll(async () => {
    pair = await tinyAudioPair({ projector: 'voxtral' });
    model = await MultimodalModel.load({
      model: pair.model,
      mmproj: pair.mmproj,
      threads: 2,
      maxAudioSeconds: 10,
    });
  }, 300_000);
  afterAll(() => model?.dispose());

  const ask = (audio: unknown) =>
    model.chat(
      user([
        { type: 'audio', audio: audio as string },
        { type: 'text', text: 'Hi' },
      ]),
      { maxTokens: 2 },
    );

  it('corrupt, cut, empty, zero-length and over-long sound', async () => {
    const wav = encodeWav(synthAudio(1, 16000, [{ kind: 'tone', hz: 300, amplitude: 0.5 }]), {
      sampleRate: 16000,
    });
    const garbage = new Uint8Array(4000).map((_, i) => (i * 37) & 0xff);
    expect(await code(ask(garbage))).toBe('MM_AUDIO_DECODE');
    expect(await code(ask(wav.slice(0, 30)))).toBe('MM_AUDIO_DECODE');
    expect(await code(ask(new Uint8Array(0)))).toBe('MM_AUDIO_DECODE');
    // a valid WAV header with no sample
    expect(await code(ask(encodeWav(new Float32Array(0), { sampleRate: 16000 })))).toBe(
      'MM_AUDIO_DECODE',
    );
    const long = encodeWav(synthAudio(11, 16000, [{ kind: 'noise', amplitude: 0.1, seed: 1 }]), {
      sampleRate: 16000,
    });
    expect(await code(ask(long))).toBe('MM_AUDIO_TOO_LONG');
    const longAudio = await Audio.fromBuffer(long);
    expect(await code(ask(longAudio))).toBe('MM_AUDIO_TOO_LONG');
    expect(await code(ask('data:image/png;base64,iVBORw0KGgo='))).toBe('MM_AUDIO_DECODE');
    expect(await code(ask('data:audio/wav,RIFF'))).toBe('MM_AUDIO_DECODE');
    expect(await code(ask('/nonexistent/sound.wav'))).toBe('MM_FILE_NOT_FOUND');
    expect(await code(ask(42))).toBe('MM_INVALID_ARGUMENT');
    // the model still answers
    const ok = await ask(wav);
    expect(ok.text.length).toBeGreaterThan(0);
  });

  it('OpenAI input_audio parts: bad base64 or format is MM_INVALID_ARGUMENT; good ones play', async () => {
    const wav = Buffer.from(
      encodeWav(synthAudio(1, 16000, [{ kind: 'tone', hz: 500, amplitude: 0.5 }]), {
        sampleRate: 16000,
      }),
    ).toString('base64');
    const send = (input_audio: unknown) =>
      model.chat(
        [
          {
            role: 'user',
            content: [
              { type: 'input_audio', input_audio } as unknown as ContentPart,
              { type: 'text', text: 'Hi' },
            ],
          },
        ],
        { maxTokens: 2 },
      );
    expect(await code(send({ data: '!!!not base64!!!', format: 'wav' }))).toBe(
      'MM_INVALID_ARGUMENT',
    );
    expect(await code(send({ data: 'abc', format: 'wav' }))).toBe('MM_INVALID_ARGUMENT');
    expect(await code(send({ data: wav, format: 'ogg' }))).toBe('MM_INVALID_ARGUMENT');
    expect(await code(send({ data: wav }))).toBe('MM_INVALID_ARGUMENT');
    expect(await code(send(null))).toBe('MM_INVALID_ARGUMENT');
    // mp3 bytes that are a WAV still decode (the bytes decide), garbage does not
    expect(
      await code(send({ data: Buffer.from('garbage!').toString('base64'), format: 'mp3' })),
    ).toBe('MM_AUDIO_DECODE');
    const r = await send({ data: wav, format: 'wav' });
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('a picture to an audio-only model, a sound to a vision-only model: MM_MODALITY_UNSUPPORTED before encoding', {
    timeout: 120_000,
  }, async () => {
    const image = await syntheticPngFixture(32, 32, 1);
    const e1 = await code(
      model.chat(
        user([
          { type: 'image', image },
          { type: 'text', text: 'Hi' },
        ]),
      ),
    );
    expect(e1).toBe('MM_MODALITY_UNSUPPORTED');
    const vision = await MultimodalModel.load({ model: tiny.llm, mmproj: tiny.mmproj, threads: 2 });
    try {
      expect(vision.modalities).toEqual(['image']);
      const wav = await synthWavFixture(1);
      expect(
        await code(
          vision.chat(
            user([
              { type: 'image', image },
              { type: 'audio', audio: wav },
              { type: 'text', text: 'Hi' },
            ]),
          ),
        ),
      ).toBe('MM_MODALITY_UNSUPPORTED');
      // nothing was encoded: the picture is not in the cache
      expect(vision.imageCache.size).toBe(0);
      expect(await code(vision.embedAudio(wav))).toBe('MM_MODALITY_UNSUPPORTED');
    } finally {
      vision.dispose();
    }
    const textOnly = await MultimodalModel.load({ model: pair.model, threads: 2 });
    try {
      const wav = await synthWavFixture(1);
      expect(
        await code(
          textOnly.chat(
            user([
              { type: 'audio', audio: wav },
              { type: 'text', text: 'Hi' },
            ]),
          ),
        ),
      ).toBe('MM_MODALITY_UNSUPPORTED');
    } finally {
      textOnly.dispose();
    }
  });
});

function toFiles(pair: TinyAudioPair): { llm: string; mmproj: string } {
  return { llm: pair.model, mmproj: pair.mmproj };
}
