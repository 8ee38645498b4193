import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  mtmdCli,
  syntheticPngFixture,
  type TinyMinicpmvMmprojOptions,
  tinyMinicpmvPair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// The CLI contract on MiniCPM-V (`resampler`): `mm run -m M --mmproj P --image I -p ... --temp 0
// -n N -t T` prints only the answer, the text llama-mtmd-cli prints for the same flags, on pictures
// that make an overview alone, a row of slices and a grid of slices, for 2.5 (a Llama-3 text model,
// <slice> around all slices) and 2.6 (Qwen2, <slice> around each).

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

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
    for (const [i, [w, h]] of sizes.entries()) {
      const image = await syntheticPngFixture(w, h, 20 + i);
      const prompt = i === 0 ? 'Describe the image.' : 'What is in the picture?';
      const n = 10 + i * 4;
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
        `minicpmv ${name} ${w}x${h}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
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
