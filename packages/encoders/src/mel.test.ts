import { ErrorCode, MmError } from '@mm/errors';
import { type AudioSignal, melOracleBinary, runMtmdMel, synthAudio } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { logMelSpectrogram } from './index.js';

/**
 * mm's log-mel equals libmtmd's own (mtmd_audio_preprocessor_whisper, through the mel oracle) on
 * synthesised audio: shorter than one chunk, exactly one, and several.
 */

const SR = 16_000;
const tone = (hz: number, amplitude = 0.5): AudioSignal => ({ kind: 'tone', hz, amplitude });
const chirp = (fromHz: number, toHz: number, amplitude = 0.4): AudioSignal => ({
  kind: 'chirp',
  fromHz,
  toHz,
  amplitude,
});
const noise = (amplitude: number, seed: number): AudioSignal => ({
  kind: 'noise',
  amplitude,
  seed,
});

interface Case {
  name: string;
  pcm: () => Float32Array;
  nMel: number;
  /**
   * Chunks libmtmd gives: ⌊(⌊samples / 160⌋ + 3001) / 3000⌋ (the 30 s of zero padding, 3000 more
   * frames, is always there, and the last incomplete chunk is dropped): 1 up to 29.98 s, 2 from
   * 29.99 s.
   */
  chunks: number;
}

const cases: Case[] = [
  {
    name: '100 samples (under n_fft/2 + 1: zero-extended)',
    pcm: () => synthAudio(100 / SR, SR, [tone(1000)]),
    nMel: 80,
    chunks: 1,
  },
  { name: '0.5 s tone', pcm: () => synthAudio(0.5, SR, [tone(440)]), nMel: 80, chunks: 1 },
  {
    name: '7.3 s chirp + noise, 128 mels',
    pcm: () => synthAudio(7.3, SR, [chirp(50, 7900), noise(0.05, 1)]),
    nMel: 128,
    chunks: 1,
  },
  {
    name: '29.98 s noise (the longest one-chunk input)',
    pcm: () => synthAudio(29.98, SR, [noise(0.3, 2)]),
    nMel: 80,
    chunks: 1,
  },
  {
    name: '29.99 s noise (already two chunks)',
    pcm: () => synthAudio(29.99, SR, [noise(0.3, 5)]),
    nMel: 80,
    chunks: 2,
  },
  {
    name: '30 s exactly: tone + chirp',
    pcm: () => synthAudio(30, SR, [tone(300, 0.2), chirp(100, 4000)]),
    nMel: 80,
    chunks: 2,
  },
  {
    name: '75 s chirp + tones + noise (several chunks)',
    pcm: () => synthAudio(75, SR, [chirp(20, 8000, 0.3), tone(3000, 0.1), noise(0.02, 3)]),
    nMel: 128,
    chunks: 3,
  },
  { name: '2 s of silence', pcm: () => new Float32Array(2 * SR), nMel: 80, chunks: 1 },
];

describe.skipIf(melOracleBinary() === undefined)('log-mel vs libmtmd', () => {
  it.each(cases)('$name', async ({ pcm, nMel, chunks }) => {
    const samples = pcm();
    const [ours, ref] = await Promise.all([
      logMelSpectrogram(samples, SR, { nMel }),
      runMtmdMel(samples, nMel),
    ]);
    expect(ref.ok).toBe(true);
    expect(ref.chunks.length).toBe(chunks);
    expect(ours.chunks.length).toBe(ref.chunks.length);
    expect(ours.nMel).toBe(nMel);
    expect(ours.nFrames).toBe(3000);
    expect(ref.nFrames).toBe(3000);
    const diffs = ours.chunks.map((c, i) => {
      const r = ref.chunks[i] as Float32Array;
      expect(c.length).toBe(nMel * 3000);
      expect(r.length).toBe(c.length);
      let max = 0;
      for (let k = 0; k < c.length; k++)
        max = Math.max(max, Math.abs((c[k] as number) - (r[k] as number)));
      return max;
    });
    console.log(
      `log-mel ${samples.length} samples, ${nMel} mels: max |diff| per chunk ${diffs.map((d) => d.toExponential(2)).join(', ')}`,
    );
    for (const d of diffs) expect(d).toBeLessThanOrEqual(1e-4);
    // the values are a spectrogram, not a constant: silence is flat at the floor, sound is not
    const first = ours.chunks[0] as Float32Array;
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const v of first) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (samples.every((v) => v === 0)) {
      // log10(2^-24), the mel floor 5.96e-8, everywhere, then (x + 4) / 4
      expect(hi - lo).toBe(0);
      expect(lo).toBeCloseTo((Math.log10(2 ** -24) + 4) / 4, 6);
    } else {
      // clamped at (max − 8) then scaled by 1/4: the range is at most 2
      expect(hi - lo).toBeGreaterThan(0.5);
      expect(hi - lo).toBeLessThanOrEqual(2 + 1e-6);
    }
  });
});

describe('logMelSpectrogram arguments and cancellation', () => {
  const pcm = synthAudio(1, SR, [tone(440)]);

  it('refuses what is not mono f32 PCM, and bad parameters, with MM_INVALID_ARGUMENT', async () => {
    const bad: [unknown, number, object][] = [
      [new Float64Array(10), SR, {}],
      [new Float32Array(0), SR, {}],
      [pcm, 0, {}],
      [pcm, 16_000.5, {}],
      [pcm, SR, { nFft: 401 }],
      [pcm, SR, { windowLen: 500 }],
      [pcm, SR, { nMel: 0 }],
      [pcm, SR, { hopLen: 0 }],
      [pcm, SR, { maxSeconds: 0.5 }],
    ];
    for (const [p, sr, o] of bad) {
      const e = await logMelSpectrogram(p as Float32Array, sr, o).catch((x: unknown) => x);
      expect(MmError.isInstance(e)).toBe(true);
      expect((e as MmError).code).toBe(ErrorCode.MM_INVALID_ARGUMENT);
    }
  });

  it('rejects with signal.reason when already aborted', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(logMelSpectrogram(pcm, SR, { signal: ac.signal })).rejects.toBe(reason);
  });

  it('rejects with signal.reason when aborted mid-flight', async () => {
    const ac = new AbortController();
    const reason = new Error('stop now');
    const p = logMelSpectrogram(synthAudio(600, SR, [noise(0.1, 4)]), SR, { signal: ac.signal });
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
  });

  it('completes when the signal is never aborted', async () => {
    const ac = new AbortController();
    const out = await logMelSpectrogram(pcm, SR, { signal: ac.signal });
    expect(out.chunks.length).toBe(1);
  });

  it('throws a TypeError for a signal that is not an AbortSignal', async () => {
    await expect(logMelSpectrogram(pcm, SR, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
  });
});
