import {
  compareVectors,
  LLAVA16_TEST_IMAGE_SIZES,
  mtmdCli,
  runMtmdLayout,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyLlava16Pair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask } from './helpers.test-util.js';
import { preparePrompt, usesMrope } from './media.js';
import { flattenMessages, MEDIA_MARKER } from './messages.js';
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
      expect(ours.chunks.filter((c) => c.kind === 'media').length).toBe(nChunks);
      let pos = 0;
      let worst = 0;
      let minCos = 1;
      ours.chunks.forEach((c, i) => {
        const r = ref.chunks[i]!;
        expect(r.pos0).toBe(pos);
        if (c.kind === 'text' && r.type === 'text') {
          expect(Array.from(c.tokens)).toEqual(r.tokens);
          pos += c.tokens.length;
          return;
        }
        if (c.kind !== 'media' || r.type === 'text') throw new Error('chunk kinds differ');
        expect(c.chunk.rows.length).toBe(r.embd.length);
        const { maxAbsDiff: max, cosine: cos } = compareVectors(c.chunk.rows, r.embd);
        worst = Math.max(worst, max);
        minCos = Math.min(minCos, cos);
        expect(max).toBeLessThanOrEqual(1e-3);
        expect(cos).toBeGreaterThanOrEqual(0.9999);
        expect([c.chunk.nTokens, c.nPos, c.chunk.causal]).toEqual([
          r.nTokens,
          r.nPos,
          !r.nonCausal,
        ]);
        expect(r.positions).toEqual(
          Array.from({ length: r.nTokens }, (_, k) => {
            const p = pos + k;
            return { t: p, y: p, x: p, z: p };
          }),
        );
        pos += c.nPos;
      });
      console.log(
        `llava16 ${w}x${h}: ${nChunks} chunks of ${ours.chunks.find((c) => c.kind === 'media')?.nPos} tokens, max |diff| ${worst.toExponential(2)}, min cosine ${minCos.toFixed(6)}`,
      );
      expect(pos).toBe(ref.nPosTotal);
      expect(ours.positions).toBe(ref.nPosTotal);
    }
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache', {
    timeout: 600_000,
  }, async () => {
    for (const { size } of LLAVA16_TEST_IMAGE_SIZES) {
      const [w, h] = size;
      const image = await syntheticPngFixture(w, h, 5);
      const question = 'Describe it.';
      const ref = await mtmdCli({
        model: files.llm,
        mmproj: files.mmproj,
        images: [image],
        prompt: question,
        maxTokens: 12,
        threads: 2,
        contextSize: 1024,
      });
      await model.reset();
      model.imageCache.clear();
      const first = await model.chat(ask(image, question), { maxTokens: 12 });
      console.log(
        `llava16 ${w}x${h}: ours ${JSON.stringify(first.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      // llama-mtmd-cli prints each piece as a C string: a <0x00> byte token prints nothing
      expect(first.text.replaceAll('\u0000', '')).toBe(ref);
      expect(first.text.length).toBeGreaterThan(0);
      const second = await model.chat(ask(image, 'Anything else?'), { maxTokens: 12 });
      expect(second.stats.imageCacheHits).toBe(1);
      expect(second.stats.encodeMs).toBe(0);
    }
  });
});

// The other LLaVA-style projectors take pinpoints the same way (libmtmd: MLP, MLP_NORM, LDP, LDPV2
// all use llava-uhd when the file has them): every chunk's embeddings and the layout.
describe.each([
  { family: 'mlp_norm' as const, pinpoints: undefined, size: [70, 40] as const, chunks: 10 },
  {
    family: 'ldp' as const,
    pinpoints: [
      [48, 96],
      [96, 48],
      [96, 96],
      [144, 48],
    ] as const,
    size: [100, 50] as const,
    chunks: 3,
  },
  {
    family: 'ldpv2' as const,
    pinpoints: [
      [48, 96],
      [96, 48],
      [96, 96],
      [144, 48],
    ] as const,
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
    const messages = ask(image, 'What is it?');
    const prompt = model.backbone.applyChatTemplate(flattenMessages(messages).messages, {
      addGenerationPrompt: true,
      jinja: model.jinja,
    });
    const ref = await runMtmdLayout({
      mmproj: files.mmproj,
      textModel: files.llm,
      prompt,
      images: [image],
      threads: 2,
    });
    const ours = await preparePrompt(model, messages, {
      positions: model.contextSize,
      what: 'the context',
    });
    expect(ours.chunks.map((c) => c.kind)).toEqual(
      ref.chunks.map((c) => (c.type === 'text' ? 'text' : 'media')),
    );
    expect(ours.chunks.filter((c) => c.kind === 'media').length).toBe(chunks);
    let worst = 0;
    ours.chunks.forEach((c, i) => {
      const r = ref.chunks[i]!;
      if (c.kind === 'text' && r.type === 'text') {
        expect(Array.from(c.tokens)).toEqual(r.tokens);
        return;
      }
      if (c.kind !== 'media' || r.type === 'text') throw new Error('chunk kinds differ');
      const { maxAbsDiff, cosine } = compareVectors(c.chunk.rows, r.embd);
      worst = Math.max(worst, maxAbsDiff);
      expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
      expect(cosine).toBeGreaterThanOrEqual(0.9999);
      expect([c.chunk.nTokens, c.nPos]).toEqual([r.nTokens, r.nPos]);
    });
    console.log(
      `${family} + pinpoints ${size[0]}x${size[1]}: ${chunks} chunks, max |diff| ${worst.toExponential(2)}`,
    );
    expect(ours.positions).toBe(ref.nPosTotal);
  });
});
