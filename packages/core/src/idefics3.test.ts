import { spanPositionIds } from '@mm/projectors';
import {
  compareVectors,
  IDEFICS3_OLD_TEST_IMAGE_SIZES,
  IDEFICS3_TEST_IMAGE_SIZES,
  idefics3Grid,
  mtmdCli,
  runMtmdLayout,
  syntheticPngFixture,
  type TinyIdefics3MmprojOptions,
  type TinyMmprojPair,
  tinyIdefics3Pair,
  tinySmolLmSpecialIds,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from './helpers.test-util.js';
import { preparePrompt } from './media.js';
import { flattenMessages, MEDIA_MARKER } from './messages.js';
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
      const { gridX, gridY } = idefics3Grid(options, w, h);
      grids.add(`${gridX}x${gridY}`);
      const media = ours.chunks.filter((c) => c.kind === 'media');
      expect(media.length).toBe(gridX * gridY + 1);
      expect(ours.chunks.map((c) => c.kind)).toEqual(
        ref.chunks.map((c) => (c.type === 'text' ? 'text' : 'media')),
      );
      let pos = 0;
      let worst = 0;
      let cosMin = 1;
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
        expect(c.chunk.rows.length).toBe(r.embd.length);
        expect(max).toBeLessThanOrEqual(1e-3);
        expect(cos).toBeGreaterThanOrEqual(0.9999);
        worst = Math.max(worst, max);
        cosMin = Math.min(cosMin, cos);
        expect([c.chunk.nTokens, c.nPos, c.chunk.causal]).toEqual([
          r.nTokens,
          r.nPos,
          !r.nonCausal,
        ]);
        const pid = spanPositionIds(c.chunk, pos, false);
        expect(r.positions.map((_, k) => ({ t: pid[k], y: pid[k], x: pid[k], z: pid[k] }))).toEqual(
          r.positions,
        );
        pos += c.nPos;
      });
      expect(pos).toBe(ref.nPosTotal);
      expect(ours.positions).toBe(ref.nPosTotal);
      // the markers are there: one <row_R_col_C> per tile, the global image last
      const text = ours.chunks.flatMap((c) => (c.kind === 'text' ? Array.from(c.tokens) : []));
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
        `idefics3 ${w}x${h}: ${gridX}x${gridY} tiles + global image, ${media.length} chunks of ${media[0]!.kind === 'media' ? media[0]!.chunk.nTokens : 0} tokens, ${ours.positions} positions, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
    expect(grids.size).toBe(sizes.length); // every size tiles differently
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
        `idefics3 ${w}x${h}: ours ${JSON.stringify(first.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(first.text).toBe(ref);
      expect(first.text.length).toBeGreaterThan(0);
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
