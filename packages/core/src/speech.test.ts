import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toWav } from '@mm/decoders';
import {
  encodeWav,
  llamaTts,
  synthAudio,
  tinyPocketTtsFixture,
  tinyQwen3TtsPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PcmChunk, pocketttsChunks, pocketttsPrepareText, SpeechModel } from './index.js';
import { MultimodalModel } from './multimodal-model.js';

// Whole text-to-speech runs through SpeechModel against llama.cpp's own llama-tts (built
// test-only from the vendored tree) with the same seed and flags: the talker on libllama, the
// output projector and audio decoder on mm's own graphs, libmtmd's on the other side.

const dir = mkdtempSync(join(tmpdir(), 'mm-speech-'));
const voicePath = join(dir, 'voice.wav');
writeFileSync(
  voicePath,
  encodeWav(
    synthAudio(1.2, 24000, [
      { kind: 'tone', hz: 220, amplitude: 0.3 },
      { kind: 'noise', amplitude: 0.05, seed: 3 },
    ]),
    { sampleRate: 24000 },
  ),
);

/** max |ours − theirs| with their 16-bit samples read back as s / 32767, and whether the 16-bit files agree. */
function compare(ours: Float32Array, rate: number, ref: { wav: Buffer; pcm16: Int16Array }) {
  expect(ours.length).toBe(ref.pcm16.length);
  let worst = 0;
  for (let i = 0; i < ours.length; i++) {
    const v = Math.max(-1, Math.min(1, ours[i] as number));
    worst = Math.max(worst, Math.abs(v - (ref.pcm16[i] as number) / 32767));
  }
  return { worst, sameWav: toWav(ours, rate).equals(ref.wav) };
}

