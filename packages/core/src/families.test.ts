import { spanPositionIds } from '@mm/projectors';
import {
  compareVectors,
  GEMMA3_TEST_IMAGE_SIZES,
  mtmdCli,
  QWEN_VL_TEST_IMAGE_SIZES,
  runMtmdLayout,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyGemma3Pair,
  tinyQwenVlPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from './helpers.test-util.js';
import { preparePrompt, usesMrope } from './media.js';
import { flattenMessages, MEDIA_MARKER } from './messages.js';
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
    const mrope = usesMrope(model.backbone);
    expect(mrope).toBe(name !== 'gemma3');
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 3);
      const messages = ask(image, 'What is in the picture?');
      const flat = flattenMessages(messages);
      const prompt = model.backbone.applyChatTemplate(flat.messages, {
        addGenerationPrompt: true,
        jinja: model.jinja,
      });
      expect(prompt).toContain(MEDIA_MARKER);
      const ref = await runMtmdLayout({
        mmproj: files.mmproj,
        textModel: files.llm,
        prompt,
        images: [image],
        threads: 2,
      });
      model.imageCache.clear();
      const ours = await preparePrompt(model, messages, {
        positions: model.contextSize,
        what: 'the context',
      });
      expect(ours.chunks.map((c) => c.kind)).toEqual(
        ref.chunks.map((c) => (c.type === 'text' ? 'text' : 'media')),
      );
      let pos = 0;
      ours.chunks.forEach((c, i) => {
        const r = ref.chunks[i]!;
        expect(r.pos0).toBe(pos);
        if (c.kind === 'text' && r.type === 'text') {
          expect(Array.from(c.tokens)).toEqual(r.tokens);
          pos += c.tokens.length;
          return;
        }
        if (c.kind !== 'media' || r.type === 'text') throw new Error('chunk kinds differ');
        const { maxAbsDiff: max, cosine: cos } = compareVectors(c.chunk.rows, r.embd);
        console.log(
          `${name} ${w}x${h}: ${c.chunk.nTokens} tokens (${c.chunk.nx}x${c.chunk.ny}), ${c.nPos} positions, max |diff| ${max.toExponential(2)}, cosine ${cos.toFixed(6)}`,
        );
        expect(c.chunk.rows.length).toBe(r.embd.length);
        expect(max).toBeLessThanOrEqual(1e-3);
        expect(cos).toBeGreaterThanOrEqual(0.9999);
        expect([c.chunk.nTokens, c.nPos, c.chunk.causal]).toEqual([
          r.nTokens,
          r.nPos,
          !r.nonCausal,
        ]);
        if (mrope) expect([c.chunk.nx, c.chunk.ny]).toEqual([r.nx, r.ny]);
        const ids = spanPositionIds(c.chunk, pos, mrope);
        const n = c.chunk.nTokens;
        const mine = r.positions.map((_, k) =>
          mrope
            ? { t: ids[k], y: ids[n + k], x: ids[2 * n + k], z: ids[3 * n + k] }
            : { t: ids[k], y: ids[k], x: ids[k], z: ids[k] },
        );
        expect(mine).toEqual(r.positions);
        pos += c.nPos;
      });
      expect(pos).toBe(ref.nPosTotal);
      expect(ours.positions).toBe(ref.nPosTotal);
    }
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 300_000,
  }, async () => {
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 5);
      const question = 'Describe it.';
      const ref = await mtmdCli({
        model: files.llm,
        mmproj: files.mmproj,
        images: [image],
        prompt: question,
        maxTokens: 12,
        threads: 2,
      });
      await model.reset();
      model.imageCache.clear();
      const first = await model.chat(ask(image, question), { maxTokens: 12 });
      console.log(
        `${name} ${w}x${h}: ours ${JSON.stringify(first.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(first.text).toBe(ref);
      expect(first.text.length).toBeGreaterThan(0);
      // another question about the same picture: the encoder does not run, the KV prefix is reused
      const follow = ask(image, 'Anything else?');
      const second = await model.chat(follow, { maxTokens: 12 });
      expect(second.stats.imageCacheHits).toBe(1);
      expect(second.stats.encodeMs).toBe(0);
      expect(second.stats.cachedTokens).toBeGreaterThan(0);
      await model.reset();
      model.imageCache.clear();
      const fresh = await model.chat(follow, { maxTokens: 12 });
      expect(fresh.stats.imageCacheHits).toBe(0);
      expect(second.text).toBe(fresh.text);
    }
  });
});
