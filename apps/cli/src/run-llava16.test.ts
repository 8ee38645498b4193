import { LLAVA16_TEST_IMAGE_SIZES, syntheticPngFixture, tinyLlava16Pair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';
import { expectRunLikeMtmdCli } from './run-families.test-util.js';

// `mm run` on a LLaVA-1.6 (mlp + grid pinpoints) model: a picture cut into slices and an overview
// (1, 3, 4 and 10 chunks) answers as llama-mtmd-cli does with the same flags (answer-only stdout,
// without the whitespace the first token may start with).

describe('mm run with a LLaVA-1.6 model', () => {
  it('prints only the answer, equal to llama-mtmd-cli --temp 0', { timeout: 600_000 }, async () => {
    const files = await tinyLlava16Pair();
    for (const [i, { size, chunks }] of LLAVA16_TEST_IMAGE_SIZES.entries()) {
      const [w, h] = size;
      const image = await syntheticPngFixture(w, h, 30 + i);
      const prompt = i % 2 === 0 ? 'Describe the image.' : 'What is in the picture?';
      await expectRunLikeMtmdCli(files, image, prompt, 8 + i * 2, {
        label: `llava16 ${w}x${h} (${chunks} chunks)`,
        // the 10-chunk picture also through the real binary
        binary: chunks === 10 ? { timeout: 180_000 } : undefined,
        dropNul: true,
      });
    }
  });

  it('mm inspect says a picture is cut into 32x32 chunks; mm info lists pinpoint tiling', async () => {
    const files = await tinyLlava16Pair();
    const r = await runMain(['inspect', files.mmproj]);
    expect(r.code, r.err).toBe(0);
    const row = (key: string) => r.out.match(new RegExp(`^\\s*${key}\\s+(.*)$`, 'm'))?.[1];
    expect(row('mm')).toBe('own graph: mlp (encoder clip)');
    expect(row('resolution')).toMatch(/^tiled: 32x32 chunks/);
    expect(row('image tokens')).toBe('64 per chunk');
    const info = await runMain(['info']);
    expect(info.out).toContain('image_grid_pinpoints');
  });
});
