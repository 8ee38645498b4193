import { MmInvalidArgumentError } from '@mm/errors';

/**
 * A mono 16-bit PCM WAV of f32 samples, byte for byte what llama.cpp's TTS helper writes
 * (each sample clamped to [-1, 1], times 32767, truncated toward zero).
 */
export function toWav(pcm: Float32Array, sampleRate: number): Buffer {
  if (!Number.isInteger(sampleRate) || sampleRate < 1 || sampleRate > 0x7fffffff / 2) {
    throw new MmInvalidArgumentError('sampleRate', 'must be a positive integer');
  }
  if (pcm.length > (0xffffffff - 36) / 2) {
    throw new MmInvalidArgumentError('pcm', 'is too long for a WAV file');
  }
  const data = pcm.length * 2;
  const b = Buffer.alloc(44 + data);
  b.write('RIFF', 0, 'ascii');
  b.writeUInt32LE(36 + data, 4);
  b.write('WAVE', 8, 'ascii');
  b.write('fmt ', 12, 'ascii');
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(sampleRate, 24);
  b.writeUInt32LE(sampleRate * 2, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36, 'ascii');
  b.writeUInt32LE(data, 40);
  for (let i = 0; i < pcm.length; i++) {
    const v = Math.max(-1, Math.min(1, pcm[i] as number));
    // Math.fround: the product is computed in f32, as the C++ does, before truncation
    b.writeInt16LE(Math.trunc(Math.fround(v * 32767)), 44 + i * 2);
  }
  return b;
}

/** The samples of a mono 16-bit WAV as f32 (s / 32768), with its rate: for tests and tools. */
export function readWav16(buf: Uint8Array): { sampleRate: number; pcm16: Int16Array } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (
    b.length < 44 ||
    b.toString('ascii', 0, 4) !== 'RIFF' ||
    b.toString('ascii', 8, 12) !== 'WAVE'
  ) {
    throw new MmInvalidArgumentError('wav', 'is not a RIFF/WAVE file');
  }
  let off = 12;
  let rate = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') {
      if (
        b.readUInt16LE(off + 8) !== 1 ||
        b.readUInt16LE(off + 10) !== 1 ||
        b.readUInt16LE(off + 22) !== 16
      ) {
        throw new MmInvalidArgumentError('wav', 'is not mono 16-bit PCM');
      }
      rate = b.readUInt32LE(off + 12);
    } else if (id === 'data') {
      const n = Math.min(size, b.length - off - 8) >> 1;
      const pcm16 = new Int16Array(n);
      for (let i = 0; i < n; i++) pcm16[i] = b.readInt16LE(off + 8 + i * 2);
      return { sampleRate: rate, pcm16 };
    }
    off += 8 + size + (size & 1);
  }
  throw new MmInvalidArgumentError('wav', 'has no data chunk');
}
