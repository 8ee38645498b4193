import { readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import {
  encodeBmp,
  encodeGif,
  encodeJpeg,
  encodePng,
  MMPROJ_FAMILIES,
  mutateImageBytes,
  Prng,
  resolveTinyMmprojOptions,
  syntheticImage,
  tinyMmprojBuffer,
  tinyMmprojFixtureName,
  visionOutput,
} from './index.js';

describe('tiny mmproj generator', () => {
  it.each(MMPROJ_FAMILIES)(
    '%s: deterministic, with the keys and tensors libmtmd requires',
    async (family) => {
      const a = tinyMmprojBuffer({ family, seed: 5 });
      expect(tinyMmprojBuffer({ family, seed: 5 })).toEqual(a);
      expect(tinyMmprojBuffer({ family, seed: 6 })).not.toEqual(a);
      const g = await readGgufFromBuffer(a);
      const meta = g.metadata;
      expect(meta.get('general.architecture')?.value).toBe('clip');
      expect(meta.get('clip.projector_type')?.value).toBe(family === 'mlp_norm' ? 'mlp' : family);
      for (const key of [
        'clip.vision.image_size',
        'clip.vision.patch_size',
        'clip.vision.embedding_length',
        'clip.vision.feed_forward_length',
        'clip.vision.projection_dim',
        'clip.vision.attention.head_count',
        'clip.vision.block_count',
      ]) {
        expect(meta.get(key)?.type).toBe('uint32');
      }
      expect(meta.get('clip.vision.attention.layer_norm_epsilon')?.type).toBe('float32');
      const names = new Set(g.tensors.map((t) => t.name));
      expect(names.has('v.patch_embd.weight')).toBe(true);
      const dw = g.tensors.filter(
        (t) => t.name.endsWith('block.0.0.weight') || t.name === 'mm.model.peg.0.weight',
      );
      for (const t of dw) expect(t.type).toBe('F16'); // ggml's depthwise conv aborts on f32 kernels
      if (family === 'mlp') expect(names.has('mm.2.weight')).toBe(true);
      if (family === 'mlp_norm') expect(names.has('mm.3.weight')).toBe(true);
    },
  );

  it.each(['ldp', 'ldpv2'] as const)(
    '%s: dwKernelRank 3 writes the depthwise kernels as [3, 3, C], the rest unchanged',
    (family) => {
      const rank4 = readGgufFromBuffer(tinyMmprojBuffer({ family }));
      const rank3 = readGgufFromBuffer(tinyMmprojBuffer({ family, dwKernelRank: 3 }));
      const isDw = (name: string) =>
        name.endsWith('block.0.0.weight') || name === 'mm.model.peg.0.weight';
      const dw3 = rank3.tensors.filter((t) => isDw(t.name));
      expect(dw3.length).toBe(family === 'ldp' ? 2 : 1);
      for (const t of dw3) {
        expect([t.type, t.shape]).toEqual(['F16', [3, 3, 64]]);
        expect(rank4.tensors.find((u) => u.name === t.name)?.shape).toEqual([3, 3, 1, 64]);
      }
      expect(rank3.tensors.map((t) => t.name)).toEqual(rank4.tensors.map((t) => t.name));
      for (const t of rank3.tensors.filter((u) => !isDw(u.name))) {
        expect(rank4.tensors.find((u) => u.name === t.name)?.shape).toEqual(t.shape);
      }
      expect(tinyMmprojFixtureName({ family, dwKernelRank: 3 })).toContain('-dw3');
      expect(tinyMmprojFixtureName({ family })).not.toContain('dw3');
    },
  );

  it('feature layers and stacking follow libmtmd', () => {
    expect(visionOutput(resolveTinyMmprojOptions({ family: 'mlp' }))).toEqual({
      blocksRun: 2,
      nStacked: 0,
      nEmbdFeatures: 32,
    });
    expect(visionOutput(resolveTinyMmprojOptions({ family: 'mlp_norm' }))).toEqual({
      blocksRun: 2,
      nStacked: 2,
      nEmbdFeatures: 64,
    });
    expect(visionOutput(resolveTinyMmprojOptions({ family: 'ldp' }))).toEqual({
      blocksRun: 2,
      nStacked: 1,
      nEmbdFeatures: 16,
    });
  });

  it('rejects impossible options', () => {
    expect(() => resolveTinyMmprojOptions({ family: 'ldp', imageSize: 40 })).toThrow(/24/);
    expect(() => resolveTinyMmprojOptions({ family: 'mlp', nHead: 3 })).toThrow(/divide/);
    expect(() => resolveTinyMmprojOptions({ family: 'nope' as 'mlp' })).toThrow(/family/);
    expect(() => resolveTinyMmprojOptions({ family: 'ldp', dwKernelRank: 2 as 3 })).toThrow(
      /dwKernelRank/,
    );
    expect(tinyMmprojFixtureName({ family: 'mlp' })).not.toBe(
      tinyMmprojFixtureName({ family: 'mlp', seed: 1 }),
    );
  });
});

describe('test image encoders', () => {
  it('write the formats they claim, deterministically', () => {
    const img = syntheticImage(20, 10, 1);
    expect(syntheticImage(20, 10, 1)).toEqual(img);
    expect([...encodePng(img).subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    expect([...encodeJpeg(img).subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    expect([...encodeJpeg(img).subarray(-2)]).toEqual([0xff, 0xd9]);
    expect(new TextDecoder().decode(encodeGif(img).subarray(0, 6))).toBe('GIF89a');
    expect(encodeGif(img).at(-1)).toBe(0x3b);
    expect(encodeBmp(img).length).toBe(54 + 60 * 10);
    const a = mutateImageBytes(encodePng(img), new Prng(3));
    expect(mutateImageBytes(encodePng(img), new Prng(3))).toEqual(a);
  });
});
