import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  mtmdCli,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyGemma3Pair,
  tinyQwenVlPair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// The CLI contract on the families with dynamic resolution, M-RoPE spans and non-causal spans:
// `mm run -m M --mmproj P --image I -p ... --temp 0 -n N -t T` prints only the answer, the text
// llama-mtmd-cli prints for the same flags, without the whitespace the first token may start with
// (mm run's answer-only stdout, as on tiny-shapes: ' a red circle...' is printed 'a red circle...').

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

const families: { name: string; pair: () => Promise<TinyMmprojPair>; sizes: [number, number][] }[] =
  [
    {
      name: 'qwen2vl_merger',
      pair: () => tinyQwenVlPair({ family: 'qwen2vl_merger' }),
      sizes: [
        [150, 90],
        [20, 20],
      ],
    },
    {
      name: 'qwen2.5vl_merger',
      pair: () => tinyQwenVlPair({ family: 'qwen2.5vl_merger' }),
      sizes: [
        [50, 170],
        [64, 64],
      ],
    },
    {
      name: 'gemma3',
      pair: () => tinyGemma3Pair(),
      sizes: [
        [120, 40],
        [48, 48],
      ],
    },
  ];

describe.each(families)('mm run with a $name model', ({ name, pair, sizes }) => {
  it('prints only the answer, equal to llama-mtmd-cli --temp 0', { timeout: 300_000 }, async () => {
    const files = await pair();
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
        `${name} ${w}x${h}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
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
