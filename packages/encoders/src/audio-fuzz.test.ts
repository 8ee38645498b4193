import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import {
  encodeFlac,
  encodeWav,
  interleave,
  mutateImageBytes,
  Prng,
  repoRoot,
  synthAudio,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Audio, logMelSpectrogram } from './index.js';

const N = Number(process.env['MM_AUDIO_FUZZ_N'] ?? 2000);

const mp3Path = join(repoRoot(), 'native', 'vendor', 'llama.cpp', 'tools', 'mtmd', 'test-2.mp3');

async function fuzz(
  name: string,
  seeds: Uint8Array[],
  seed: number,
): Promise<Record<string, number>> {
  const rng = new Prng(seed);
  const counts: Record<string, number> = {};
  for (let i = 0; i < N; i++) {
    const bytes = mutateImageBytes(seeds[i % seeds.length] as Uint8Array, rng);
    let outcome: string;
    try {
      const a = await Audio.fromBuffer(bytes, { maxSeconds: 120 });
      expect(a.samples.length).toBeGreaterThan(0);
      expect(a.sampleRate).toBe(16_000);
      outcome = 'decoded';
      if (i % 50 === 0) {
        const mel = await logMelSpectrogram(a.samples, 16_000);
        expect(mel.chunks.length).toBeGreaterThan(0);
      }
    } catch (e) {
      if (!MmError.isInstance(e)) throw e;
      outcome = e.code;
    }
    counts[outcome] = (counts[outcome] ?? 0) + 1;
  }
  console.log(
    `${name} fuzz: ${N} mutated files, no crash: ${Object.entries(counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  return counts;
}

describe('audio fuzz', () => {
  it(`${N} mutated WAV files: typed errors or mono 16 kHz audio, never a crash`, async () => {
    const l = synthAudio(0.03, 22_050, [
      { kind: 'chirp', fromHz: 200, toHz: 9000, amplitude: 0.5 },
    ]);
    const r = synthAudio(0.03, 22_050, [{ kind: 'noise', amplitude: 0.3, seed: 1 }]);
    const seeds = [
      encodeWav(l, { sampleRate: 22_050, encoding: 's16' }),
      encodeWav(interleave([l, r]), { sampleRate: 22_050, channels: 2, encoding: 'u8' }),
      encodeWav(interleave([l, r]), { sampleRate: 22_050, channels: 2, encoding: 's24' }),
      encodeWav(l, { sampleRate: 22_050, encoding: 'f32' }),
    ];
    const counts = await fuzz('WAV', seeds, 11);
    expect(counts['decoded'] ?? 0).toBeGreaterThan(0);
  });

  it(`${N} mutated FLAC files: typed errors or mono 16 kHz audio, never a crash`, async () => {
    const l = synthAudio(0.05, 16_000, [
      { kind: 'chirp', fromHz: 200, toHz: 7000, amplitude: 0.5 },
    ]);
    const r = synthAudio(0.05, 16_000, [{ kind: 'noise', amplitude: 0.3, seed: 2 }]);
    const seeds = [
      encodeFlac(l, { sampleRate: 16_000, blockSize: 256 }),
      encodeFlac(interleave([l, r]), { sampleRate: 16_000, channels: 2, blockSize: 512 }),
    ];
    const counts = await fuzz('FLAC', seeds, 13);
    expect(counts['decoded'] ?? 0).toBeGreaterThan(0);
  });

  it.skipIf(!existsSync(mp3Path))(
    `${N} mutated MP3 files: typed errors or audio, never a crash`,
    async () => {
      const mp3 = new Uint8Array(readFileSync(mp3Path));
      // the first frames only, so that the mutations hit headers often
      const seeds = [mp3.slice(0, 6000), mp3.slice(0, 2500)];
      const counts = await fuzz('MP3', seeds, 12);
      expect(counts['decoded'] ?? 0).toBeGreaterThan(0);
    },
  );
});
