import { MmError } from '@mm/errors';
import {
  encodeBmp,
  encodeGif,
  encodeJpeg,
  encodePng,
  mutateImageBytes,
  Prng,
  syntheticImage,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyShapesMmproj } from './helpers.test-util.js';
import { Image, VisionEncoder } from './index.js';

const N = Number(process.env['MM_IMAGE_FUZZ_N'] ?? 6000);

describe('image fuzz', () => {
  let encoder: VisionEncoder;
  beforeAll(async () => {
    encoder = await VisionEncoder.load(tinyShapesMmproj, { threads: 1 });
  });
  afterAll(() => encoder.dispose());

  it(`${N} mutated PNG/JPEG/GIF/BMP images: typed errors or valid images, never a crash`, async () => {
    const seeds = [
      syntheticImage(37, 29, 1),
      syntheticImage(16, 40, 2),
      syntheticImage(64, 48, 3),
    ].flatMap((img) => [
      encodePng(img),
      encodeJpeg(img),
      encodeJpeg(img, { progressive: true }),
      encodeGif(img),
      encodeBmp(img),
    ]);
    const rng = new Prng(2024);
    const counts: Record<string, number> = {};
    let encoded = 0;
    for (let i = 0; i < N; i++) {
      const bytes = mutateImageBytes(seeds[i % seeds.length] as Uint8Array, rng);
      let outcome: string;
      try {
        // a 1 MP limit keeps the run fast: mutated headers claim sizes up to 65535 x 65535
        const img = await Image.fromBuffer(bytes, { maxPixels: 1 << 20 });
        expect(img.data.length).toBe(img.width * img.height * 3);
        outcome = 'decoded';
        if (i % 7 === 0) {
          // the decoded oddities (any size, any aspect) also go through resize + the encoder
          using f = (await encoder.encodeChunks(img))[0]!;
          expect(f.nTokens).toBe(36);
          encoded++;
        }
      } catch (e) {
        if (!MmError.isInstance(e)) throw e;
        outcome = e.code;
      }
      counts[outcome] = (counts[outcome] ?? 0) + 1;
    }
    console.log(
      `image fuzz: ${N} mutated images, no crash: ${Object.entries(counts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')} (${encoded} decoded ones also encoded)`,
    );
    expect(Object.keys(counts).sort()).toEqual(
      expect.arrayContaining(['MM_IMAGE_DECODE', 'decoded']),
    );
    for (const k of Object.keys(counts)) {
      expect(['decoded', 'MM_IMAGE_DECODE', 'MM_IMAGE_TOO_LARGE']).toContain(k);
    }
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(N);
  });
});
