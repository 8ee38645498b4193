import {
  MINICPMV_TEST_IMAGE_SIZES,
  syntheticPngFixture,
  type TinyMinicpmvMmprojOptions,
  type TinyMmprojPair,
  tinyMinicpmVocab,
  tinyMinicpmvPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectFollowUpFromCache,
  expectGreedyLikeMtmdCli,
  expectLayoutLikeMtmd,
} from './helpers.test-util.js';
import { MultimodalModel } from './multimodal-model.js';

// MiniCPM-V (`resampler`) through the media-chunk pipeline: a picture becomes an overview and up to
// 9 slices of varying sizes, each resampled to the same number of tokens by the learned queries,
// laid out as mtmd_tokenize lays them out (2.5: <image>ov</image><slice><image>s</image>...\n...
// </slice>; 2.6 and later: <image>ov</image><slice>s</slice>...\n...), on generated fixtures of
// three versions, each with the text architecture of its LLM, against libmtmd and llama-mtmd-cli.
const versions: { name: string; options: TinyMinicpmvMmprojOptions; queries: number }[] = [
  // legacy 2.5 files: no version key (libmtmd: 2) and no query count (libmtmd: 96)
  {
    name: '2.5 (version 2, llama)',
    options: { version: 2, omitVersionKey: true, omitQueryKey: true },
    queries: 96,
  },
  { name: '2.6 (version 3, qwen2)', options: { version: 3 }, queries: 16 },
  // 4.5's default query count (64) without the key
  { name: '4.5 (version 6, qwen2)', options: { version: 6, omitQueryKey: true }, queries: 64 },
];

describe.each(versions)('MiniCPM-V $name against libmtmd', ({ options, queries }) => {
  let model: MultimodalModel;
  let files: TinyMmprojPair;
  const v25 = options.version === 2;
  beforeAll(async () => {
    files = await tinyMinicpmvPair(options);
    model = await MultimodalModel.load({ model: files.llm, mmproj: files.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${MINICPMV_TEST_IMAGE_SIZES.length} sizes`, {
    timeout: 180_000,
  }, async () => {
    const vocab = tinyMinicpmVocab(v25 ? 'llama' : 'qwen2').tokens;
    const id = (t: string) => vocab.indexOf(t);
    const grids = new Set<string>();
    for (const [w, h] of MINICPMV_TEST_IMAGE_SIZES) {
      const image = await syntheticPngFixture(w, h, 3);
      const layout = await expectLayoutLikeMtmd(model, files, image);
      const { ours, text, worst, cosMin } = layout;
      for (const m of layout.media) expect(m.ours.chunk.nTokens).toBe(queries);

      // the markers: <image> around the overview first, then one slice marker pair per slice
      const media = layout.media.length;
      const count = (t: string) => text.filter((x) => x === id(t)).length;
      const slices = media - 1;
      if (v25) {
        expect([count('<image>'), count('</image>')]).toEqual([media, media]);
        expect(count('<slice>')).toBe(slices > 0 ? 1 : 0);
      } else {
        expect([count('<image>'), count('<slice>'), count('</slice>')]).toEqual([
          1,
          slices,
          slices,
        ]);
      }
      const before = ours.chunks[layout.media[0]!.index - 1]!;
      expect(before.kind === 'text' && before.tokens.at(-1)).toBe(id('<image>'));
      grids.add(`${media}`);
      console.log(
        `minicpmv ${options.version} ${w}x${h}: overview + ${slices} slices, ${media} chunks of ${queries} tokens, ${ours.positions} positions, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
    expect(grids.size).toBe(MINICPMV_TEST_IMAGE_SIZES.length); // every size slices differently
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 600_000,
  }, async () => {
    for (const [w, h] of MINICPMV_TEST_IMAGE_SIZES) {
      const image = await syntheticPngFixture(w, h, 5);
      const label = `minicpmv ${options.version} ${w}x${h}`;
      await expectGreedyLikeMtmdCli(model, files, image, { label });
      await expectFollowUpFromCache(model, image);
    }
  });
});
