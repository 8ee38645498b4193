import { spanPositionIds } from '@mm/projectors';
import {
  compareVectors,
  MINICPMV_TEST_IMAGE_SIZES,
  mtmdCli,
  runMtmdLayout,
  syntheticPngFixture,
  type TinyMinicpmvMmprojOptions,
  type TinyMmprojPair,
  tinyMinicpmVocab,
  tinyMinicpmvPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from './helpers.test-util.js';
import { preparePrompt } from './media.js';
import { flattenMessages, MEDIA_MARKER } from './messages.js';
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
        expect(c.chunk.nTokens).toBe(queries);
        const pid = spanPositionIds(c.chunk, pos, false);
        expect(r.positions.map((_, k) => ({ t: pid[k], y: pid[k], x: pid[k], z: pid[k] }))).toEqual(
          r.positions,
        );
        pos += c.nPos;
      });
      expect(pos).toBe(ref.nPosTotal);
      expect(ours.positions).toBe(ref.nPosTotal);

      // the markers: <image> around the overview first, then one slice marker pair per slice
      const media = ours.chunks.filter((c) => c.kind === 'media').length;
      const text = ours.chunks.flatMap((c) => (c.kind === 'text' ? Array.from(c.tokens) : []));
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
      const first = ours.chunks.findIndex((c) => c.kind === 'media');
      const before = ours.chunks[first - 1]!;
      expect(before.kind === 'text' && before.tokens.at(-1)).toBe(id('<image>'));
      const grid = `${media}`;
      grids.add(grid);
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
        `minicpmv ${options.version} ${w}x${h}: ours ${JSON.stringify(first.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
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
