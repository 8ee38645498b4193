import {
  IDEFICS3_OLD_TEST_IMAGE_SIZES,
  IDEFICS3_TEST_IMAGE_SIZES,
  idefics3Grid,
  syntheticPngFixture,
  type TinyIdefics3MmprojOptions,
  type TinyMmprojPair,
  tinyIdefics3Pair,
  tinySmolLmSpecialIds,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectFollowUpFromCache,
  expectGreedyLikeMtmdCli,
  expectLayoutLikeMtmd,
} from './helpers.test-util.js';
import { MultimodalModel } from './multimodal-model.js';

// SmolVLM / Idefics3 through the media-chunk pipeline: a picture becomes tiles plus a global image,
// one chunk each, laid out as mtmd_tokenize lays them out (each tile after
// "<fake_token_around_image><row_R_col_C>", "\n" between rows, "\n\n<fake_token_around_image>
// <global-img>" before the global image and "<fake_token_around_image>" after it), on generated
// fixtures of both tilings, against llama.cpp's libmtmd and llama-mtmd-cli.
const tilings: {
  name: string;
  options: TinyIdefics3MmprojOptions;
  sizes: readonly (readonly [number, number])[];
}[] = [
  { name: 'longest edge 96', options: {}, sizes: IDEFICS3_TEST_IMAGE_SIZES },
  {
    name: 'no longest edge (older files)',
    options: { longestEdge: 0 },
    sizes: IDEFICS3_OLD_TEST_IMAGE_SIZES,
  },
];

describe.each(tilings)('idefics3 ($name) against libmtmd', ({ options, sizes }) => {
  let model: MultimodalModel;
  let files: TinyMmprojPair;
  beforeAll(async () => {
    files = await tinyIdefics3Pair(options);
    model = await MultimodalModel.load({ model: files.llm, mmproj: files.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${sizes.length} sizes`, {
    timeout: 120_000,
  }, async () => {
    const ids = tinySmolLmSpecialIds();
    const grids = new Set<string>();
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 3);
      const { ours, media, text, worst, cosMin } = await expectLayoutLikeMtmd(model, files, image);
      const { gridX, gridY } = idefics3Grid(options, w, h);
      grids.add(`${gridX}x${gridY}`);
      expect(media.length).toBe(gridX * gridY + 1);
      // the markers are there: one <row_R_col_C> per tile, the global image last
      for (let r = 1; r <= gridY; r++) {
        for (let col = 1; col <= gridX; col++) {
          expect(text).toContain(ids[`<row_${r}_col_${col}>`]);
        }
      }
      const beforeGlobal = ours.chunks[ours.chunks.length - 3]!;
      expect(beforeGlobal.kind === 'text' && Array.from(beforeGlobal.tokens).slice(-2)).toEqual([
        ids['<fake_token_around_image>'],
        ids['<global-img>'],
      ]);
      console.log(
        `idefics3 ${w}x${h}: ${gridX}x${gridY} tiles + global image, ${media.length} chunks of ${media[0]!.ours.chunk.nTokens} tokens, ${ours.positions} positions, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
    expect(grids.size).toBe(sizes.length); // every size tiles differently
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 300_000,
  }, async () => {
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 5);
      await expectGreedyLikeMtmdCli(model, files, image, { label: `idefics3 ${w}x${h}` });
      await expectFollowUpFromCache(model, image);
    }
  });
});
