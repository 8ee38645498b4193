import { describe, expect, it } from 'vitest';
import { f16BitsToF32 } from './float16.js';
import { dequantizeQ8_0, quantizeQ8_0 } from './quant.js';
import { readGgufFromBuffer, readTensorData } from './reader.js';
import { ggufToBuffer } from './writer.js';

describe('Q8_0', () => {
  it('one block by hand: d = amax / 127 as F16, q = round(x / d), ties away from zero', () => {
    // amax 127 -> d = 1 exactly: q is x rounded, 2.5 -> 3 and -2.5 -> -3 (roundf), 0.49 -> 0
    const x = new Float32Array(32);
    x.set([127, -127, 2.5, -2.5, 0.49, 1.5, -0.5, 100.4]);
    const b = quantizeQ8_0(x);
    expect(b.length).toBe(34);
    expect(b[0]! | (b[1]! << 8)).toBe(0x3c00); // F16 1.0
    expect(Array.from(new Int8Array(b.buffer, 2, 8))).toEqual([127, -127, 3, -3, 0, 2, -1, 100]);
    expect(Array.from(new Int8Array(b.buffer, 10, 24))).toEqual(new Array(24).fill(0));
  });

  it('an all-zero block has d = 0 and q = 0', () => {
    const b = quantizeQ8_0(new Float32Array(64));
    expect(Array.from(b)).toEqual(new Array(68).fill(0));
    expect(Array.from(dequantizeQ8_0(b))).toEqual(new Array(64).fill(0));
  });

  it('dequantized weights are within half a step of the originals, per block', () => {
    const n = 32 * 50;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.37) * (1 + (i % 97)) * 0.01;
    const b = quantizeQ8_0(x);
    const y = dequantizeQ8_0(b);
    for (let blk = 0; blk < 50; blk++) {
      const d = f16BitsToF32(b[blk * 34]! | (b[blk * 34 + 1]! << 8));
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]!));
      // d is amax / 127 rounded to F16 (relative error <= 2^-11)
      expect(Math.abs(d - amax / 127)).toBeLessThanOrEqual((amax / 127) * 2 ** -11);
      for (let j = 0; j < 32; j++) {
        // half a step, plus what the F16 rounding of d moves the largest q (127 * |d - d32|)
        expect(Math.abs(y[blk * 32 + j]! - x[blk * 32 + j]!)).toBeLessThanOrEqual(
          d / 2 + 127 * (amax / 127) * 2 ** -11 + 1e-9,
        );
      }
    }
  });

  it('rejects a length that is not whole blocks, and non-finite values', () => {
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(/multiple of 32/);
    const x = new Float32Array(32);
    x[5] = Number.NaN;
    expect(() => quantizeQ8_0(x)).toThrow(/value 5 is not finite/);
    expect(() => dequantizeQ8_0(new Uint8Array(35))).toThrow(/34-byte blocks/);
  });

  it('the writer quantizes a Float32Array given for a Q8_0 tensor, and checks ne[0]', async () => {
    const x = new Float32Array(64 * 3).map((_, i) => (i % 11) - 5);
    const buf = ggufToBuffer({ tensors: [{ name: 'w', type: 'Q8_0', shape: [64, 3], data: x }] });
    const g = readGgufFromBuffer(buf);
    const t = g.tensors[0]!;
    expect([t.type, t.byteSize]).toEqual(['Q8_0', 6 * 34]);
    expect(Array.from(await readTensorData(buf, g, t))).toEqual(Array.from(quantizeQ8_0(x)));
    expect(() =>
      ggufToBuffer({
        tensors: [{ name: 'w', type: 'Q8_0', shape: [48, 2], data: new Float32Array(96) }],
      }),
    ).toThrow(/ne\[0\] = 48 is not a multiple of the Q8_0 block size 32/);
  });
});
