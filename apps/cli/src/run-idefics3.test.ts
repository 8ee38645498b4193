import {
  IDEFICS3_OLD_TEST_IMAGE_SIZES,
  IDEFICS3_TEST_IMAGE_SIZES,
  type TinyIdefics3MmprojOptions,
  tinyIdefics3Pair,
} from '@mm/testing';
import { describe, it } from 'vitest';
import { expectRunsLikeMtmdCli } from './run-families.test-util.js';

// `mm run` on SmolVLM / Idefics3 (pictures cut into tiles plus a global image, one chunk each,
// with the tile markers between them): it prints only the answer, llama-mtmd-cli's for the same
// flags, on pictures that tile differently, for both tilings (longest edge, and older files
// without one).

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
    await expectRunsLikeMtmdCli(files, sizes, { label: `idefics3 (${name})` });
  });
});
