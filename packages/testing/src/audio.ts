import { Prng } from './prng.js';

/**
 * Test audio synthesised in code (nothing downloaded): mono f32 PCM. Signals are summed, so a
 * case can mix a tone, a chirp and noise.
 */
export type AudioSignal =
  | { kind: 'tone'; hz: number; amplitude: number }
  | { kind: 'chirp'; fromHz: number; toHz: number; amplitude: number }
  | { kind: 'noise'; amplitude: number; seed: number };

/** `seconds` of the sum of `signals` at `sampleRate`, rounded to whole samples. */
export function synthAudio(
  seconds: number,
  sampleRate: number,
  signals: AudioSignal[],
): Float32Array {
  const n = Math.round(seconds * sampleRate);
  const out = new Float32Array(n);
  const add = (i: number, v: number): void => {
    out[i] = (out[i] as number) + v;
  };
  for (const s of signals) {
    if (s.kind === 'tone') {
      for (let i = 0; i < n; i++)
        add(i, s.amplitude * Math.sin((2 * Math.PI * s.hz * i) / sampleRate));
    } else if (s.kind === 'chirp') {
      // linear chirp: phase = 2π (f0 t + (f1 − f0) t² / (2 T))
      const duration = n / sampleRate;
      for (let i = 0; i < n; i++) {
        const t = i / sampleRate;
        const phase = 2 * Math.PI * (s.fromHz * t + ((s.toHz - s.fromHz) * t * t) / (2 * duration));
        add(i, s.amplitude * Math.sin(phase));
      }
    } else {
      const rng = new Prng(s.seed);
      for (let i = 0; i < n; i++) add(i, s.amplitude * ((rng.nextU32() / 0x1_0000_0000) * 2 - 1));
    }
  }
  return out;
}
