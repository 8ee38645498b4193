import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import {
  compareVectors,
  MMPROJ_FAMILIES,
  repoRoot,
  resolveTinyMmprojOptions,
  runMtmdOracle,
  syntheticImage,
  tinyMmprojPair,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { Projector } from './index.js';

const tinyShapesDir = join(repoRoot(), 'apps', 'demo', 'models', 'tiny-shapes');
const tinyShapesMmproj = join(tinyShapesDir, 'mmproj-tiny-shapes.gguf');
const samples = Array.from({ length: 8 }, (_, i) =>
  join(tinyShapesDir, 'samples', `sample_00${i}.png`),
);

const rows: string[] = [];
afterAll(() => {
  console.log(
    [
      'embeddings parity, ours vs libmtmd (CPU, 2 threads, flash attention auto):',
      '| model | image | tokens x width | max abs diff | cosine |',
      '|---|---|---|---|---|',
      ...rows,
    ].join('\n'),
  );
});

function check(model: string, image: string, ours: Float32Array, ref: Float32Array, shape: string) {
  const { maxAbsDiff, cosine } = compareVectors(ours, ref);
  rows.push(
    `| ${model} | ${image} | ${shape} | ${maxAbsDiff.toExponential(2)} | ${cosine.toFixed(7)} |`,
  );
  console.log(
    `${model} ${image}: max |diff| ${maxAbsDiff.toExponential(2)}, cosine ${cosine.toFixed(7)}`,
  );
  expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
  expect(cosine).toBeGreaterThanOrEqual(0.9999);
}

describe('encoder + projector embeddings match libmtmd', () => {
  it.each(MMPROJ_FAMILIES)(
    'generated %s (libmtmd loads it with its matching text model)',
    async (family) => {
      const pair = await tinyMmprojPair({ family });
      const o = resolveTinyMmprojOptions({ family });
      const images = [
        syntheticImage(o.imageSize, o.imageSize, 21),
        syntheticImage(90, 61, 22),
        syntheticImage(13, 40, 23),
      ];
      const ref = await runMtmdOracle({ mmproj: pair.mmproj, images, textModel: pair.llm });
      using encoder = await VisionEncoder.load(pair.mmproj, { threads: 2 });
      using projector = await Projector.load(pair.mmproj, { threads: 2 });
      expect(projector.family).toBe(family);
      expect(projector.nEmbd).toBe(pair.nEmbd);
      projector.checkPair(pair.nEmbd);
      for (const [i, raw] of images.entries()) {
        using features = (
          await encoder.encodeChunks(Image.fromRGB(raw.data, raw.width, raw.height))
        )[0]!;
        using embd = await projector.project(features);
        expect([embd.nTokens, embd.nEmbd]).toEqual([ref[i]!.nTokens, ref[i]!.nEmbd]);
        check(
          family,
          `${raw.width}x${raw.height}`,
          embd.toFloat32Array(),
          ref[i]!.embd,
          `${embd.nTokens} x ${embd.nEmbd}`,
        );
      }
    },
  );

  it('tiny-shapes (trained) with its 8 sample images', async () => {
    const ref = await runMtmdOracle({ mmproj: tinyShapesMmproj, images: samples });
    using encoder = await VisionEncoder.load(tinyShapesMmproj, { threads: 2 });
    using projector = await Projector.load(tinyShapesMmproj, { threads: 2 });
    expect([projector.family, projector.nTokens, projector.nEmbd]).toEqual(['mlp', 36, 128]);
    for (const [i, path] of samples.entries()) {
      using features = (await encoder.encodeChunks(await Image.fromFile(path)))[0]!;
      using embd = await projector.project(features);
      check('tiny-shapes', `sample_00${i}.png`, embd.toFloat32Array(), ref[i]!.embd, '36 x 128');
    }
  });

  it('with flash attention off on both sides', async () => {
    const pair = await tinyMmprojPair({ family: 'ldp' });
    const raw = syntheticImage(48, 48, 24);
    const [ref] = await runMtmdOracle({ mmproj: pair.mmproj, images: [raw], flashAttn: 'off' });
    using encoder = await VisionEncoder.load(pair.mmproj, { threads: 2, flashAttn: 'off' });
    using projector = await Projector.load(pair.mmproj, { threads: 2 });
    using features = (await encoder.encodeChunks(Image.fromRGB(raw.data, 48, 48)))[0]!;
    using embd = await projector.project(features);
    check('ldp (flash attention off)', '48x48', embd.toFloat32Array(), ref!.embd, '144 x 64');
  });
});
