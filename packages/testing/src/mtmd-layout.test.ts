import { describe, expect, it } from 'vitest';
import { syntheticImage } from './images.js';
import { resolveTinyMmprojOptions, tinyMmprojPair } from './mmproj.js';
import {
  compareVectors,
  type MtmdLayoutChunk,
  type MtmdLayoutResult,
  type MtmdMediaChunk,
  MtmdOracleError,
  runMtmdLayout,
  runMtmdOracle,
} from './mtmd-oracle.js';
import { refGenerate } from './oracle.js';
import { TINY_LLAMA_SPECIAL_IDS } from './tiny-llama.js';

// The layout mode of the libmtmd oracle: mtmd_tokenize's chunks for a whole prompt, their KV
// positions as mtmd_helper_eval_chunks assigns them, and each media chunk's embeddings.

const o = resolveTinyMmprojOptions({ family: 'mlp' });
const nTokensMlp = (o.imageSize / o.patchSize) ** 2;
const images = [syntheticImage(40, 40, 31), syntheticImage(90, 61, 32)];

function media(chunks: MtmdLayoutChunk[]): MtmdMediaChunk[] {
  return chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
}

/** The text model's own tokens of one prompt segment (libllama, special tokens parsed), no BOS. */
async function segmentTokens(model: string, text: string): Promise<number[]> {
  const { promptTokens } = await refGenerate({ model, prompt: text, maxTokens: 0 });
  expect(promptTokens[0]).toBe(TINY_LLAMA_SPECIAL_IDS.bos);
  return promptTokens.slice(1);
}

/** Linear positions: every chunk starts where the previous one ended, rows count up by one. */
function expectLinearPositions(layout: MtmdLayoutResult): void {
  let nPast = 0;
  for (const c of layout.chunks) {
    expect(c.pos0).toBe(nPast);
    if (c.type !== 'text') {
      expect(c.positions).toEqual(
        Array.from({ length: c.nTokens }, (_, i) => ({
          t: nPast + i,
          y: nPast + i,
          x: nPast + i,
          z: nPast + i,
        })),
      );
    }
    nPast += c.nPos;
  }
  expect(layout.nPast).toBe(nPast);
  expect(layout.nPosTotal).toBe(nPast);
  expect(layout.nTokensTotal).toBe(layout.chunks.reduce((n, c) => n + c.nTokens, 0));
}

describe('libmtmd prompt layout (mlp)', () => {
  it('two images between text: chunks, tokens, positions and embeddings', async () => {
    const pair = await tinyMmprojPair({ family: 'mlp' });
    const prompt = 'A <__media__> B <__media__> C';
    const layout = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt,
      images,
    });
    expect(layout.marker).toBe('<__media__>');
    expect(layout.useMrope).toBe(false);
    expect(layout.nEmbd).toBe(pair.nEmbd);
    expect(layout.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text', 'image', 'text']);

    // Each text segment is tokenised on its own; BOS only at the very start.
    const segments = ['A ', ' B ', ' C'];
    const texts = layout.chunks.filter((c) => c.type === 'text');
    for (const [i, seg] of segments.entries()) {
      const expected = await segmentTokens(pair.llm, seg);
      expect(texts[i]!.tokens).toEqual(
        i === 0 ? [TINY_LLAMA_SPECIAL_IDS.bos, ...expected] : expected,
      );
      expect(texts[i]!.nTokens).toBe(texts[i]!.tokens.length);
      expect(texts[i]!.nPos).toBe(texts[i]!.tokens.length);
      if (i > 0) expect(texts[i]!.tokens).not.toContain(TINY_LLAMA_SPECIAL_IDS.bos);
    }

    for (const c of media(layout.chunks)) {
      expect(c).toMatchObject({
        type: 'image',
        nTokens: nTokensMlp,
        nPos: nTokensMlp,
        nx: nTokensMlp,
        ny: 1,
        nonCausal: false,
        id: '',
      });
      expect(c.embd.length).toBe(nTokensMlp * pair.nEmbd);
      expect(c.pixelsShape).toEqual([3, o.imageSize, o.imageSize]);
    }
    expectLinearPositions(layout);

    // The same image alone (per-image mode) gives bit-identical embeddings and pixels.
    const ref = await runMtmdOracle({ mmproj: pair.mmproj, textModel: pair.llm, images });
    for (const [i, c] of media(layout.chunks).entries()) {
      expect(ref[i]!.nTokens).toBe(c.nTokens);
      expect(compareVectors(c.embd, ref[i]!.embd).maxAbsDiff).toBe(0);
      expect(compareVectors(c.pixels!, ref[i]!.pixels).maxAbsDiff).toBe(0);
      expect(compareVectors(c.features!, ref[i]!.features).maxAbsDiff).toBe(0);
      expect(c.featuresShape).toEqual(ref[i]!.featuresShape);
    }
  });

  it('an empty segment gives no text chunk; a media-first prompt gets a BOS-only chunk', async () => {
    const pair = await tinyMmprojPair({ family: 'mlp' });
    const trailing = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: 'A <__media__> B <__media__>',
      images,
    });
    expect(trailing.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text', 'image']);
    expectLinearPositions(trailing);

    const first = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: '<__media__>',
      images: [images[0]!],
    });
    expect(first.chunks.map((c) => c.type)).toEqual(['text', 'image']);
    expect(first.chunks[0]).toMatchObject({ tokens: [TINY_LLAMA_SPECIAL_IDS.bos], pos0: 0 });
    expect(first.chunks[1]).toMatchObject({ pos0: 1, nPos: nTokensMlp });
    expect(first.nPosTotal).toBe(1 + nTokensMlp);
  });

  it('--features-tensor captures a named encoder stage in both modes', async () => {
    const pair = await tinyMmprojPair({ family: 'mlp' });
    const options = { mmproj: pair.mmproj, textModel: pair.llm, featuresTensor: 'pre_ln' };
    const layout = await runMtmdLayout({ ...options, prompt: '<__media__>', images: [images[1]!] });
    const [ref] = await runMtmdOracle({ ...options, images: [images[1]!] });
    const [chunk] = media(layout.chunks);
    // pre_ln sees every patch plus the class token: [n_patches + 1][n_embd_v]
    expect(chunk!.featuresShape).toEqual([nTokensMlp + 1, o.nEmbd]);
    expect(chunk!.featuresNe).toEqual([o.nEmbd, nTokensMlp + 1, 1, 1]);
    expect(ref!.featuresShape).toEqual([nTokensMlp + 1, o.nEmbd]);
    expect(compareVectors(chunk!.features!, ref!.features).maxAbsDiff).toBe(0);
    expect(compareVectors(chunk!.embd, ref!.embd).maxAbsDiff).toBe(0);

    const missing = runMtmdLayout({
      ...options,
      featuresTensor: 'no-such-tensor',
      prompt: '<__media__>',
      images: [images[0]!],
    });
    await expect(missing).rejects.toBeInstanceOf(MtmdOracleError);
    await expect(missing).rejects.toMatchObject({ exitCode: 4 });
    await expect(missing).rejects.toThrow(/no tensor named no-such-tensor/);
  });

  it('fails with MtmdOracleError when markers and media do not match', async () => {
    const pair = await tinyMmprojPair({ family: 'mlp' });
    const run = runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: 'only one <__media__>',
      images,
    });
    await expect(run).rejects.toBeInstanceOf(MtmdOracleError);
    await expect(run).rejects.toMatchObject({ exitCode: 4 });
    await expect(run).rejects.toThrow(/mtmd_tokenize failed/);
  });
});
