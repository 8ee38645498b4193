import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import {
  audioDecodeOracleBinary,
  encodeFlac,
  encodeWav,
  interleave,
  repoRoot,
  runMtmdAudioDecode,
  runMtmdMel,
  synthAudio,
  type WavEncoding,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { Audio, logMelSpectrogram } from './index.js';

/**
 * Audio decoding equals libmtmd's (mtmd-helper.cpp's decode_audio_from_buf through the oracle):
 * the same samples, to the bit, for WAV of every PCM encoding, mono and multichannel, at rates
 * that need resampling, and for the MP3 in the vendored llama.cpp tree.
 */

const SR = 16_000;
const maxDiff = (a: Float32Array, b: Float32Array): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

const dir = mkdtempSync(join(tmpdir(), 'mm-audio-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const left = (rate: number, seconds: number) =>
  synthAudio(seconds, rate, [{ kind: 'chirp', fromHz: 100, toHz: rate / 2 - 100, amplitude: 0.4 }]);
const right = (rate: number, seconds: number) =>
  synthAudio(seconds, rate, [
    { kind: 'tone', hz: 997, amplitude: 0.3 },
    { kind: 'noise', amplitude: 0.1, seed: 7 },
  ]);

interface WavCase {
  encoding: WavEncoding;
  rate: number;
  channels: number;
  seconds: number;
}

const wavCases: WavCase[] = [
  { encoding: 's16', rate: 44_100, channels: 2, seconds: 1.3 },
  { encoding: 's16', rate: 16_000, channels: 1, seconds: 2 },
  { encoding: 'u8', rate: 8_000, channels: 1, seconds: 1.1 },
  { encoding: 's24', rate: 48_000, channels: 2, seconds: 0.7 },
  { encoding: 's32', rate: 22_050, channels: 1, seconds: 0.9 },
  { encoding: 'f32', rate: 32_000, channels: 2, seconds: 1 },
  { encoding: 'f32', rate: 16_000, channels: 1, seconds: 0.5 },
  { encoding: 's16', rate: 11_025, channels: 6, seconds: 0.4 },
];

function wavOf(c: WavCase): Uint8Array {
  const chans = Array.from({ length: c.channels }, (_, i) =>
    i % 2 === 0 ? left(c.rate, c.seconds) : right(c.rate, c.seconds),
  );
  return encodeWav(interleave(chans), {
    sampleRate: c.rate,
    channels: c.channels,
    encoding: c.encoding,
  });
}

describe.skipIf(audioDecodeOracleBinary() === undefined)('audio decoding vs libmtmd', () => {
  it.each(wavCases)('WAV $encoding, $rate Hz, $channels channel(s)', async (c) => {
    const bytes = wavOf(c);
    const [ours, ref] = await Promise.all([Audio.fromBuffer(bytes), runMtmdAudioDecode(bytes, SR)]);
    expect(ref.ok).toBe(true);
    expect(ours.sampleRate).toBe(SR);
    expect(ours.samples.length).toBe(ref.samples.length);
    expect(ours.samples.length).toBeGreaterThan(Math.floor(c.seconds * SR) - 2);
    const d = maxDiff(ours.samples, ref.samples);
    console.log(
      `WAV ${c.encoding} ${c.rate} Hz x${c.channels}: ${ours.samples.length} samples, max |diff| ${d}`,
    );
    expect(d).toBe(0);
  });

  const mp3 = join(repoRoot(), 'native', 'vendor', 'llama.cpp', 'tools', 'mtmd', 'test-2.mp3');
  it.skipIf(!existsSync(mp3))(
    "MP3 (llama.cpp's tools/mtmd/test-2.mp3), through the mel too",
    async () => {
      const bytes = new Uint8Array(readFileSync(mp3));
      const [ours, ref] = await Promise.all([Audio.fromFile(mp3), runMtmdAudioDecode(bytes, SR)]);
      expect(ref.ok).toBe(true);
      expect(ours.samples.length).toBe(ref.samples.length);
      const d = maxDiff(ours.samples, ref.samples);
      const [melOurs, melRef] = await Promise.all([
        logMelSpectrogram(ours.samples, SR, { nMel: 128 }),
        runMtmdMel(ref.samples, 128),
      ]);
      expect(melOurs.chunks.length).toBe(melRef.chunks.length);
      const dm = Math.max(
        ...melOurs.chunks.map((m, i) => maxDiff(m, melRef.chunks[i] as Float32Array)),
      );
      console.log(
        `MP3: ${ours.samples.length} samples (${ours.duration.toFixed(2)} s), max |diff| ${d}; mel ${melOurs.chunks.length} chunks, max |diff| ${dm}`,
      );
      expect(d).toBe(0);
      expect(dm).toBeLessThanOrEqual(1e-4);
    },
  );

  it.each([
    { rate: 16_000, channels: 1, seconds: 0.6 },
    { rate: 44_100, channels: 2, seconds: 1.1 },
    { rate: 48_000, channels: 1, seconds: 0.35 },
  ])('FLAC, $rate Hz, $channels channel(s)', async (c) => {
    const chans = Array.from({ length: c.channels }, (_, i) =>
      i % 2 === 0 ? left(c.rate, c.seconds) : right(c.rate, c.seconds),
    );
    const bytes = encodeFlac(interleave(chans), { sampleRate: c.rate, channels: c.channels });
    const [ours, ref] = await Promise.all([Audio.fromBuffer(bytes), runMtmdAudioDecode(bytes, SR)]);
    expect(ref.ok).toBe(true);
    expect(ours.samples.length).toBe(ref.samples.length);
    expect(ours.samples.length).toBeGreaterThan(Math.floor(c.seconds * SR) - 2);
    const d = maxDiff(ours.samples, ref.samples);
    console.log(
      `FLAC ${c.rate} Hz x${c.channels}: ${ours.samples.length} samples, max |diff| ${d}`,
    );
    expect(d).toBe(0);
    // the same samples as the 16-bit WAV of the same signal
    const wav = await Audio.fromBuffer(
      encodeWav(interleave(chans), { sampleRate: c.rate, channels: c.channels, encoding: 's16' }),
    );
    expect(maxDiff(ours.samples, wav.samples)).toBe(0);
  });

  it('a WAV whose data chunk is cut short decodes to what libmtmd gives', async () => {
    const full = wavOf({ encoding: 's16', rate: 44_100, channels: 2, seconds: 1 });
    const cut = full.subarray(0, 44 + 4 * 20_000 + 3);
    const [ours, ref] = await Promise.all([Audio.fromBuffer(cut), runMtmdAudioDecode(cut, SR)]);
    expect(ref.ok).toBe(true);
    expect(ours.samples.length).toBe(ref.samples.length);
    expect(maxDiff(ours.samples, ref.samples)).toBe(0);
  });

  it('fromPCM equals libmtmd decoding an f32 WAV of the same samples, and copies 16 kHz mono', async () => {
    const stereo = interleave([left(44_100, 1.2), right(44_100, 1.2)]);
    const wav = encodeWav(stereo, { sampleRate: 44_100, channels: 2, encoding: 'f32' });
    const [ours, ref] = await Promise.all([
      Audio.fromPCM(stereo, 44_100, { channels: 2 }),
      runMtmdAudioDecode(wav, SR),
    ]);
    expect(ours.samples.length).toBe(ref.samples.length);
    expect(maxDiff(ours.samples, ref.samples)).toBe(0);
    // stereo is (L + R) / 2 when no resampling is needed
    const l = left(SR, 0.3);
    const r = right(SR, 0.3);
    const mixed = await Audio.fromPCM(interleave([l, r]), SR, { channels: 2 });
    for (let i = 0; i < l.length; i += 97) {
      expect(mixed.samples[i]).toBeCloseTo(((l[i] as number) + (r[i] as number)) / 2, 6);
    }
    const mono = synthAudio(0.25, SR, [{ kind: 'noise', amplitude: 0.5, seed: 9 }]);
    const same = await Audio.fromPCM(mono, SR);
    expect(same.samples).toEqual(mono);
  });
});

describe('audio errors and cancellation', () => {
  const wav = encodeWav(synthAudio(0.5, SR, [{ kind: 'tone', hz: 440, amplitude: 0.5 }]), {
    sampleRate: SR,
  });

  const code = async (p: Promise<unknown>): Promise<string | undefined> => {
    const e = await p.then(
      () => undefined,
      (x: unknown) => x,
    );
    return MmError.isInstance(e) ? e.code : `not an MmError: ${String(e)}`;
  };

  it('refuses what is not audio, corrupt or empty audio with MM_AUDIO_DECODE', async () => {
    const garbage = new Uint8Array(200).fill(7);
    const badFmt = wav.slice();
    badFmt[20] = 0x55; // unknown format tag
    const noData = encodeWav(new Float32Array(0), { sampleRate: SR });
    const headerOnly = wav.subarray(0, 12);
    for (const b of [garbage, badFmt, noData, headerOnly, new Uint8Array(0)]) {
      expect(await code(Audio.fromBuffer(b))).toBe(ErrorCode.MM_AUDIO_DECODE);
    }
  });

  it('refuses audio over maxSeconds (announced length) and files over maxFileBytes with MM_AUDIO_TOO_LONG', async () => {
    expect(await code(Audio.fromBuffer(wav, { maxSeconds: 0.25 }))).toBe(
      ErrorCode.MM_AUDIO_TOO_LONG,
    );
    // a header announcing ~37 hours over 0.5 s of data: miniaudio clamps it to the bytes present
    const liar = encodeWav(synthAudio(0.5, 8000, [{ kind: 'tone', hz: 300, amplitude: 0.5 }]), {
      sampleRate: 8000,
      dataBytes: 0x7fff_fff0,
    });
    expect((await Audio.fromBuffer(liar)).samples.length).toBe(SR / 2);
    expect(await code(Audio.fromPCM(new Float32Array(SR * 2), SR, { maxSeconds: 1 }))).toBe(
      ErrorCode.MM_AUDIO_TOO_LONG,
    );
    const p = join(dir, 'a.wav');
    writeFileSync(p, wav);
    expect(await code(Audio.fromFile(p, { maxFileBytes: 100 }))).toBe(ErrorCode.MM_AUDIO_TOO_LONG);
    expect((await Audio.fromFile(p)).samples.length).toBe(SR / 2);
    expect(await code(Audio.fromFile(join(dir, 'missing.wav')))).toBe(ErrorCode.MM_FILE_NOT_FOUND);
  });

  it('refuses bad arguments with MM_INVALID_ARGUMENT', async () => {
    const pcm = new Float32Array(100);
    expect(await code(Audio.fromPCM(new Float64Array(10) as unknown as Float32Array, SR))).toBe(
      ErrorCode.MM_INVALID_ARGUMENT,
    );
    expect(await code(Audio.fromPCM(pcm, 0))).toBe(ErrorCode.MM_INVALID_ARGUMENT);
    expect(await code(Audio.fromPCM(pcm, SR, { channels: 3 }))).toBe(ErrorCode.MM_INVALID_ARGUMENT);
    expect(await code(Audio.fromPCM(new Float32Array(0), SR))).toBe(ErrorCode.MM_INVALID_ARGUMENT);
    expect(await code(Audio.fromBuffer(wav, { sampleRate: 12.5 }))).toBe(
      ErrorCode.MM_INVALID_ARGUMENT,
    );
    expect(await code(Audio.fromBuffer('x' as unknown as Uint8Array))).toBe(
      ErrorCode.MM_INVALID_ARGUMENT,
    );
    expect(await code(Audio.fromFile(''))).toBe(ErrorCode.MM_INVALID_ARGUMENT);
  });

  it('rejects with signal.reason when already aborted, and when aborted mid-flight', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(Audio.fromBuffer(wav, { signal: ac.signal })).rejects.toBe(reason);
    await expect(Audio.fromPCM(new Float32Array(10), SR, { signal: ac.signal })).rejects.toBe(
      reason,
    );
    const ac2 = new AbortController();
    const p = Audio.fromBuffer(wav, { signal: ac2.signal });
    ac2.abort(reason);
    await expect(p).rejects.toBe(reason);
  });

  it('completes when never aborted; a signal that is not an AbortSignal is a TypeError', async () => {
    const out = await Audio.fromBuffer(wav, { signal: new AbortController().signal });
    expect(out.duration).toBe(0.5);
    await expect(Audio.fromBuffer(wav, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
  });
});
