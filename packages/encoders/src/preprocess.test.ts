import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeJpeg,
  encodePng,
  repoRoot,
  runMtmdOracle,
  syntheticImage,
  tinyMmprojFixture,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fmt, parity, tinyShapesMmproj } from './helpers.test-util.js';
import { Image, preprocessImage, resizeImage, VisionEncoder } from './index.js';

const vendoredJpeg = join(
  repoRoot(),
  'native',
  'vendor',
  'llama.cpp',
  'tools',
  'mtmd',
  'test-1.jpeg',
);

describe('preprocessing is bit-identical to libmtmd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mm-pre-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const raw = [
    syntheticImage(48, 48, 1), // same size: a plain copy
    syntheticImage(64, 40, 2), // downscale, pad top/bottom
    syntheticImage(20, 30, 3), // upscale, pad left/right
    syntheticImage(200, 7, 4), // extreme aspect ratio
    syntheticImage(1, 1, 5),
    syntheticImage(333, 250, 6),
    syntheticImage(31, 32, 7),
  ];
  let files: string[] = [];
  beforeAll(() => {
    // files libmtmd decodes itself: PNG and JPEG (ours decode them with the same stb_image)
    const png = join(dir, 'a.png');
    const jpg = join(dir, 'b.jpg');
    writeFileSync(png, encodePng(syntheticImage(57, 43, 8)));
    writeFileSync(jpg, encodeJpeg(syntheticImage(71, 50, 9)));
    files = [png, jpg, ...(existsSync(vendoredJpeg) ? [vendoredJpeg] : [])];
  });

  it.each([
    ['tiny-shapes (48 px)', async () => tinyShapesMmproj],
    ['generated mlp (32 px)', async () => tinyMmprojFixture({ family: 'mlp' })],
  ])('%s', async (_name, path) => {
    const mmproj = await path();
    using encoder = await VisionEncoder.load(mmproj, { threads: 2 });
    const ref = await runMtmdOracle({ mmproj, images: [...raw, ...files] });
    const ours = [
      ...(await Promise.all(
        raw.map(
          async (r) =>
            (
              await encoder.preprocessChunks(Image.fromRGB(r.data, r.width, r.height))
            )[0]!,
        ),
      )),
      ...(await Promise.all(
        files.map(async (f) => (await encoder.preprocessChunks(await Image.fromFile(f)))[0]!),
      )),
    ];
    ours.forEach((p, i) => {
      const r = ref[i]!;
      expect(r.pixelsShape).toEqual([3, encoder.imageSize, encoder.imageSize]);
      const { maxAbsDiff } = parity(p.data, r.pixels);
      console.log(
        `preprocess ${r.image.replace(/.*\//, '')} (${r.width}x${r.height}) -> ${encoder.imageSize}: max |diff| ${fmt(maxAbsDiff)}`,
      );
      expect(maxAbsDiff).toBe(0);
    });
    // the standalone function with the model's parameters gives the same pixels
    const img = Image.fromRGB(raw[1]!.data, raw[1]!.width, raw[1]!.height);
    const alone = await preprocessImage(img, encoder.preprocessParams);
    expect(alone.data).toEqual(ours[1]!.data);
  });
});

describe('resize paths', () => {
  const constant = (w: number, h: number, rgb: [number, number, number]) =>
    Image.fromRGB(
      new Uint8Array(w * h * 3).map((_, i) => rgb[i % 3] as number),
      w,
      h,
    );

  it.each(['bilinear', 'bicubic', 'lanczos'] as const)(
    '%s keeps a constant image constant',
    async (resize) => {
      for (const [w, h] of [
        [17, 9],
        [100, 3],
        [3, 100],
      ] as const) {
        const out = await resizeImage(constant(23, 31, [10, 200, 77]), w, h, { resize });
        expect([out.width, out.height]).toEqual([w, h]);
        for (let i = 0; i < out.data.length; i += 3) {
          expect([out.data[i], out.data[i + 1], out.data[i + 2]]).toEqual([10, 200, 77]);
        }
      }
    },
  );

  it('bilinear 2x1 -> 1x1 averages; same size copies; padding keeps the aspect ratio', async () => {
    const two = Image.fromRGB([0, 100, 255, 100, 200, 1], 2, 1);
    const one = await resizeImage(two, 1, 1, { resize: 'bilinear' });
    expect([...one.data]).toEqual([50, 150, 128]);
    const same = await resizeImage(two, 2, 1);
    expect([...same.data]).toEqual([...two.data]);
    const padded = await resizeImage(constant(40, 20, [255, 255, 255]), 10, 10, {
      pad: 'ceil',
      padColor: [1, 2, 3],
    });
    // 40x20 -> 10x5 centred at y = 2..6, rows 0-1 and 7-9 are padding
    const px = (x: number, y: number) => [
      ...padded.data.subarray((y * 10 + x) * 3, (y * 10 + x) * 3 + 3),
    ];
    expect(px(5, 0)).toEqual([1, 2, 3]);
    expect(px(5, 1)).toEqual([1, 2, 3]);
    expect(px(5, 2)).toEqual([255, 255, 255]);
    expect(px(5, 6)).toEqual([255, 255, 255]);
    expect(px(5, 7)).toEqual([1, 2, 3]);
    const stretched = await resizeImage(constant(40, 20, [9, 9, 9]), 10, 10, { pad: 'none' });
    expect(stretched.data.every((v) => v === 9)).toBe(true);
  });
});
