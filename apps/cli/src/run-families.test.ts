import { type TinyMmprojPair, tinyGemma3Pair, tinyQwenVlPair } from '@mm/testing';
import { describe, it } from 'vitest';
import { expectRunsLikeMtmdCli } from './run-families.test-util.js';

// The CLI contract on the families with dynamic resolution, M-RoPE spans and non-causal spans:
// `mm run -m M --mmproj P --image I -p ... --temp 0 -n N -t T` prints only the answer, the text
// llama-mtmd-cli prints for the same flags, without the whitespace the first token may start with
// (mm run's answer-only stdout, as on tiny-shapes: ' a red circle...' is printed 'a red circle...').

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
    await expectRunsLikeMtmdCli(await pair(), sizes, { label: name });
  });
});
