import { describe, expect, it } from 'vitest';
import { syntheticImage } from './images.js';
import {
  compareVectors,
  type MtmdMediaChunk,
  runMtmdLayout,
  runMtmdOracle,
} from './mtmd-oracle.js';
import {
  qwenVlGrid,
  resolveTinyQwenVlMmprojOptions,
  tinyQwen2vlSpecialIds,
  tinyQwenVlPair,
} from './qwen2vl.js';

// The layout mode of the libmtmd oracle with M-RoPE (Qwen2-VL): an image chunk takes max(nx, ny)
// KV positions, its rows get (t, y, x) = (pos0, pos0 + row, pos0 + col), and the image sits
// between <|vision_start|> and <|vision_end|>.

describe('libmtmd prompt layout (qwen2vl_merger, M-RoPE)', () => {
  it('two images of different shapes: grids, positions, markers and embeddings', async () => {
    const options = { family: 'qwen2vl_merger' as const };
    const pair = await tinyQwenVlPair(options);
    const o = resolveTinyQwenVlMmprojOptions(options);
    const images = [syntheticImage(150, 90, 41), syntheticImage(50, 170, 42)];
    const grids = images.map((im) => qwenVlGrid(im.width, im.height, o.patchSize));
    const ids = tinyQwen2vlSpecialIds();
    const layout = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: 'A <__media__> B <__media__> C',
      images,
      featuresTensor: `norm_b-${o.nLayers}`,
    });
    expect(layout.useMrope).toBe(true);
    expect(layout.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text', 'image', 'text']);
    const texts = layout.chunks.filter((c) => c.type === 'text');
    expect(texts[0]!.tokens.at(-1)).toBe(ids['<|vision_start|>']);
    expect(texts[1]!.tokens[0]).toBe(ids['<|vision_end|>']);
    expect(texts[1]!.tokens.at(-1)).toBe(ids['<|vision_start|>']);
    expect(texts[2]!.tokens[0]).toBe(ids['<|vision_end|>']);

    const chunks = layout.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
    let nPast = 0;
    for (const c of layout.chunks) {
      expect(c.pos0).toBe(nPast);
      nPast += c.nPos;
    }
    expect([layout.nPast, layout.nPosTotal]).toEqual([nPast, nPast]);
    expect(layout.nPosTotal).toBeLessThan(layout.nTokensTotal);

    const ref = await runMtmdOracle({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      images,
      featuresTensor: `norm_b-${o.nLayers}`,
    });
    for (const [i, c] of chunks.entries()) {
      const g = grids[i]!;
      expect(c).toMatchObject({
        nTokens: g.tokens,
        nx: g.tokensX,
        ny: g.tokensY,
        nPos: Math.max(g.tokensX, g.tokensY),
        nonCausal: false,
      });
      const p0 = c.pos0;
      expect(c.positions).toEqual(
        Array.from({ length: g.tokens }, (_, r) => ({
          t: p0,
          y: p0 + Math.floor(r / g.tokensX),
          x: p0 + (r % g.tokensX),
          z: 0,
        })),
      );
      expect(c.embd.length).toBe(g.tokens * pair.nEmbd);
      expect(compareVectors(c.embd, ref[i]!.embd).maxAbsDiff).toBe(0);
      // the ViT output before the merger: one row per patch (4 per token)
      expect(c.featuresShape).toEqual([4 * g.tokens, o.nEmbd]);
      expect(compareVectors(c.features!, ref[i]!.features).maxAbsDiff).toBe(0);
    }
  });
});