async function gather(it: AsyncIterable<PcmChunk>): Promise<PcmChunk[]> {
  const out: PcmChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

// llama-tts's libmtmd rebuilds and reallocates its gen graph on every call (about a second per
// Qwen3-TTS frame on 2 cores, far more on a busy machine): the runs are short, the timeouts long.
const SLOW = 900_000;

describe('Qwen3-TTS: SpeechModel vs llama-tts', () => {
  let q: Awaited<ReturnType<typeof tinyQwen3TtsPair>>;
  let model: SpeechModel;
  beforeAll(async () => {
    q = await tinyQwen3TtsPair();
    model = await SpeechModel.load({ model: q.model, mmproj: q.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it(
    'a seeded run writes llama-tts samples (talker sampling, code predictor, code2wav) within 1e-4',
    async () => {
      const text = 'Hello world, this is a test.';
      const ref = await llamaTts({
        model: q.model,
        mmproj: q.mmproj,
        prompt: text,
        seed: 42,
        maxFrames: 8,
      });
      const r = await model.speakAll(text, { sampling: { seed: 42 }, maxFrames: 8 });
      const { worst, sameWav } = compare(r.pcm, r.sampleRate, ref);
      console.log(
        `Qwen3-TTS, 8 frames, seed 42: ${r.pcm.length} samples, max |diff| vs llama-tts ${worst.toExponential(2)} (16-bit files identical: ${sameWav}); mm ${r.totalMs.toFixed(0)} ms, llama-tts ${ref.wallMs.toFixed(0)} ms (process)`,
      );
      expect(r.frames).toBe(8);
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(sameWav).toBe(true);
    },
    SLOW,
  );

  it(
    'with a voice reference and another language (speaker encoder row in the prompt)',
    async () => {
      const text = 'Guten Tag.';
      const ref = await llamaTts({
        model: q.model,
        mmproj: q.mmproj,
        prompt: text,
        voice: voicePath,
        language: 'de',
        seed: 5,
        maxFrames: 4,
        temperature: 0,
      });
      const r = await model.speakAll(text, {
        voice: voicePath,
        language: 'de',
        sampling: { seed: 5, temperature: 0 },
        maxFrames: 4,
      });
      const { worst, sameWav } = compare(r.pcm, r.sampleRate, ref);
      console.log(`Qwen3-TTS with a voice, greedy talker: max |diff| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(sameWav).toBe(true);
      // the voice changes the speech
      const plain = await model.speakAll(text, {
        language: 'de',
        sampling: { seed: 5, temperature: 0 },
        maxFrames: 4,
      });
      expect(toWav(plain.pcm, 24000).equals(toWav(r.pcm, 24000))).toBe(false);
    },
    SLOW,
  );

  it('streams: the first PCM chunk arrives long before the last frame (72-frame windows)', async () => {
    const chunks = await gather(
      model.speak('Streaming speech, one window at a time.', {
        sampling: { seed: 1 },
        maxFrames: 160,
      }),
    );
    const frames = chunks.at(-1)?.totalFrames ?? 0;
    const first = chunks[0] as PcmChunk;
    const last = chunks.at(-1) as PcmChunk;
    console.log(
      `Qwen3-TTS streaming: ${chunks.length} chunks over ${frames} frames; first chunk after ${first.elapsedMs.toFixed(0)} ms (${first.totalFrames} frames), last after ${last.elapsedMs.toFixed(0)} ms`,
    );
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(first.frames).toBe(72);
    expect(first.elapsedMs).toBeLessThan(last.elapsedMs);
    expect(first.pcm.length).toBe(72 * q.samplesPerFrame);
  });

  it('bad input: empty text, unknown language, a corrupt voice file, an abort mid-speech; the model stays usable', async () => {
    expect(() => model.speak('   ')).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
    await expect(
      gather(model.speak('Hi there.', { language: 'klingon', maxFrames: 2 })),
    ).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    const corrupt = join(dir, 'corrupt.wav');
    writeFileSync(corrupt, Buffer.from('RIFF\x10\x00\x00\x00WAVEfmt garbage garbage garbage'));
    const err = await gather(model.speak('Hi there.', { voice: corrupt, maxFrames: 2 })).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: expect.stringMatching(/^MM_/) });
    console.log(`corrupt voice file: ${err.code}`);
    await expect(
      gather(model.speak('Hi there.', { voice: join(dir, 'absent.wav'), maxFrames: 2 })),
    ).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });

    const before = await model.speakAll('After the abort.', {
      sampling: { seed: 3 },
      maxFrames: 6,
    });
    const ac = new AbortController();
    let seen = 0;
    const aborted = await gather(
      model.speak('This speech is cut short.', {
        sampling: { seed: 3 },
        maxFrames: 400,
        signal: ac.signal,
        onFrame: (n) => {
          seen = n;
          if (n === 5) ac.abort(new Error('stop'));
        },
      }),
    ).catch((e) => e);
    expect(aborted).toBeInstanceOf(Error);
    expect((aborted as Error).message).toBe('stop');
    expect(seen).toBeLessThan(8);
    const after = await model.speakAll('After the abort.', { sampling: { seed: 3 }, maxFrames: 6 });
    expect(toWav(after.pcm, 24000).equals(toWav(before.pcm, 24000))).toBe(true);
  });
});

describe('Pocket TTS: SpeechModel vs llama-tts', () => {
  let p: Awaited<ReturnType<typeof tinyPocketTtsFixture>>;
  let model: SpeechModel;
  beforeAll(async () => {
    p = await tinyPocketTtsFixture();
    model = await SpeechModel.load({ model: p.model, mmproj: p.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it(
    'a seeded run with a voice writes llama-tts samples (flow head, EOS head, Mimi decoder) within 1e-4',
    async () => {
      const text = 'Hello world, this is a test.';
      const ref = await llamaTts({
        model: p.model,
        mmproj: p.mmproj,
        prompt: text,
        voice: voicePath,
        seed: 42,
        maxFrames: 30,
      });
      const r = await model.speakAll(text, {
        voice: voicePath,
        sampling: { seed: 42 },
        maxFrames: 30,
      });
      const { worst, sameWav } = compare(r.pcm, r.sampleRate, ref);
      console.log(
        `Pocket TTS, seed 42: ${r.pcm.length} samples, max |diff| ${worst.toExponential(2)}; mm ${r.totalMs.toFixed(0)} ms, llama-tts ${ref.wallMs.toFixed(0)} ms`,
      );
      expect(r.pcm.length).toBeGreaterThan(0);
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(sameWav).toBe(true);
    },
    SLOW,
  );

  it(
    'a text over 50 tokens goes in chunks re-prompted after the voice, as llama-tts does',
    async () => {
      const text =
        'The quick brown fox jumps over the lazy dog. Then it runs away; far away, into the forest, where nobody can find it. The dog sleeps on and dreams of bones and balls and long walks by the river on sunny days.';
      const ref = await llamaTts({
        model: p.model,
        mmproj: p.mmproj,
        prompt: text,
        voice: voicePath,
        seed: 7,
        maxFrames: 400,
      });
      const ids = model.parts.backbone.tokenize(pocketttsPrepareText(text, false), {
        addBos: false,
      });
      expect(pocketttsChunks(model.parts.backbone, [...ids]).length).toBeGreaterThanOrEqual(2);
      const r = await model.speakAll(text, {
        voice: voicePath,
        sampling: { seed: 7 },
        maxFrames: 400,
      });
      const { worst, sameWav } = compare(r.pcm, r.sampleRate, ref);
      console.log(
        `Pocket TTS, 2 chunks: ${r.pcm.length} samples, max |diff| ${worst.toExponential(2)}`,
      );
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(sameWav).toBe(true);
    },
    SLOW,
  );
});

describe('pairs that do not belong together', () => {
  it('a Qwen3-TTS talker with a Pocket TTS mmproj, a vision mmproj, and mm run on a speech mmproj are typed errors', async () => {
    const q = await tinyQwen3TtsPair();
    const p = await tinyPocketTtsFixture();
    await expect(SpeechModel.load({ model: q.model, mmproj: p.mmproj })).rejects.toMatchObject({
      code: 'MM_MODEL_MISMATCH',
    });
    await expect(SpeechModel.load({ model: p.model, mmproj: q.mmproj })).rejects.toMatchObject({
      code: 'MM_MODEL_MISMATCH',
    });
    await expect(MultimodalModel.load({ model: q.model, mmproj: q.mmproj })).rejects.toMatchObject({
      code: 'MM_MODALITY_UNSUPPORTED',
      message: expect.stringContaining('mm tts'),
    });
    await expect(
      SpeechModel.load({ model: q.model, mmproj: join(dir, 'absent.gguf') }),
    ).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
  });
});
