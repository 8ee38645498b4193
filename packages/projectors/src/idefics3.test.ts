import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { type GgufValue, type GgufWriteSpec, gv, writeGguf } from '@mm/gguf';
import {
  compareVectors,
  IDEFICS3_OLD_TEST_IMAGE_SIZES,
  IDEFICS3_TEST_IMAGE_SIZES,
  idefics3Grid,
  idefics3TileTokens,
  type MtmdMediaChunk,
  type RgbImage,
  runMtmdLayout,
  syntheticImage,
  type TinyIdefics3MmprojOptions,
  tinyIdefics3MmprojSpec,
  tinyIdefics3Pair,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';

// SmolVLM / Idefics3 (`idefics3`): libmtmd cuts a picture into image_size tiles (after resizing its
// long side to clip.vision.preproc_image_size, or, in older files, rounding its sides to whole
// tiles) plus a global image; SigLIP encodes each, the projector pixel-shuffles and projects. Our
// encoder gives the global image first (libmtmd's split_batch_to_chunk order); libmtmd's prompt
// puts the tiles first, row by row, and the global image last.

const dir = mkdtempSync(join(tmpdir(), 'mm-idefics3-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The two tilings: current files (longest edge 96 = 3 tiles) and older ones (whole tiles). */
const fixtures: { name: string; options: TinyIdefics3MmprojOptions }[] = [
  { name: 'longest edge 96', options: {} },
  { name: 'no longest edge (older files)', options: { longestEdge: 0 } },
];

/** libmtmd's media chunks of one picture, in its prompt order (tiles, then the global image). */
async function mtmdChunks(files: { mmproj: string; llm: string }, image: RgbImage) {
  const ref = await runMtmdLayout({
    mmproj: files.mmproj,
    textModel: files.llm,
    prompt: 'Look: <__media__> ok',
    images: [image],
    threads: 2,
  });
  return ref.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
}

/** Our chunks (global image first) in libmtmd's prompt order. */
const promptOrder = <T>(chunks: readonly T[]): T[] => [...chunks.slice(1), chunks[0] as T];

describe.each(fixtures)('idefics3 against libmtmd, $name', ({ options }) => {
  it("VisionEncoder.slice(): libmtmd's tile counts, sizes and pixels for several aspect ratios", async () => {
    const files = await tinyIdefics3Pair(options);
    using encoder = await VisionEncoder.load(files.mmproj, { threads: 2 });
    expect(encoder.info).toMatchObject({
      family: 'siglip',
      projectorType: 'idefics3',
      tiled: true,
    });
    const sizes: [number, number][] = [
      [48, 48],
      [120, 40],
      [40, 60],
      [1, 1],
      [33, 32],
      [97, 95],
      [300, 4],
      [4, 300],
      [200, 20],
    ];
    const counts: string[] = [];
    for (const [i, [w, h]] of sizes.entries()) {
      const rgb = syntheticImage(w, h, 40 + i);
      const { inputs, layout } = await encoder.slice(Image.fromRGB(rgb.data, w, h));
      const ref = await mtmdChunks(files, rgb);
      const grid = idefics3Grid(options, w, h);
      expect(layout, `${w}x${h}`).toEqual({ ...grid, hasOverview: true });
      expect(inputs.length).toBe(ref.length);
      expect(inputs.length).toBe(grid.gridX * grid.gridY + 1);
      for (const [k, [ours, theirs]] of promptOrder(inputs)
        .map((p, k) => [p, ref[k]] as const)
        .entries()) {
        expect([3, ours.height, ours.width], `${w}x${h} chunk ${k}`).toEqual(theirs!.pixelsShape);
        expect([ours.width, ours.height]).toEqual([32, 32]);
        // bit-identical pixels (same resampler, same rounding)
        expect(compareVectors(ours.data, theirs!.pixels!).maxAbsDiff, `${w}x${h} chunk ${k}`).toBe(
          0,
        );
      }
      counts.push(`${w}x${h}: ${grid.gridX}x${grid.gridY}+1`);
    }
    console.log(`idefics3 tiles (${options.longestEdge ?? 96}): ${counts.join(', ')}`);
  });

  it("every chunk's embeddings equal libmtmd's, in its order", async () => {
    const files = await tinyIdefics3Pair(options);
    using encoder = await VisionEncoder.load(files.mmproj, { threads: 2 });
    using projector = await Projector.load(files.mmproj, { threads: 2 });
    const sizes =
      options.longestEdge === 0 ? IDEFICS3_OLD_TEST_IMAGE_SIZES : IDEFICS3_TEST_IMAGE_SIZES;
    for (const [i, [w, h]] of sizes.entries()) {
      const rgb = syntheticImage(w, h, 60 + i);
      const { features, layout } = await encoder.encodeMedia(Image.fromRGB(rgb.data, w, h));
      const ref = await mtmdChunks(files, rgb);
      expect(features.length).toBe(ref.length);
      let worst = 0;
      let cosMin = 1;
      for (const [k, f] of promptOrder(features).entries()) {
        using e = await projector.project(f);
        const r = ref[k]!;
        expect([e.nTokens, e.nEmbd, e.causal]).toEqual([r.nTokens, 64, !r.nonCausal]);
        expect(e.nTokens).toBe(idefics3TileTokens(options));
        const { maxAbsDiff, cosine } = compareVectors(e.toFloat32Array(), r.embd);
        expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
        expect(cosine).toBeGreaterThanOrEqual(0.9999);
        worst = Math.max(worst, maxAbsDiff);
        cosMin = Math.min(cosMin, cosine);
      }
      for (const f of features) f.dispose();
      console.log(
        `idefics3 ${w}x${h}: ${layout.gridX}x${layout.gridY} tiles + global image, ${features.length} chunks, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
  });
});

describe('idefics3 projector facts', () => {
  it("gives mtmd.cpp's slice template, 16 tokens per chunk, a causal span, no image markers", async () => {
    const files = await tinyIdefics3Pair();
    const info = await inspectMmproj(files.mmproj);
    expect(info).toMatchObject({
      family: 'idefics3',
      encoderFamily: 'siglip',
      nTokensOut: 16,
      nEmbdOut: 64,
      causal: true,
      tiled: true,
      dynamicResolution: false,
      imageBegin: '',
      imageEnd: '',
      nMerge: 2,
    });
    expect(info.slices).toEqual({
      overviewStart: ['\n\n', '<fake_token_around_image>', '<global-img>'],
      overviewEnd: ['<fake_token_around_image>'],
      slicesStart: [],
      slicesEnd: [],
      sliceStart: [],
      sliceEnd: [],
      sliceMid: [],
      rowEnd: ['\n'],
      sliceStartFormat: '<fake_token_around_image><row_%d_col_%d>',
      rowEndTrail: false,
      overviewFirst: false,
    });
    expect(info.preprocess).toMatchObject({ imageSize: 32, resize: 'lanczos', pad: 'none' });
    const old = await inspectMmproj((await tinyIdefics3Pair({ longestEdge: 0 })).mmproj);
    expect(old.preprocess).toMatchObject({ resize: 'bicubic' });
  });
});

// ---- hostile files and pictures -------------------------------------------------------------

type Edit = (s: GgufWriteSpec) => void;
const meta = (s: GgufWriteSpec) => s.metadata as Map<string, GgufValue>;
const setKey =
  (k: string, v: GgufValue): Edit =>
  (s) =>
    void meta(s).set(k, v);
const retensor =
  (name: string, shape: number[]): Edit =>
  (s) => {
    const t = s.tensors!.find((x) => x.name === name)!;
    Object.assign(t, {
      shape,
      type: 'F32',
      data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
    });
  };

const SF = 'clip.vision.projector.scale_factor';
const LE = 'clip.vision.preproc_image_size';

describe('hostile idefics3 files and pictures are typed errors', () => {
  const cases: { name: string; edit: Edit; code: string; message: string }[] = [
    {
      name: 'no scale factor (libmtmd asserts at its warmup)',
      edit: (s) => void meta(s).delete(SF),
      code: 'MM_GGUF_INVALID',
      message: 'scale_factor is required',
    },
    {
      name: 'scale factor 1',
      edit: setKey(SF, gv.uint32(1)),
      code: 'MM_GGUF_INVALID',
      message: 'at least 2',
    },
    {
      name: 'scale factor 0',
      edit: setKey(SF, gv.uint32(0)),
      code: 'MM_GGUF_INVALID',
      message: SF,
    },
    {
      name: 'scale factor 3 (8x8 grid)',
      edit: setKey(SF, gv.uint32(3)),
      code: 'MM_GGUF_INVALID',
      message: 'divide',
    },
    {
      name: 'scale factor 2^32-1',
      edit: setKey(SF, gv.uint32(0xffffffff)),
      code: 'MM_GGUF_INVALID',
      message: SF,
    },
    {
      name: 'scale factor as int32',
      edit: setKey(SF, gv.int32(2)),
      code: 'MM_GGUF_INVALID',
      message: 'uint32',
    },
    {
      name: 'scale factor as a string',
      edit: setKey(SF, gv.string('2')),
      code: 'MM_GGUF_INVALID',
      message: SF,
    },
    {
      name: 'longest edge 2^32-1',
      edit: setKey(LE, gv.uint32(0xffffffff)),
      code: 'MM_GGUF_INVALID',
      message: LE,
    },
    {
      name: 'longest edge 8193',
      edit: setKey(LE, gv.uint32(8193)),
      code: 'MM_GGUF_INVALID',
      message: LE,
    },
    {
      name: 'longest edge of 17 tiles',
      edit: setKey(LE, gv.uint32(17 * 32)),
      code: 'MM_GGUF_UNSUPPORTED',
      message: '17 tiles',
    },
    {
      name: 'longest edge as float',
      edit: setKey(LE, gv.float32(96)),
      code: 'MM_GGUF_INVALID',
      message: 'uint32',
    },
    {
      name: 'mm.model.fc 65 deep',
      edit: retensor('mm.model.fc.weight', [65, 64]),
      code: 'MM_GGUF_INVALID',
      message: 'mm.model.fc.weight',
    },
    {
      name: 'no mm.model.fc',
      edit: (s) => {
        s.tensors = s.tensors!.filter((t) => t.name !== 'mm.model.fc.weight');
      },
      code: 'MM_GGUF_INVALID',
      message: "'mm.model.fc.weight' is missing",
    },
    {
      name: 'image size 8192 with patch 1 (a 67M-patch grid)',
      edit: (s) => {
        meta(s).set('clip.vision.image_size', gv.uint32(8192));
        meta(s).set('clip.vision.patch_size', gv.uint32(1));
      },
      code: 'MM_GGUF',
      message: '',
    },
  ];

  it.each(cases)('$name', async ({ edit, code, message }) => {
    const spec = tinyIdefics3MmprojSpec();
    edit(spec);
    const path = join(dir, `hostile-${Math.random().toString(36).slice(2)}.gguf`);
    await writeGguf(path, spec);
    const projectorOnly = message.startsWith("'mm.") || message.startsWith('mm.');
    const errors = await Promise.all([
      projectorOnly ? Promise.resolve(undefined) : VisionEncoder.load(path).catch((e) => e),
      Projector.load(path).catch((e) => e),
      inspectMmproj(path).catch((e) => e),
    ]);
    for (const err of errors.filter((e) => e !== undefined)) {
      expect(err?.code, String(err?.message)).toMatch(new RegExp(`^${code}`));
      expect(err.message).toContain(message);
    }
  });

  it('absurd aspect ratios are bounded or typed errors, and the encoder keeps working', async () => {
    const current = await tinyIdefics3Pair();
    const older = await tinyIdefics3Pair({ longestEdge: 0 });
    using a = await VisionEncoder.load(current.mmproj, { threads: 2 });
    using b = await VisionEncoder.load(older.mmproj, { threads: 2 });
    const flat = (w: number, h: number) => Image.fromRGB(new Uint8Array(w * h * 3).fill(90), w, h);
    const t0 = Date.now();
    // the short side resizes to 0 px: libmtmd aborts in its resampler
    for (const [w, h] of [
      [1, 20000],
      [20000, 1],
      [2, 5000],
      [1, 200],
    ] as const) {
      await expect(a.slice(flat(w, h)), `${w}x${h}`).rejects.toMatchObject({
        code: 'MM_INVALID_ARGUMENT',
        message: expect.stringContaining('aspect ratio is too extreme'),
      });
    }
    // wide enough to keep 2 rows: cut as libmtmd cuts it, 96x2 -> 3x1 tiles
    expect((await a.slice(flat(20000, 417))).layout).toEqual({
      gridX: 3,
      gridY: 1,
      hasOverview: true,
    });
    // older files: sides rounded to whole tiles, 625 tiles is past mm's 256
    for (const [w, h] of [
      [1, 20000],
      [20000, 1],
      [4000, 4000],
    ] as const) {
      await expect(b.slice(flat(w, h)), `${w}x${h}`).rejects.toMatchObject({
        code: 'MM_IMAGE_TOO_LARGE',
        message: expect.stringContaining("more than mm's limit of 256 tiles"),
      });
    }
    // 16x16 tiles is within the limit
    expect((await b.slice(flat(512, 512))).layout).toEqual({
      gridX: 16,
      gridY: 16,
      hasOverview: true,
    });
    expect(Date.now() - t0).toBeLessThan(20_000);
    // both still encode a normal picture
    for (const enc of [a, b]) {
      const f = await enc.encodeChunks(flat(40, 40));
      expect(f.length).toBeGreaterThan(1);
      for (const x of f) x.dispose();
    }
  });
});
