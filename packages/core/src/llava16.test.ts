import {
  LLAVA16_TEST_IMAGE_SIZES,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyLlava16Pair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectFollowUpFromCache,
  expectGreedyLikeMtmdCli,
  expectLayoutLikeMtmd,
} from './helpers.test-util.js';
import { usesMrope } from './media.js';
import { MultimodalModel } from './multimodal-model.js';

// LLaVA-1.6 anyres (CLIP + mlp with clip.vision.image_grid_pinpoints) against libmtmd: a picture
// larger than one slice becomes the slices of the best pinpoint, then the overview, each its own
// chunk with no text between them (mtmd.cpp's default slice template); a small picture is the
// overview alone. Sizes from @mm/testing tile into 1, 3 (2x1), 4 (1x3) and 10 (3x3) chunks.
describe('LLaVA-1.6 (mlp + pinpoints) against libmtmd', () => {
  let model: MultimodalModel;
  let files: TinyMmprojPair;
  beforeAll(async () => {
    files = await tinyLlava16Pair();
    model = await MultimodalModel.load({
      model: files.llm,
      mmproj: files.mmproj,
      threads: 2,
      contextSize: 1024,
    });
  });
  afterAll(() => model?.dispose());

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${LLAVA16_TEST_IMAGE_SIZES.length} sizes`, {
    timeout: 300_000,
  }, async () => {
    expect(usesMrope(model.backbone)).toBe(false);
    for (const { size, chunks: nChunks } of LLAVA16_TEST_IMAGE_SIZES) {
      const [w, h] = size;
      const image = await syntheticPngFixture(w, h, 3);
      const { media, worst, cosMin } = await expectLayoutLikeMtmd(model, files, image);
      expect(media.length).toBe(nChunks);
      console.log(
        `llava16 ${w}x${h}: ${nChunks} chunks of ${media[0]?.ours.nPos} tokens, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache', {
    timeout: 600_000,
  }, async () => {
    for (const { size } of LLAVA16_TEST_IMAGE_SIZES) {
      const [w, h] = size;
      const image = await syntheticPngFixture(w, h, 5);
      await expectGreedyLikeMtmdCli(model, files, image, {
        label: `llava16 ${w}x${h}`,
        contextSize: 1024,
        dropNul: true,
      });
      await expectFollowUpFromCache(model, image, { fresh: false });
    }
  });
});

// The other LLaVA-style projectors take pinpoints the same way (libmtmd: MLP, MLP_NORM, LDP, LDPV2
// all use llava-uhd when the file has them): every chunk's embeddings and the layout.
const LDP_PINPOINTS = [
  [48, 96],
  [96, 48],
  [96, 96],
  [144, 48],
] as const;
describe.each([
  { family: 'mlp_norm' as const, pinpoints: undefined, size: [70, 40] as const, chunks: 10 },
  {
    family: 'ldp' as const,
    pinpoints: LDP_PINPOINTS,
    size: [100, 50] as const,
    chunks: 3,
  },
  {
    family: 'ldpv2' as const,
    pinpoints: LDP_PINPOINTS,
    size: [40, 90] as const,
    chunks: 3,
  },
])('$family with pinpoints against libmtmd', ({ family, pinpoints, size, chunks }) => {
  it(`${size[0]}x${size[1]}: ${chunks} chunks, embeddings and layout equal mtmd_tokenize's`, {
    timeout: 300_000,
  }, async () => {
    const files = await tinyLlava16Pair({ family, ...(pinpoints ? { pinpoints } : {}) });
    using model = await MultimodalModel.load({
      model: files.llm,
      mmproj: files.mmproj,
      threads: 2,
    });
    const image = await syntheticPngFixture(size[0], size[1], 9);
    const { media, worst } = await expectLayoutLikeMtmd(model, files, image, {
      question: 'What is it?',
    });
    expect(media.length).toBe(chunks);
    console.log(
      `${family} + pinpoints ${size[0]}x${size[1]}: ${chunks} chunks, max |diff| ${worst.toExponential(2)}`,
    );
  });
});
