import { type TinyMinicpmvMmprojOptions, tinyMinicpmvPair } from '@mm/testing';
import { describe, it } from 'vitest';
import { expectRunsLikeMtmdCli } from './run-families.test-util.js';

// The CLI contract on MiniCPM-V (`resampler`): `mm run -m M --mmproj P --image I -p ... --temp 0
// -n N -t T` prints only the answer, the text llama-mtmd-cli prints for the same flags, on pictures
// that make an overview alone, a row of slices and a grid of slices, for 2.5 (a Llama-3 text model,
// <slice> around all slices) and 2.6 (Qwen2, <slice> around each).

const versions: { name: string; options: TinyMinicpmvMmprojOptions }[] = [
  { name: '2.5', options: { version: 2 } },
  { name: '2.6', options: { version: 3 } },
];

const sizes: [number, number][] = [
  [200, 150], // 3x3 slices
  [40, 30], // the overview alone
  [100, 60], // 2x1 slices
];

describe.each(versions)('mm run with a MiniCPM-V $name model', ({ name, options }) => {
  it('prints only the answer, equal to llama-mtmd-cli --temp 0', { timeout: 600_000 }, async () => {
    const files = await tinyMinicpmvPair(options);
    await expectRunsLikeMtmdCli(files, sizes, { label: `minicpmv ${name}`, tokenStep: 4 });
  });
});
