import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  LLAVA16_TEST_IMAGE_SIZES,
  mtmdCli,
  syntheticPngFixture,
  tinyLlava16Pair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// `mm run` on a LLaVA-1.6 (mlp + grid pinpoints) model: a picture cut into slices and an overview
// (1, 3, 4 and 10 chunks) answers as llama-mtmd-cli does with the same flags (answer-only stdout,
// without the whitespace the first token may start with).

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

/** llama-mtmd-cli prints each piece as a C string: a <0x00> byte token prints nothing. */
const printable = (s: string) => s.replaceAll('\u0000', '');

describe('mm run with a LLaVA-1.6 model', () => {
  it('prints only the answer, equal to llama-mtmd-cli --temp 0', { timeout: 600_000 }, async () => {
    const files = await tinyLlava16Pair();
    for (const [i, { size, chunks }] of LLAVA16_TEST_IMAGE_SIZES.entries()) {
      const [w, h] = size;
      const image = await syntheticPngFixture(w, h, 30 + i);
      const prompt = i % 2 === 0 ? 'Describe the image.' : 'What is in the picture?';
      const n = 8 + i * 2;
      const ref = await mtmdCli({
        model: files.llm,
        mmproj: files.mmproj,
        images: [image],
        prompt,
        maxTokens: n,
        threads: 2,
      });
      const args = [
        'run',
        '-m',
        files.llm,
        '--mmproj',
        files.mmproj,
        '--image',
        image,
        '-p',
        prompt,
        '--temp',
        '0',
        '-n',
        String(n),
        '-t',
        '2',
      ];
      const r = await runMain(args);
      console.log(
        `llava16 ${w}x${h} (${chunks} chunks): mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(r.code, r.err).toBe(0);
      expect(ref.length).toBeGreaterThan(0);
      expect(printable(r.out)).toBe(`${ref.trimStart()}\n`);
      expect(r.err).toMatch(/prompt tokens .* image\), encode .* tok\/s/);
      if (chunks === 10) {
        // the same through the real binary, quiet: stdout is the answer, stderr is empty
        const p = spawnSync(process.execPath, [bin, ...args, '-q'], {
          encoding: 'utf8',
          timeout: 180_000,
        });
        expect([p.status, printable(p.stdout), p.stderr]).toEqual([0, `${ref.trimStart()}\n`, '']);
      }
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
