import {
  LLAVA16_TEST_IMAGE_SIZES,
  type MtmdMediaChunk,
  runMtmdLayout,
  syntheticImage,
  tinyLlava16Pair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { fmt, parity } from './helpers.test-util.js';
import { Image, VisionEncoder } from './index.js';

// LLaVA-1.6 anyres slicing (libmtmd's llava-uhd preprocessor with pinpoints) against libmtmd:
// the chunks of a picture, their sizes and their pixels. libmtmd's prompt puts the slices first
// and the overview last; VisionEncoder.slice() gives the overview first, then the slices row-major.

/** Sizes that tile differently: the test fixture's and a few more aspect ratios. */
const SIZES: readonly { size: readonly [number, number]; grid: readonly [number, number] }[] = [
  ...LLAVA16_TEST_IMAGE_SIZES,
  { size: [33, 32], grid: [2, 1] }, // one pixel too wide: a padded 2x1 grid
  { size: [70, 40], grid: [3, 3] },
  { size: [100, 30], grid: [3, 1] },
  { size: [40, 2000], grid: [1, 3] }, // 1:50, still keeps pixels of the picture
  // Aspect ratios so extreme that every pinpoint keeps 0 pixels of the picture: libmtmd's
  // select_best_resolution then takes the first candidate that wastes the least (32x64), whatever
  // the orientation. Bounded: three chunks.
  { size: [1, 20000], grid: [1, 2] },
  { size: [20000, 1], grid: [1, 2] },
  { size: [5, 2000], grid: [1, 2] },
  { size: [32, 32], grid: [0, 0] }, // exactly one slice: the overview only, a plain copy
  { size: [1, 1], grid: [0, 0] },
];

describe('LLaVA-1.6 slicing equals libmtmd', () => {
  it(`chunk count, sizes and pixels on ${SIZES.length} sizes`, { timeout: 300_000 }, async () => {
    const pair = await tinyLlava16Pair();
    using encoder = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    expect(encoder.info.tiled).toBe(true);
    const S = encoder.imageSize;
    for (const [i, { size, grid }] of SIZES.entries()) {
      const [w, h] = size;
      const raw = syntheticImage(w, h, 40 + i);
      const { inputs, layout } = await encoder.slice(Image.fromRGB(raw.data, w, h));
      const ref = await runMtmdLayout({
        mmproj: pair.mmproj,
        textModel: pair.llm,
        prompt: 'A <__media__> B',
        images: [raw],
      });
      const media = ref.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
      const nSlices = grid[0] * grid[1];
      expect(layout).toEqual({ gridX: grid[0], gridY: grid[1], hasOverview: true });
      expect(inputs.length).toBe(nSlices + 1);
      expect(media.length).toBe(inputs.length);
      // libmtmd's order: slices row-major, then the overview
      const ordered = [...inputs.slice(1), inputs[0]!];
      let worst = 0;
      for (const [k, p] of ordered.entries()) {
        const r = media[k]!;
        expect([p.width, p.height]).toEqual([S, S]);
        expect(r.pixelsShape).toEqual([3, p.height, p.width]);
        const { maxAbsDiff } = parity(p.data, r.pixels!);
        worst = Math.max(worst, maxAbsDiff);
      }
      console.log(
        `llava16 ${w}x${h}: ${grid[0]}x${grid[1]} slices + overview = ${inputs.length} chunks, pixels max |diff| ${fmt(worst)}`,
      );
      expect(worst).toBe(0);
    }
  });
});
