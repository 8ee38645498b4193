import {
  GEMMA3_TEST_IMAGE_SIZES,
  QWEN_VL_TEST_IMAGE_SIZES,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyGemma3Pair,
  tinyQwenVlPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectFollowUpFromCache,
  expectGreedyLikeMtmdCli,
  expectLayoutLikeMtmd,
} from './helpers.test-util.js';
import { usesMrope } from './media.js';
import { MultimodalModel } from './multimodal-model.js';

// The media-chunk pipeline on the families that stress it: Qwen2/2.5-VL (dynamic resolution,
// M-RoPE spans that take max(nx, ny) positions, 2.5's windows) and Gemma 3 (a non-causal span),
// each on generated fixtures and several picture sizes, against llama.cpp's libmtmd.
const families: {
  name: string;
  pair: () => Promise<TinyMmprojPair>;
  sizes: readonly (readonly [number, number])[];
}[] = [
  {
    name: 'qwen2vl_merger',
    pair: () => tinyQwenVlPair({ family: 'qwen2vl_merger' }),
    sizes: QWEN_VL_TEST_IMAGE_SIZES,
  },
  {
    name: 'qwen2.5vl_merger',
    pair: () => tinyQwenVlPair({ family: 'qwen2.5vl_merger' }),
    sizes: QWEN_VL_TEST_IMAGE_SIZES,
  },
  { name: 'gemma3', pair: () => tinyGemma3Pair(), sizes: GEMMA3_TEST_IMAGE_SIZES },
];

describe.each(families)('$name against libmtmd', ({ name, pair, sizes }) => {
  let model: MultimodalModel;
  let files: TinyMmprojPair;
  beforeAll(async () => {
    files = await pair();
    model = await MultimodalModel.load({ model: files.llm, mmproj: files.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${sizes.length} sizes`, {
    timeout: 120_000,
  }, async () => {
    expect(usesMrope(model.backbone)).toBe(name !== 'gemma3');
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 3);
      await expectLayoutLikeMtmd(model, files, image, { label: `${name} ${w}x${h}` });
    }
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 300_000,
  }, async () => {
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 5);
      await expectGreedyLikeMtmdCli(model, files, image, { label: `${name} ${w}x${h}` });
      await expectFollowUpFromCache(model, image);
    }
  });
});
