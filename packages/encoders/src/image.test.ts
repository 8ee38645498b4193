import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { encodeBmp, encodeGif, encodeJpeg, encodePng, Prng, syntheticImage } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { tinyShapesSamples } from './helpers.test-util.js';
import { Image } from './index.js';

const picture = syntheticImage(37, 29, 3);

/** PNG chunk CRC (for hand-edited headers that stay valid). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A PNG whose IHDR claims width x height (CRC fixed so only the size is wrong). */
function pngClaiming(width: number, height: number): Uint8Array {
  const png = encodePng(picture);
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  dv.setUint32(16, width);
  dv.setUint32(20, height);
  dv.setUint32(29, crc32(png.subarray(12, 29)));
  return png;
}

/** A JPEG whose SOF claims width x height. */
function jpegClaiming(width: number, height: number): Uint8Array {
  const jpg = encodeJpeg(picture);
  for (let i = 2; i < jpg.length - 9; i++) {
    if (jpg[i] === 0xff && jpg[i + 1] === 0xc0) {
      jpg[i + 5] = height >> 8;
      jpg[i + 6] = height & 0xff;
      jpg[i + 7] = width >> 8;
      jpg[i + 8] = width & 0xff;
      return jpg;
    }
  }
  throw new Error('no SOF0');
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return MmError.isInstance(e) ? e.code : `untyped: ${String(e)}`;
  }
}

describe('Image decoding', () => {
  it.each([
    ['png', encodePng(picture), 0],
    ['bmp', encodeBmp(picture), 0],
    ['gif', encodeGif(picture), 63],
    ['jpeg', encodeJpeg(picture), 16],
    ['progressive jpeg', encodeJpeg(picture, { progressive: true }), 16],
  ] as const)('decodes %s to RGB', async (_name, bytes, tolerance) => {
    const img = await Image.fromBuffer(bytes);
    expect([img.width, img.height, img.data.length]).toEqual([37, 29, 37 * 29 * 3]);
    let maxErr = 0;
    for (let i = 0; i < img.data.length; i++) {
      maxErr = Math.max(maxErr, Math.abs((img.data[i] as number) - (picture.data[i] as number)));
    }
    expect(maxErr).toBeLessThanOrEqual(tolerance);
  });

  it('reads files, Buffers, ArrayBuffers and raw RGB', async () => {
    const fromFile = await Image.fromFile(tinyShapesSamples[0] as string);
    expect([fromFile.width, fromFile.height]).toEqual([48, 48]);
    const png = encodePng(picture);
    const fromBuffer = await Image.fromBuffer(Buffer.from(png));
    const fromArrayBuffer = await Image.fromBuffer(png.slice().buffer);
    expect(fromBuffer.data).toEqual(fromArrayBuffer.data);
    const raw = Image.fromRGB(picture.data, 37, 29);
    expect(raw.data).toEqual(fromBuffer.data);
    expect(raw.data).not.toBe(picture.data); // copied
    expect(Image.probe(png)).toEqual({ width: 37, height: 29, format: 'png' });
  });

  it('bad images are typed errors', async () => {
    const png = encodePng(picture);
    const jpg = encodeJpeg(picture);
    const rng = new Prng(9);
    const random = new Uint8Array(4096).map(() => rng.nextU32() & 0xff);
    const cases: [string, Uint8Array, string][] = [
      ['truncated PNG', png.subarray(0, png.length - 30), 'MM_IMAGE_DECODE'],
      ['PNG cut in the header', png.subarray(0, 20), 'MM_IMAGE_DECODE'],
      ['truncated JPEG', jpg.subarray(0, jpg.length - 50), 'MM_IMAGE_DECODE'],
      [
        'truncated progressive JPEG',
        encodeJpeg(picture, { progressive: true }).subarray(0, 900),
        'MM_IMAGE_DECODE',
      ],
      ['JPEG without scan', jpg.subarray(0, 200), 'MM_IMAGE_DECODE'],
      ['truncated BMP', encodeBmp(picture).subarray(0, 2000), 'MM_IMAGE_DECODE'],
      ['truncated GIF', encodeGif(picture).subarray(0, 1500), 'MM_IMAGE_DECODE'],
      ['0x0 PNG', pngClaiming(0, 0), 'MM_IMAGE_DECODE'],
      ['0x29 PNG', pngClaiming(0, 29), 'MM_IMAGE_DECODE'],
      ['random bytes', random, 'MM_IMAGE_DECODE'],
      ['empty', new Uint8Array(0), 'MM_IMAGE_DECODE'],
      ['text', new TextEncoder().encode('not an image at all'), 'MM_IMAGE_DECODE'],
      ['PNG claiming 100000x100000', pngClaiming(100000, 100000), 'MM_IMAGE_TOO_LARGE'],
      ['JPEG claiming 60000x60000', jpegClaiming(60000, 60000), 'MM_IMAGE_TOO_LARGE'],
    ];
    for (const [name, bytes, expected] of cases) {
      expect([name, await code(Image.fromBuffer(bytes))]).toEqual([name, expected]);
    }
  });

  it('a size claimed in the header is refused before any decoding (no big allocation)', async () => {
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      await expect(Image.fromBuffer(pngClaiming(100000, 100000))).rejects.toMatchObject({
        code: 'MM_IMAGE_TOO_LARGE',
      });
    }
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('limits are options: maxPixels and maxFileBytes', async () => {
    const png = encodePng(picture);
    await expect(Image.fromBuffer(png, { maxPixels: 37 * 29 - 1 })).rejects.toMatchObject({
      code: 'MM_IMAGE_TOO_LARGE',
    });
    await expect(Image.fromBuffer(png, { maxPixels: 37 * 29 })).resolves.toBeInstanceOf(Image);
    const path = join(tmpdir(), `mm-image-${process.pid}.png`);
    writeFileSync(path, png);
    await expect(Image.fromFile(path, { maxFileBytes: 100 })).rejects.toMatchObject({
      code: 'MM_IMAGE_TOO_LARGE',
    });
    await expect(Image.fromFile('/nonexistent/picture.png')).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
    expect(() => Image.fromRGB(new Uint8Array(12), 2, 3, { maxPixels: 5 })).toThrow(
      expect.objectContaining({ code: 'MM_IMAGE_TOO_LARGE' }),
    );
  });

  it('raw RGB is checked', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return (e as MmError).code;
      }
    };
    expect(bad(() => Image.fromRGB(new Uint8Array(0), 0, 0))).toBe('MM_INVALID_ARGUMENT');
    expect(bad(() => Image.fromRGB(new Uint8Array(5), 1, 2))).toBe('MM_INVALID_ARGUMENT');
    expect(bad(() => Image.fromRGB(new Uint8Array(6), 1.5, 2))).toBe('MM_INVALID_ARGUMENT');
    expect(bad(() => Image.fromRGB(null as unknown as Uint8Array, 1, 1))).toBe(
      'MM_INVALID_ARGUMENT',
    );
    expect(bad(() => Image.fromRGB([1, 2, 3], 1, 1))).toBe('ok');
  });

  it('decoding is cancellable like every async call', async () => {
    const png = encodePng(picture);
    const reason = new Error('stop');
    await expect(Image.fromBuffer(png, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(Image.fromBuffer(png, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
  });
});
