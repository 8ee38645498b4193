import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { gv, writeGguf } from '@mm/gguf';
import {
  MMPROJ_FAMILIES,
  resolveTinyMmprojOptions,
  runMtmdOracle,
  syntheticImage,
  tinyLlamaFixture,
  tinyMmprojFixture,
  tinyMmprojSpec,
  visionOutput,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fmt,
  MAX_ABS_DIFF,
  MIN_COSINE,
  parity,
  tinyShapesMmproj,
  tinyShapesSamples,
} from './helpers.test-util.js';
import { Features, Image, VisionEncoder } from './index.js';

describe('VisionEncoder on tiny-shapes', () => {
  let encoder: VisionEncoder;
  beforeAll(async () => {
    encoder = await VisionEncoder.load(tinyShapesMmproj, { threads: 2 });
  });
  afterAll(() => encoder.dispose());

  it('reads the vision tower from the mmproj', () => {
    expect(encoder.family).toBe('clip');
    expect(encoder.projectorType).toBe('mlp');
    expect(encoder.imageSize).toBe(48);
    expect(encoder.nTokens).toBe(36);
    expect(encoder.nEmbd).toBe(96);
    expect(encoder.info).toMatchObject({
      patchSize: 8,
      nLayer: 3,
      nBlocksRun: 3,
      featureLayers: [3],
      hasClassEmbd: false,
      ffnOp: 'gelu',
      flashAttn: true,
      backend: 'CPU',
      nThreads: 2,
    });
    expect(encoder.preprocessParams).toMatchObject({
      imageSize: 48,
      resize: 'bicubic',
      pad: 'ceil',
      padColor: [122, 116, 104],
    });
  });

  it('features of the 8 samples match libmtmd (max |diff| <= 1e-3, cosine >= 0.9999)', async () => {
    const ref = await runMtmdOracle({ mmproj: tinyShapesMmproj, images: tinyShapesSamples });
    for (const [i, path] of tinyShapesSamples.entries()) {
      using f = (await encoder.encodeChunks(await Image.fromFile(path)))[0]!;
      expect([f.nTokens, f.nEmbd]).toEqual(ref[i]!.featuresShape);
      const { maxAbsDiff, cosine } = parity(f.toFloat32Array(), ref[i]!.features);
      console.log(
        `tiny-shapes features sample_00${i}: max |diff| ${fmt(maxAbsDiff)}, cosine ${cosine.toFixed(7)}`,
      );
      expect(maxAbsDiff).toBeLessThanOrEqual(MAX_ABS_DIFF);
      expect(cosine).toBeGreaterThanOrEqual(MIN_COSINE);
    }
  });

  it('Features are viewed in place, dispose once, and are typed after dispose', async () => {
    const f = (await encoder.encodeChunks(await Image.fromFile(tinyShapesSamples[1]!)))[0]!;
    const a = f.toFloat32Array(); // a view of the native rows
    const b = f.toFloat32Array(); // a copy: the first view is alive
    expect(a).toEqual(b);
    expect(a).not.toBe(b);
    expect(a.length).toBe(36 * 96);
    const first = a[0]!;
    a[0] = first + 1; // the view and the copy are separate memory
    expect(b[0]).toBe(first);
    a[0] = first;
    expect(f.timings.encodeMs).toBeGreaterThan(0);
    f.dispose();
    expect(f.disposed).toBe(true);
    // the view keeps the native rows alive after dispose
    expect(a).toEqual(b);
    expect(() => f.toFloat32Array()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => f.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => f[Symbol.dispose]()).not.toThrow();
    const copy = Features.fromFloat32Array(a, 36, 96);
    expect(copy.toFloat32Array()).toEqual(a);
    copy.dispose();
    expect(() => Features.fromFloat32Array(a, 35, 96)).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
  });

  it('encodes preprocessed pixels to the same features', async () => {
    const img = await Image.fromFile(tinyShapesSamples[2]!);
    const pixels = (await encoder.preprocessChunks(img))[0]!;
    using a = (await encoder.encodeChunks(img))[0]!;
    using b = await encoder.encodePreprocessed(pixels);
    expect(b.toFloat32Array()).toEqual(a.toFloat32Array());
    await expect(encoder.encodePreprocessed(new Float32Array(10))).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
  });

  it('concurrent encodes are serialised and all correct', async () => {
    const imgs = await Promise.all(tinyShapesSamples.map((p) => Image.fromFile(p)));
    const one = await Promise.all(
      imgs.map(async (img) => {
        using f = (await encoder.encodeChunks(img))[0]!;
        return f.toFloat32Array();
      }),
    );
    const again = await Promise.all(
      imgs.map(async (img) => {
        using f = (await encoder.encodeChunks(img))[0]!;
        return f.toFloat32Array();
      }),
    );
    expect(again).toEqual(one);
  });

  // a leak check, not a timing: on a machine whose cores other processes hold, 500 encodes can take
  // minutes (ggml's workers wait for their turn), so it gets room
  it('leak check: 500 encodes with stable RSS', { timeout: 600_000 }, async () => {
    const img = await Image.fromFile(tinyShapesSamples[3]!);
    const encodeOnce = async () => {
      const f = (await encoder.encodeChunks(img))[0]!;
      f.toFloat32Array();
      f.dispose();
    };
    for (let i = 0; i < 50; i++) await encodeOnce();
    const rss50 = process.memoryUsage().rss;
    for (let i = 50; i < 500; i++) await encodeOnce();
    const rss500 = process.memoryUsage().rss;
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    console.log(
      `leak check: RSS after 50 encodes ${mb(rss50)} MB, after 500 encodes ${mb(rss500)} MB (delta ${mb(rss500 - rss50)} MB)`,
    );
    expect(rss500 - rss50).toBeLessThan(16 * 1024 * 1024);
  });
});

