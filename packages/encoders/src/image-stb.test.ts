import {
  type BmpOptions,
  encodeBmp,
  encodeGif,
  encodeHdr,
  encodeJpeg,
  encodePng,
  encodePnm,
  type JpegOptions,
  type PngOptions,
  runStbDecode,
  syntheticImage,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Image } from './index.js';

/**
 * Every variant of every format mm accepts decodes to exactly the pixels plain stb_image (the
 * decoder libmtmd uses) gives: mm decodes with stb too, and its own checks (sizes from the header,
 * truncation, strict JPEG scans) must never refuse or change a valid file stb reads.
 */

const picture = syntheticImage(37, 29, 5);
const odd = syntheticImage(9, 7, 6); // sizes that are not multiples of the block / byte widths

const pngVariants: PngOptions[] = [
  ...([1, 2, 4, 8, 16] as const).map((bitDepth) => ({ colorType: 'grey' as const, bitDepth })),
  ...([8, 16] as const).map((bitDepth) => ({ colorType: 'rgb' as const, bitDepth })),
  ...([1, 2, 4, 8] as const).map((bitDepth) => ({ colorType: 'palette' as const, bitDepth })),
  { colorType: 'palette', bitDepth: 8, transparency: true },
  ...([8, 16] as const).map((bitDepth) => ({ colorType: 'grey-alpha' as const, bitDepth })),
  ...([8, 16] as const).map((bitDepth) => ({ colorType: 'rgba' as const, bitDepth })),
];

const bmpVariants: BmpOptions[] = [
  {},
  { topDown: true },
  { bitsPerPixel: 32 },
  { bitsPerPixel: 32, topDown: true },
  { bitsPerPixel: 32, bitfields: true },
  { bitsPerPixel: 32, bitfields: true, alpha: true, header: 'v5' },
  { bitsPerPixel: 32, header: 'v4' },
  { bitsPerPixel: 16 },
  { bitsPerPixel: 16, bitfields: true, topDown: true },
  { bitsPerPixel: 8 },
  { bitsPerPixel: 4, topDown: true },
  { bitsPerPixel: 1 },
  { header: 'core' },
  { header: 'core', bitsPerPixel: 8 },
  { trimLastRowPadding: true },
  { bitsPerPixel: 8, trimLastRowPadding: true, topDown: true },
];

const jpegVariants: JpegOptions[] = [
  {},
  { quant: 1 },
  { subsampling: '420' },
  { grayscale: true },
  { progressive: true },
  { progressive: true, subsampling: '420' },
  { progressive: true, successiveApproximation: true },
  { progressive: true, successiveApproximation: true, subsampling: '420', quant: 2 },
  { progressive: true, successiveApproximation: true, grayscale: true },
  { restartInterval: 1 },
  { restartInterval: 3, subsampling: '420' },
  { progressive: true, restartInterval: 2 },
  { progressive: true, successiveApproximation: true, restartInterval: 5 },
];

function variants(): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const img of [picture, odd]) {
    const size = `${img.width}x${img.height}`;
    for (const o of pngVariants) {
      for (const interlace of [false, true]) {
        const name = `png ${o.colorType} ${o.bitDepth}${o.transparency ? ' tRNS' : ''}${interlace ? ' adam7' : ''}`;
        out.push([`${name} ${size}`, encodePng(img, { ...o, interlace, filters: 'mixed' })]);
      }
    }
    for (const o of bmpVariants) out.push([`bmp ${JSON.stringify(o)} ${size}`, encodeBmp(img, o)]);
    for (const o of jpegVariants)
      out.push([`jpeg ${JSON.stringify(o)} ${size}`, encodeJpeg(img, o)]);
    out.push([`gif ${size}`, encodeGif(img)]);
    const gif = encodeGif(img);
    out.push([`gif without trailer ${size}`, gif.subarray(0, gif.length - 1)]);
    out.push([`gif with trailing bytes ${size}`, new Uint8Array([...gif, 0, 1, 2, 3])]);
    for (const format of ['P6', 'P5'] as const) {
      for (const maxval of [255, 65535] as const) {
        out.push([`pnm ${format} ${maxval} ${size}`, encodePnm(img, { format, maxval })]);
      }
    }
    out.push([`hdr ${size}`, encodeHdr(img)]);
  }
  return out;
}

describe('decoded pixels are stb_image’s', () => {
  it('every PNG, BMP, JPEG, GIF, PNM and HDR variant: same size, same bytes', async () => {
    const cases = variants();
    const ref = await runStbDecode(cases.map(([, bytes]) => bytes));
    const mismatches: string[] = [];
    for (const [i, [name, bytes]] of cases.entries()) {
      const r = ref[i]!;
      expect([name, r.ok]).toEqual([name, true]);
      if (!r.ok) continue;
      const img = await Image.fromBuffer(bytes).catch((e) => e);
      if (!(img instanceof Image)) {
        mismatches.push(`${name}: refused (${img.code}: ${img.message})`);
        continue;
      }
      if (img.width !== r.width || img.height !== r.height) {
        mismatches.push(`${name}: ${img.width}x${img.height}, stb ${r.width}x${r.height}`);
      } else if (Buffer.compare(Buffer.from(img.data), Buffer.from(r.data)) !== 0) {
        mismatches.push(`${name}: pixels differ`);
      }
    }
    console.log(`${cases.length} image variants, mm vs stb_image: ${mismatches.length} mismatches`);
    expect(mismatches).toEqual([]);
  });

  it('lossless variants hold the picture exactly (the encoders write what they claim)', async () => {
    const lossless: [string, Uint8Array][] = [
      ['png rgb 8', encodePng(picture)],
      ['png rgb 16 adam7', encodePng(picture, { bitDepth: 16, interlace: true, filters: 'mixed' })],
      ['png rgba 8', encodePng(picture, { colorType: 'rgba', filters: 'mixed' })],
      ['bmp 24 top-down', encodeBmp(picture, { topDown: true })],
      [
        'bmp 32 v5 alpha',
        encodeBmp(picture, { bitsPerPixel: 32, bitfields: true, alpha: true, header: 'v5' }),
      ],
      ['bmp core', encodeBmp(picture, { header: 'core' })],
      ['bmp trimmed', encodeBmp(picture, { trimLastRowPadding: true })],
      ['pnm P6', encodePnm(picture)],
    ];
    for (const [name, bytes] of lossless) {
      const img = await Image.fromBuffer(bytes);
      expect([name, img.width, img.height]).toEqual([name, 37, 29]);
      expect([name, Buffer.compare(Buffer.from(img.data), Buffer.from(picture.data))]).toEqual([
        name,
        0,
      ]);
    }
    // grey variants are the luma, replicated to RGB
    const grey = await Image.fromBuffer(encodePng(picture, { colorType: 'grey' }));
    for (let i = 0; i < 37 * 29; i++) {
      expect(grey.data[i * 3]).toBe(grey.data[i * 3 + 1]);
      expect(grey.data[i * 3]).toBe(grey.data[i * 3 + 2]);
    }
  });
});
