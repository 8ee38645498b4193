import { describe, expect, it } from 'vitest';
import { GEMMA3_SPECIAL_IDS, gemma3ImageTokens, tinyGemma3Pair } from './gemma3.js';
import { syntheticImage } from './images.js';
import {
  compareVectors,
  type MtmdMediaChunk,
  runMtmdLayout,
  runMtmdOracle,
} from './mtmd-oracle.js';

// The layout mode of the libmtmd oracle for Gemma 3: linear positions, image tokens attend
// non-causally inside their span, each image between <start_of_image> and <end_of_image>.

describe('libmtmd prompt layout (gemma3, non-causal)', () => {
  it('two images: non-causal spans, linear positions, markers and embeddings', async () => {
    const pair = await tinyGemma3Pair();
    const nTokens = gemma3ImageTokens();
    const images = [syntheticImage(120, 40, 51), syntheticImage(30, 90, 52)];
    const layout = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: 'A <__media__> B <__media__> C',
      images,
    });
    expect(layout.useMrope).toBe(false);
    expect(layout.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text', 'image', 'text']);
    const texts = layout.chunks.filter((c) => c.type === 'text');
    expect(texts[0]!.tokens[0]).toBe(GEMMA3_SPECIAL_IDS.bos);
    expect(texts[0]!.tokens.at(-1)).toBe(GEMMA3_SPECIAL_IDS.startOfImage);
    expect(texts[1]!.tokens[0]).toBe(GEMMA3_SPECIAL_IDS.endOfImage);
    expect(texts[1]!.tokens.at(-1)).toBe(GEMMA3_SPECIAL_IDS.startOfImage);
    expect(texts[2]!.tokens[0]).toBe(GEMMA3_SPECIAL_IDS.endOfImage);
    for (const t of texts.slice(1)) expect(t.tokens).not.toContain(GEMMA3_SPECIAL_IDS.bos);

    let nPast = 0;
    for (const c of layout.chunks) {
      expect(c.pos0).toBe(nPast);
      nPast += c.nPos;
    }
    expect([layout.nPast, layout.nPosTotal, layout.nTokensTotal]).toEqual([nPast, nPast, nPast]);

    const ref = await runMtmdOracle({ mmproj: pair.mmproj, textModel: pair.llm, images });
    const chunks = layout.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
    for (const [i, c] of chunks.entries()) {
      expect(c).toMatchObject({ nTokens, nPos: nTokens, nx: nTokens, ny: 1, nonCausal: true });
      expect(c.positions).toEqual(
        Array.from({ length: nTokens }, (_, r) => {
          const p = c.pos0 + r;
          return { t: p, y: p, x: p, z: p };
        }),
      );
      expect(compareVectors(c.embd, ref[i]!.embd).maxAbsDiff).toBe(0);
    }
  });
});
