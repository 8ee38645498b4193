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

/** Sample encodings of a PCM WAV file. */
export type WavEncoding = 'u8' | 's16' | 's24' | 's32' | 'f32';

/**
 * A RIFF/WAVE file of `samples` (interleaved when `channels` > 1, values in [-1, 1]): PCM of the
 * given encoding (format tag 1, or 3 for f32). `dataBytes` overrides the data chunk's declared
 * size (to write a header that lies).
 */
export function encodeWav(
  samples: Float32Array,
  options: { sampleRate: number; channels?: number; encoding?: WavEncoding; dataBytes?: number },
): Uint8Array {
  const channels = options.channels ?? 1;
  const encoding = options.encoding ?? 's16';
  const width = { u8: 1, s16: 2, s24: 3, s32: 4, f32: 4 }[encoding];
  const data = samples.length * width;
  const out = new Uint8Array(44 + data);
  const v = new DataView(out.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  v.setUint32(4, 36 + data, true);
  ascii(8, 'WAVEfmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, encoding === 'f32' ? 3 : 1, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, options.sampleRate, true);
  v.setUint32(28, options.sampleRate * channels * width, true);
  v.setUint16(32, channels * width, true);
  v.setUint16(34, width * 8, true);
  ascii(36, 'data');
  v.setUint32(40, options.dataBytes ?? data, true);
  const clamp = (x: number) => Math.max(-1, Math.min(1, x));
  for (let i = 0; i < samples.length; i++) {
    const x = clamp(samples[i] as number);
    const at = 44 + i * width;
    if (encoding === 'u8') v.setUint8(at, Math.round(x * 127) + 128);
    else if (encoding === 's16') v.setInt16(at, Math.round(x * 32767), true);
    else if (encoding === 's24') {
      const q = Math.round(x * 8388607);
      v.setUint8(at, q & 0xff);
      v.setUint8(at + 1, (q >> 8) & 0xff);
      v.setUint8(at + 2, (q >> 16) & 0xff);
    } else if (encoding === 's32') v.setInt32(at, Math.round(x * 2147483647), true);
    else v.setFloat32(at, x, true);
  }
  return out;
}

/** Interleaves equal-length channels. */
export function interleave(channels: Float32Array[]): Float32Array {
  const n = channels[0]?.length ?? 0;
  const out = new Float32Array(n * channels.length);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < channels.length; c++)
      out[i * channels.length + c] = (channels[c] as Float32Array)[i] as number;
  }
  return out;
}

class BitWriter {
  private bytes: number[] = [];
  private acc = 0;
  private n = 0;

  /** Writes the low `bits` bits of `value` (bits <= 32), most significant first. */
  write(value: number, bits: number): void {
    for (let i = bits - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | (Math.floor(value / 2 ** i) & 1);
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
  }

  /** Zero bits up to the next byte boundary. */
  align(): void {
    while (this.n !== 0) this.write(0, 1);
  }

  get length(): number {
    return this.bytes.length;
  }

  slice(from: number): number[] {
    return this.bytes.slice(from);
  }

  finish(): Uint8Array {
    this.align();
    return Uint8Array.from(this.bytes);
  }
}

function crc8(bytes: number[]): number {
  let c = 0;
  for (const b of bytes) {
    c ^= b;
    for (let i = 0; i < 8; i++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
  }
  return c;
}

function crc16(bytes: number[]): number {
  let c = 0;
  for (const b of bytes) {
    c ^= b << 8;
    for (let i = 0; i < 8; i++) c = c & 0x8000 ? ((c << 1) ^ 0x8005) & 0xffff : (c << 1) & 0xffff;
  }
  return c;
}

/**
 * A FLAC file of `samples` (interleaved when `channels` > 1, values in [-1, 1]) at 16 bits:
 * STREAMINFO, then fixed-size frames whose subframes are VERBATIM (valid FLAC, not compressed).
 */
export function encodeFlac(
  samples: Float32Array,
  options: { sampleRate: number; channels?: number; blockSize?: number },
): Uint8Array {
  const channels = options.channels ?? 1;
  const block = options.blockSize ?? 4096;
  const frames = samples.length / channels;
  const w = new BitWriter();
  for (const ch of 'fLaC') w.write(ch.charCodeAt(0), 8);
  w.write(1, 1); // last metadata block
  w.write(0, 7); // STREAMINFO
  w.write(34, 24);
  w.write(block, 16);
  w.write(block, 16);
  w.write(0, 24);
  w.write(0, 24);
  w.write(options.sampleRate, 20);
  w.write(channels - 1, 3);
  w.write(15, 5); // 16 bits per sample
  w.write(0, 4); // total samples: high 4 of 36 bits
  w.write(frames, 32);
  for (let i = 0; i < 4; i++) w.write(0, 32); // MD5 unknown
  const q = (x: number) => Math.round(Math.max(-1, Math.min(1, x)) * 32767);
  for (let f = 0, start = 0; start < frames; f++, start += block) {
    if (f > 127) throw new Error('encodeFlac: at most 128 frames');
    const n = Math.min(block, frames - start);
    const at = w.length;
    w.write(0b11111111111110, 14);
    w.write(0, 1);
    w.write(0, 1); // fixed block size
    w.write(0b0111, 4); // block size - 1 in 16 bits after the header
    w.write(0, 4); // sample rate from STREAMINFO
    w.write(channels - 1, 4); // independent channels
    w.write(0b100, 3); // 16 bits per sample
    w.write(0, 1);
    w.write(f, 8); // frame number, UTF-8 coded (one byte below 128)
    w.write(n - 1, 16);
    w.write(crc8(w.slice(at)), 8);
    for (let c = 0; c < channels; c++) {
      w.write(0, 1);
      w.write(0b000001, 6); // VERBATIM
      w.write(0, 1);
      for (let i = 0; i < n; i++)
        w.write(q(samples[(start + i) * channels + c] as number) & 0xffff, 16);
    }
    w.align();
    w.write(crc16(w.slice(at)), 16);
  }
  return w.finish();
}
