import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { writeGguf } from '@mm/gguf';
import {
  compareVectors,
  resolveTinyMmprojOptions,
  runMtmdOracle,
  syntheticImage,
  tinyMmprojPair,
  tinyMmprojSpec,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Projector } from './index.js';

/**
 * ldp / ldpv2 files whose depthwise conv kernels are stored rank 3, `[3, 3, C]`, instead of
 * `[3, 3, 1, C]`: libmtmd runs them (ggml_conv_2d_dw views both as `[3, 3, 1, C]`), so mm loads
 * them too, with the same embeddings, bit for bit, as libmtmd and as the rank-4 file of the same
 * weights.
 */
describe('ldp / ldpv2 with rank-3 depthwise kernels match libmtmd', () => {
  it.each(['ldp', 'ldpv2'] as const)('%s', async (family) => {
    const pair = await tinyMmprojPair({ family, dwKernelRank: 3 });
    const rank4 = await tinyMmprojPair({ family });
    const o = resolveTinyMmprojOptions({ family });
    const images = [syntheticImage(o.imageSize, o.imageSize, 31), syntheticImage(70, 45, 32)];
    const ref = await runMtmdOracle({ mmproj: pair.mmproj, images, textModel: pair.llm });
    using encoder = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    using projector = await Projector.load(pair.mmproj, { threads: 2 });
    using encoder4 = await VisionEncoder.load(rank4.mmproj, { threads: 2 });
    using projector4 = await Projector.load(rank4.mmproj, { threads: 2 });
    expect([projector.family, projector.nTokens, projector.nEmbd]).toEqual([family, 144, 64]);
    for (const [i, raw] of images.entries()) {
      const image = Image.fromRGB(raw.data, raw.width, raw.height);
      const chunks = await encoder.encodeChunks(image);
      const chunks4 = await encoder4.encodeChunks(image);
      expect([chunks.length, chunks4.length]).toEqual([1, 1]);
      using features = chunks[0]!;
      using features4 = chunks4[0]!;
      using embd = await projector.project(features);
      using embd4 = await projector4.project(features4);
      const ours = embd.toFloat32Array();
      const { maxAbsDiff, cosine } = compareVectors(ours, ref[i]!.embd);
      console.log(
        `${family} rank-3 dw kernels, ${raw.width}x${raw.height}: max |diff| vs libmtmd ${maxAbsDiff.toExponential(2)}, cosine ${cosine.toFixed(7)}`,
      );
      expect([embd.nTokens, embd.nEmbd]).toEqual([ref[i]!.nTokens, ref[i]!.nEmbd]);
      expect(maxAbsDiff).toBe(0);
      // the same weights stored rank 4 give the same embeddings
      expect(embd4.toFloat32Array()).toEqual(ours);
    }
  });

  it('a depthwise kernel of another shape is still refused, naming both layouts', async () => {
    const spec = tinyMmprojSpec({ family: 'ldpv2', dwKernelRank: 3 });
    const tensors = (spec.tensors ?? []).map((t) =>
      t.name === 'mm.model.peg.0.weight' ? { ...t, shape: [3, 3, 2, 32] } : t,
    );
    const path = join(mkdtempSync(join(tmpdir(), 'mm-dw-')), 'bad-dw.gguf');
    await writeGguf(path, { ...spec, tensors });
    const err = await Projector.load(path, { threads: 1 }).catch((e) => e);
    expect(err.code).toBe('MM_GGUF_INVALID');
    expect(err.message).toContain('mm.model.peg.0.weight');
    expect(err.message).toContain('[3, 3, 2, 32]');
  });
});