describe('VisionEncoder: the generated families match libmtmd', () => {
  it.each(MMPROJ_FAMILIES)('%s', async (family) => {
    const mmproj = await tinyMmprojFixture({ family });
    const o = resolveTinyMmprojOptions({ family });
    const images = [syntheticImage(o.imageSize, o.imageSize, 11), syntheticImage(50, 37, 12)];
    const ref = await runMtmdOracle({ mmproj, images });
    using encoder = await VisionEncoder.load(mmproj, { threads: 2 });
    expect(encoder.nEmbd).toBe(visionOutput(o).nEmbdFeatures);
    expect(encoder.info.nBlocksRun).toBe(visionOutput(o).blocksRun);
    expect(encoder.info.hasClassEmbd).toBe(o.classEmbd);
    for (const [i, raw] of images.entries()) {
      using f = (await encoder.encodeChunks(Image.fromRGB(raw.data, raw.width, raw.height)))[0]!;
      expect([f.nTokens, f.nEmbd]).toEqual(ref[i]!.featuresShape);
      const { maxAbsDiff, cosine } = parity(f.toFloat32Array(), ref[i]!.features);
      console.log(
        `${family} features (${raw.width}x${raw.height}): max |diff| ${fmt(maxAbsDiff)}, cosine ${cosine.toFixed(7)}`,
      );
      expect(maxAbsDiff).toBeLessThanOrEqual(MAX_ABS_DIFF);
      expect(cosine).toBeGreaterThanOrEqual(MIN_COSINE);
    }
  });

  it('flash attention off matches libmtmd with flash attention off', async () => {
    const mmproj = await tinyMmprojFixture({ family: 'mlp' });
    const raw = syntheticImage(32, 32, 13);
    const [ref] = await runMtmdOracle({ mmproj, images: [raw], flashAttn: 'off' });
    using encoder = await VisionEncoder.load(mmproj, { threads: 2, flashAttn: 'off' });
    expect(encoder.info.flashAttn).toBe(false);
    using f = (await encoder.encodeChunks(Image.fromRGB(raw.data, 32, 32)))[0]!;
    const { maxAbsDiff, cosine } = parity(f.toFloat32Array(), ref!.features);
    console.log(
      `mlp features, flash attention off: max |diff| ${fmt(maxAbsDiff)}, cosine ${cosine.toFixed(7)}`,
    );
    expect(maxAbsDiff).toBeLessThanOrEqual(MAX_ABS_DIFF);
  });
});

