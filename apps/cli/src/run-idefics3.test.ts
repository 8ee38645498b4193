import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  IDEFICS3_OLD_TEST_IMAGE_SIZES,
  IDEFICS3_TEST_IMAGE_SIZES,
  mtmdCli,
  syntheticPngFixture,
  type TinyIdefics3MmprojOptions,
  tinyIdefics3Pair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// `mm run` on SmolVLM / Idefics3 (pictures cut into tiles plus a global image, one chunk each,
// with the tile markers between them): it prints only the answer, llama-mtmd-cli's for the same
// flags, on pictures that tile differently, for both tilings (longest edge, and older files
// without one).

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

const tilings: {
  name: string;
  options: TinyIdefics3MmprojOptions;
  sizes: readonly (readonly [number, number])[];
}[] = [
  { name: 'longest edge 96', options: {}, sizes: IDEFICS3_TEST_IMAGE_SIZES },
  { name: 'no longest edge', options: { longestEdge: 0 }, sizes: IDEFICS3_OLD_TEST_IMAGE_SIZES },
];

describe.each(tilings)('mm run with an idefics3 model ($name)', ({ name, options, sizes }) => {
  it('prints only the answer, equal to llama-mtmd-cli --temp 0', { timeout: 300_000 }, async () => {
    const files = await tinyIdefics3Pair(options);
    for (const [i, [w, h]] of sizes.entries()) {
      const image = await syntheticPngFixture(w, h, 20 + i);
      const prompt = i === 0 ? 'Describe the image.' : 'What is in the picture?';
      const n = 10 + i * 6;
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
        `idefics3 (${name}) ${w}x${h}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(r.code, r.err).toBe(0);
      expect(ref.length).toBeGreaterThan(0);
      expect(r.out).toBe(`${ref.trimStart()}\n`);
      expect(r.err).toMatch(/prompt tokens .* image\), encode .* tok\/s/);
      if (i === 0) {
        // the same through the real binary, quiet: stdout is the answer, stderr is empty
        const p = spawnSync(process.execPath, [bin, ...args, '-q'], {
          encoding: 'utf8',
          timeout: 120_000,
        });
        expect([p.status, p.stdout, p.stderr]).toEqual([0, `${ref.trimStart()}\n`, '']);
      }
    }
  });
});
