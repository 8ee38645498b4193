import { tinyQwen2vlFixture } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';

// An M-RoPE image span of nx × ny rows occupies max(nx, ny) KV positions but nx·ny cells
// (libmtmd's layout for Qwen2-VL): the context tracks both, cuts spans whole, and bounds cells.
describe('M-RoPE spans in a Context (qwen2vl text model)', () => {
  let backbone: Backbone;
  beforeAll(async () => {
    backbone = await Backbone.load(await tinyQwen2vlFixture());
  });
  afterAll(() => backbone?.dispose());

  // a 3 × 2 grid at position p: t = p, y = p + row, x = p + column, z = 0
  const span = (p: number) => {
    const n = 6;
    const pos = new Int32Array(4 * n);
    for (let i = 0; i < n; i++) {
      pos[i] = p;
      pos[n + i] = p + Math.floor(i / 3);
      pos[2 * n + i] = p + (i % 3);
    }
    return pos;
  };
  const rows = (n: number) =>
    Float32Array.from({ length: n * backbone.nEmbd }, (_, i) => Math.sin(i) * 0.1);

  it('positions and cells, spans cut whole, cells bound the context, state keeps the spans', async () => {
    expect(backbone.info.nPosPerEmbd).toBe(4);
    const ctx = await backbone.createContext({ contextSize: 16, threads: 2 });
    try {
      const tokens = backbone.tokenize('a b c d e f g h', { addBos: false }).subarray(0, 5);
      expect(tokens.length).toBe(5);
      await ctx.decode({ tokens, logits: 'none' });
      await ctx.decode({ embeddings: rows(6), positions: span(5), nPos: 3, logits: 'none' });
      expect([ctx.nPast(), ctx.nCells()]).toEqual([8, 11]);
      expect(ctx.sequenceTokens().slice(5)).toEqual([-1, -1, -1]);
      // text after the span starts at its last position + 1
      const after = await ctx.decode({ tokens: tokens.subarray(0, 2), logits: 'last' });
      expect(after.nPast).toBe(10);
      expect(ctx.nCells()).toBe(13);
      // 4 more tokens need 17 cells: over the 16 the context holds, though 14 positions would fit
      await expect(ctx.decode({ tokens: tokens.subarray(0, 4) })).rejects.toMatchObject({
        code: 'MM_OUT_OF_CONTEXT',
      });
      // the same state saved and loaded keeps the span's cells
      const state = await ctx.saveState();
      ctx.clear();
      expect([ctx.nPast(), ctx.nCells()]).toEqual([0, 0]);
      await ctx.loadState(state);
      expect([ctx.nPast(), ctx.nCells()]).toEqual([10, 13]);
      // removing from inside the span removes the whole span
      ctx.removeRange(0, 6);
      expect([ctx.nPast(), ctx.nCells()]).toEqual([5, 5]);
      // and it decodes again at its position, giving the same logits as the first time
      await ctx.decode({ embeddings: rows(6), positions: span(5), nPos: 3, logits: 'none' });
      const again = await ctx.decode({ tokens: tokens.subarray(0, 2), logits: 'last' });
      expect(again.logits).toEqual(after.logits);
      await expect(
        ctx.decode({ embeddings: rows(6), positions: span(10), nPos: 7 }),
      ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    } finally {
      ctx.dispose();
    }
  });
});