describe('VisionEncoder lifecycle', () => {
  // big enough that one encode takes tens of milliseconds: a real mid-flight abort
  const slow = {
    family: 'mlp' as const,
    imageSize: 224,
    patchSize: 14,
    nEmbd: 256,
    nHead: 4,
    nFf: 512,
    nLayers: 6,
    seed: 3,
  };

  it('four abort cases: already aborted, mid-flight, never aborted, invalid signal', async () => {
    using encoder = await VisionEncoder.load(await tinyMmprojFixture(slow), { threads: 2 });
    const raw = syntheticImage(224, 224, 1);
    const img = Image.fromRGB(raw.data, 224, 224);
    const reason = new Error('already');
    await expect(encoder.encode(img, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    const t0 = performance.now();
    using expected = (await encoder.encodeChunks(img))[0]!;
    const oneEncodeMs = performance.now() - t0;
    const c = new AbortController();
    const p = encoder.encode(img, { signal: c.signal });
    setTimeout(() => c.abort(new Error('mid-flight')), Math.min(5, oneEncodeMs / 4));
    await expect(p).rejects.toThrow('mid-flight');
    const never = new AbortController();
    using ok = (await encoder.encodeChunks(img, { signal: never.signal }))[0]!;
    expect(ok.toFloat32Array()).toEqual(expected.toFloat32Array()); // usable and unchanged after an abort
    await expect(encoder.encode(img, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
    // loading too
    await expect(
      VisionEncoder.load(tinyShapesMmproj, { signal: AbortSignal.abort(reason) }),
    ).rejects.toBe(reason);
  });

  it('use after dispose and double dispose are MM_DISPOSED; encodes called before finish', async () => {
    const encoder = await VisionEncoder.load(tinyShapesMmproj, { threads: 1 });
    const img = await Image.fromFile(tinyShapesSamples[0]!);
    const running = encoder.encode(img);
    encoder.dispose();
    expect(encoder.disposed).toBe(true);
    await expect(running).resolves.toBeInstanceOf(Features);
    ((await running) as Features).dispose();
    await expect(encoder.encode(img)).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    await expect(encoder.preprocess(img)).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    expect(() => encoder.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => encoder[Symbol.dispose]()).not.toThrow();
  });

  it('bad options are MM_INVALID_ARGUMENT', async () => {
    await expect(VisionEncoder.load(tinyShapesMmproj, { threads: 0 })).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    await expect(
      VisionEncoder.load(tinyShapesMmproj, { flashAttn: 'maybe' as 'on' }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    await expect(VisionEncoder.load('')).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
  });
});

describe('hostile and unsupported mmproj files are typed errors (never an abort)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mm-bad-mmproj-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  async function variant(
    edit: (spec: ReturnType<typeof tinyMmprojSpec>) => void,
    family: 'mlp' | 'ldp' = 'mlp',
  ) {
    const spec = tinyMmprojSpec({ family });
    edit(spec);
    const path = join(dir, `bad-${n++}.gguf`);
    await writeGguf(path, spec);
    return path;
  }
  const meta = (spec: ReturnType<typeof tinyMmprojSpec>) =>
    spec.metadata as Map<string, ReturnType<typeof gv.uint32>>;
  const dropTensor = (spec: ReturnType<typeof tinyMmprojSpec>, name: string) => {
    spec.tensors = spec.tensors!.filter((t) => t.name !== name);
  };

  async function codeOf(path: string): Promise<[string, string]> {
    try {
      (await VisionEncoder.load(path, { threads: 1 })).dispose();
      return ['ok', ''];
    } catch (e) {
      if (!MmError.isInstance(e)) throw e;
      return [e.code, e.message];
    }
  }

  it.each([
    [
      'block_count stored as int32 (libmtmd would abort)',
      (s: ReturnType<typeof tinyMmprojSpec>) => meta(s).set('clip.vision.block_count', gv.int32(3)),
      'MM_GGUF_INVALID',
      'expected uint32',
    ],
    [
      'layer_norm_epsilon stored as a string',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.attention.layer_norm_epsilon', gv.string('x')),
      'MM_GGUF_INVALID',
      'expected float32',
    ],
    [
      'feature_layer beyond the blocks',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.feature_layer', gv.array('int32', new Int32Array([99]))),
      'MM_GGUF_INVALID',
      'feature_layer',
    ],
    [
      'feature_layer of the wrong type',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.feature_layer', gv.array('float32', new Float32Array([1]))),
      'MM_GGUF_INVALID',
      'array<int32>',
    ],
    [
      'absurd block_count',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.block_count', gv.uint32(0xffffffff)),
      'MM_GGUF_INVALID',
      'block_count',
    ],
    [
      'head_count 0',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.attention.head_count', gv.uint32(0)),
      'MM_GGUF_INVALID',
      'head_count',
    ],
    [
      'image_size 0',
      (s: ReturnType<typeof tinyMmprojSpec>) => meta(s).set('clip.vision.image_size', gv.uint32(0)),
      'MM_GGUF_INVALID',
      'image_size',
    ],
    [
      'patch larger than the image',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.patch_size', gv.uint32(64)),
      'MM_GGUF_INVALID',
      'patch_size',
    ],
    [
      'projection_dim missing (libmtmd requires it)',
      (s: ReturnType<typeof tinyMmprojSpec>) => meta(s).delete('clip.vision.projection_dim'),
      'MM_GGUF_INVALID',
      'projection_dim',
    ],
    [
      'image_mean with 2 values',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.image_mean', gv.array('float32', new Float32Array([0.5, 0.5]))),
      'MM_GGUF_INVALID',
      'image_mean',
    ],
    [
      'image_std of 0',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.vision.image_std', gv.array('float32', new Float32Array([0, 1, 1]))),
      'MM_GGUF_INVALID',
      'std',
    ],
    [
      'both use_gelu and use_silu',
      (s: ReturnType<typeof tinyMmprojSpec>) => {
        meta(s).set('clip.use_gelu', gv.bool(true));
        meta(s).set('clip.use_silu', gv.bool(true));
      },
      'MM_GGUF_INVALID',
      'use_gelu',
    ],
    [
      'a missing attention weight',
      (s: ReturnType<typeof tinyMmprojSpec>) => dropTensor(s, 'v.blk.1.attn_q.weight'),
      'MM_GGUF_INVALID',
      "'v.blk.1.attn_q.weight' is missing",
    ],
    [
      'a missing block that does not even run',
      (s: ReturnType<typeof tinyMmprojSpec>) => dropTensor(s, 'v.blk.2.attn_out.weight'),
      'MM_GGUF_INVALID',
      'attn_out',
    ],
    [
      'a position table too short',
      (s: ReturnType<typeof tinyMmprojSpec>) => {
        const t = s.tensors!.find((x) => x.name === 'v.position_embd.weight')!;
        Object.assign(t, { shape: [32, 10], type: 'F32', data: new Float32Array(320) });
      },
      'MM_GGUF_INVALID',
      'position_embd',
    ],
    [
      'a patch kernel of the wrong shape',
      (s: ReturnType<typeof tinyMmprojSpec>) => {
        const t = s.tensors!.find((x) => x.name === 'v.patch_embd.weight')!;
        Object.assign(t, { shape: [3, 3, 3, 32], type: 'F32', data: new Float32Array(27 * 32) });
      },
      'MM_GGUF_INVALID',
      'v.patch_embd.weight',
    ],
    [
      'a bias of the wrong type',
      (s: ReturnType<typeof tinyMmprojSpec>) => {
        const t = s.tensors!.find((x) => x.name === 'v.blk.0.attn_q.bias')!;
        Object.assign(t, { type: 'F16' });
      },
      'MM_GGUF_INVALID',
      'expected f32',
    ],
    [
      'an unknown projector type',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.projector_type', gv.string('cogvlm')),
      'MM_UNSUPPORTED_FAMILY',
      'supported: mlp, mlp_norm, ldp, ldpv2',
    ],
    [
      'no vision encoder',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set('clip.has_vision_encoder', gv.bool(false)),
      'MM_MODALITY_UNSUPPORTED',
      'no vision encoder',
    ],
    [
      'LLaVA-1.6 grid pinpoints that are not whole slices (libmtmd aborts on the slice count)',
      (s: ReturnType<typeof tinyMmprojSpec>) =>
        meta(s).set(
          'clip.vision.image_grid_pinpoints',
          gv.array('int32', new Int32Array([48, 32])),
        ),
      'MM_GGUF_INVALID',
      'pinpoints',
    ],
  ] as const)('%s', async (_name, edit, code, message) => {
    const [got, msg] = await codeOf(await variant(edit));
    expect(got).toBe(code);
    expect(msg).toContain(message);
  });

  it('truncated, random, missing and non-mmproj files', async () => {
    const good = readFileSync(await tinyMmprojFixture({ family: 'mlp' }));
    const truncated = join(dir, 'truncated.gguf');
    writeFileSync(truncated, good.subarray(0, good.length >> 1));
    expect((await codeOf(truncated))[0]).toBe('MM_GGUF_INVALID');
    const header = join(dir, 'header-only.gguf');
    writeFileSync(header, good.subarray(0, 100));
    expect((await codeOf(header))[0]).toBe('MM_GGUF_INVALID');
    const random = join(dir, 'random.gguf');
    writeFileSync(
      random,
      new Uint8Array(5000).map((_, i) => (i * 7919) & 0xff),
    );
    expect((await codeOf(random))[0]).toBe('MM_GGUF_INVALID');
    expect((await codeOf('/nonexistent/mmproj.gguf'))[0]).toBe('MM_FILE_NOT_FOUND');
    const [code, msg] = await codeOf(await tinyLlamaFixture());
    expect(code).toBe('MM_MODEL_LOAD');
    expect(msg).toContain('not an mmproj');
  });
});
