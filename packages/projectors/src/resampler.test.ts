import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { gv, writeGguf } from '@mm/gguf';
import {
  compareVectors,
  MINICPMV_TEST_IMAGE_SIZES,
  type MtmdMediaChunk,
  type MtmdTextChunk,
  type RgbImage,
  runMtmdLayout,
  syntheticImage,
  type TinyMinicpmvMmprojOptions,
  type TinyMmprojPair,
  tinyMinicpmVocab,
  tinyMinicpmvMmprojFixture,
  tinyMinicpmvMmprojSpec,
  tinyMinicpmvPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';
import {
  addTensor,
  dropKey,
  dropTensor,
  type Edit,
  elements,
  expectLoadOutcome,
  type LoadExpectation,
  retensor,
  runStages,
  setKey,
} from './mutated-mmproj.test-util.js';

// MiniCPM-V's resampler (`resampler`), the cross-attention projector: libmtmd cuts a picture into
// an overview and up to 9 slices of varying sizes (llava-uhd without pinpoints), the ViT encodes
// each at its own size (70x70 bucketed position table), and the resampler's learned queries attend
// to each slice's patches with 2-D sin/cos positions of that slice's grid. Every stage is compared
// with libmtmd on generated fixtures; hostile files are typed errors.

const dir = mkdtempSync(join(tmpdir(), 'mm-resampler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** libmtmd's layout of `image` in "Look: <__media__> ok": its media chunks and its text tokens. */
async function mtmdChunks(files: { mmproj: string; llm: string }, image: RgbImage) {
  const ref = await runMtmdLayout({
    mmproj: files.mmproj,
    textModel: files.llm,
    prompt: 'Look: <__media__> ok',
    images: [image],
    threads: 2,
  });
  return {
    media: ref.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text'),
    text: ref.chunks.flatMap((c) => (c.type === 'text' ? (c as MtmdTextChunk).tokens : [])),
  };
}

const rgbImage = (rgb: RgbImage) => Image.fromRGB(rgb.data, rgb.width, rgb.height);

describe('MiniCPM-V slicing (VisionEncoder.slice) against libmtmd', () => {
  it("gives libmtmd's slice grid, sizes and pixels for many aspect ratios", async () => {
    const files = await tinyMinicpmvPair({ version: 3 });
    using encoder = await VisionEncoder.load(files.mmproj, { threads: 2 });
    expect(encoder.info).toMatchObject({
      family: 'minicpmv',
      projectorType: 'resampler',
      tiled: true,
      dynamicResolution: true,
      imageSize: 64,
    });
    const newline = tinyMinicpmVocab('qwen2').tokens.indexOf('Ċ');
    const sizes: [number, number][] = [
      [1, 1],
      [64, 64],
      [65, 64],
      [64, 65],
      [100, 60],
      [60, 100],
      [129, 129],
      [200, 150],
      [300, 90],
      [90, 300],
      [640, 40],
      [40, 640],
      [1000, 10],
      [3000, 2],
      [500, 500],
    ];
    const seen: string[] = [];
    for (const [i, [w, h]] of sizes.entries()) {
      const rgb = syntheticImage(w, h, 30 + i);
      const { inputs, layout } = await encoder.slice(rgbImage(rgb));
      const ref = await mtmdChunks(files, rgb);
      expect(layout.hasOverview).toBe(true);
      expect(inputs.length, `${w}x${h}`).toBe(ref.media.length);
      expect(inputs.length).toBe(layout.gridX * layout.gridY + 1);
      // libmtmd ends every row of slices but the last with "\n"
      const rows = ref.text.filter((t) => t === newline).length;
      expect(rows, `${w}x${h}`).toBe(Math.max(0, layout.gridY - 1));
      for (const [k, ours] of inputs.entries()) {
        const theirs = ref.media[k]!;
        expect([3, ours.height, ours.width], `${w}x${h} chunk ${k}`).toEqual(theirs.pixelsShape);
        expect((ours.width % 8) + (ours.height % 8)).toBe(0);
        // bit-identical pixels (same resampler, rounding, padding and normalisation)
        expect(compareVectors(ours.data, theirs.pixels!).maxAbsDiff, `${w}x${h} chunk ${k}`).toBe(
          0,
        );
      }
      seen.push(
        `${w}x${h}: ${layout.gridX}x${layout.gridY} (${inputs.map((p) => `${p.width}x${p.height}`).join(' ')})`,
      );
    }
    console.log(`minicpmv slices (64-px slices):\n  ${seen.join('\n  ')}`);
    // the sizes cover no slices, one row, one column and full grids
    expect(seen.filter((s) => s.includes(': 0x0')).length).toBeGreaterThan(0);
    expect(seen.some((s) => /: [2-9]x1 /.test(s))).toBe(true);
    expect(seen.some((s) => /: 1x[2-9] /.test(s))).toBe(true);
    expect(seen.some((s) => /: [2-9]x[2-9] /.test(s))).toBe(true);
  });

  it('bounds extreme aspect ratios: libmtmd up to 1024 patches a side, MM_IMAGE_TOO_LARGE beyond', async () => {
    // real MiniCPM-V slice geometry: 448-px slices of 14-px patches
    const files = await tinyMinicpmvPair({ version: 3, imageSize: 448, patchSize: 14 });
    using encoder = await VisionEncoder.load(files.mmproj, { threads: 2 });
    using projector = await Projector.load(files.mmproj, { threads: 2 });
    // 20000x20: an overview of 1000x1 patches and 3 slices of 571x2
    const wide = syntheticImage(20000, 20, 7);
    const { features } = await encoder.encodeMedia(rgbImage(wide));
    const ref = await mtmdChunks(files, wide);
    expect(features.map((f) => [f.nx, f.ny])).toEqual([
      [1000, 1],
      [571, 2],
      [571, 2],
      [571, 2],
    ]);
    expect(features.length).toBe(ref.media.length);
    for (const [k, f] of features.entries()) {
      using e = await projector.project(f);
      const { maxAbsDiff, cosine } = compareVectors(e.toFloat32Array(), ref.media[k]!.embd);
      expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
      expect(cosine).toBeGreaterThanOrEqual(0.9999);
      f.dispose();
    }
    // past 1024 patches a side libmtmd writes beyond its bucket arrays: refused before any work
    for (const [w, h] of [
      [30000, 20],
      [20, 30000],
      [100000, 1],
    ] as const) {
      const img = Image.fromRGB(new Uint8Array(w * h * 3), w, h);
      const t0 = performance.now();
      const err = await encoder.slice(img).catch((e) => e);
      expect(MmError.isInstance(err) && err.code, `${w}x${h}`).toBe('MM_IMAGE_TOO_LARGE');
      expect(err.message).toContain('aspect ratio');
      expect(performance.now() - t0).toBeLessThan(2000);
      await expect(encoder.encodeMedia(img)).rejects.toMatchObject({ code: 'MM_IMAGE_TOO_LARGE' });
    }
    // and the encoder still works
    expect((await encoder.slice(rgbImage(syntheticImage(500, 300, 1)))).inputs.length).toBe(3);
  });
});

const versions: { name: string; options: TinyMinicpmvMmprojOptions; queries: number }[] = [
  { name: '2.5 (version 2)', options: { version: 2 }, queries: 16 },
  { name: '2.6 (version 3, 96 queries)', options: { version: 3, nQueries: 96 }, queries: 96 },
  { name: 'o 2.6 (version 4, 128-wide)', options: { version: 4, width: 128 }, queries: 16 },
  { name: '4.0 (version 5, f32)', options: { version: 5, weightType: 'F32' }, queries: 16 },
];

describe.each(versions)('resampler $name against libmtmd', ({ options, queries }) => {
  let files: TinyMmprojPair;
  beforeAll(async () => {
    files = await tinyMinicpmvPair(options);
  });

  it("every chunk's embeddings equal libmtmd's, in its order", async () => {
    using encoder = await VisionEncoder.load(files.mmproj, { threads: 2 });
    using projector = await Projector.load(files.mmproj, { threads: 2 });
    expect(projector.info).toMatchObject({ family: 'resampler', nTokensOut: queries });
    const width = options.width ?? 256;
    for (const [i, [w, h]] of MINICPMV_TEST_IMAGE_SIZES.entries()) {
      const rgb = syntheticImage(w, h, 60 + i);
      const { features, layout } = await encoder.encodeMedia(rgbImage(rgb));
      const ref = await mtmdChunks(files, rgb);
      expect(features.length).toBe(ref.media.length);
      let worst = 0;
      let cosMin = 1;
      const grids: string[] = [];
      for (const [k, f] of features.entries()) {
        grids.push(`${f.nx}x${f.ny}`);
        using e = await projector.project(f);
        const r = ref.media[k]!;
        expect([e.nTokens, e.nEmbd, e.nx, e.ny, e.causal]).toEqual([
          queries,
          width,
          queries,
          1,
          true,
        ]);
        expect([r.nTokens, r.nonCausal]).toEqual([queries, false]);
        const { maxAbsDiff, cosine } = compareVectors(e.toFloat32Array(), r.embd);
        expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
        expect(cosine).toBeGreaterThanOrEqual(0.9999);
        worst = Math.max(worst, maxAbsDiff);
        cosMin = Math.min(cosMin, cosine);
        f.dispose();
      }
      console.log(
        `resampler v${options.version} ${w}x${h}: ${layout.gridX}x${layout.gridY} slices + overview, patch grids ${grids.join(' ')}, max |diff| ${worst.toExponential(2)}, min cosine ${cosMin.toFixed(6)}`,
      );
    }
  });
});

describe('resampler projector facts', () => {
  it("gives mtmd.cpp's slice template per version, the query count, a causal span, no image markers", async () => {
    const v25 = {
      overviewStart: ['<image>'],
      overviewEnd: ['</image>'],
      slicesStart: ['<slice>'],
      slicesEnd: ['</slice>'],
      sliceStart: ['<image>'],
      sliceEnd: ['</image>'],
      sliceMid: [],
      rowEnd: ['\n'],
      sliceStartFormat: '',
      rowEndTrail: false,
      overviewFirst: true,
    };
    const v26 = {
      ...v25,
      slicesStart: [],
      slicesEnd: [],
      sliceStart: ['<slice>'],
      sliceEnd: ['</slice>'],
    };
    const cases: [TinyMinicpmvMmprojOptions, number, typeof v25][] = [
      [{ version: 2 }, 16, v25],
      [{ version: 2, omitVersionKey: true, omitQueryKey: true }, 96, v25],
      [{ version: 3, omitQueryKey: true }, 64, v26],
      [{ version: 4 }, 16, v26],
      [{ version: 5 }, 16, v26],
      [{ version: 6, omitQueryKey: true }, 64, v26],
      [{ version: 100045 }, 16, v26],
    ];
    for (const [options, queries, slices] of cases) {
      const info = await inspectMmproj(await tinyMinicpmvMmprojFixture(options));
      expect(info, JSON.stringify(options)).toMatchObject({
        family: 'resampler',
        encoderFamily: 'minicpmv',
        nTokensOut: queries,
        nEmbdOut: 256,
        causal: true,
        tiled: true,
        dynamicResolution: true,
        imageBegin: '',
        imageEnd: '',
        nMerge: 1,
      });
      expect(info.slices).toEqual(slices);
    }
  });
});

// ---- hostile files ------------------------------------------------------------------------------

/** `code` 'ok': the file must load and run; `projectorOnly`: only the resampler is broken. */
interface Case extends LoadExpectation {
  name: string;
  edit: Edit;
  options?: TinyMinicpmvMmprojOptions;
}

/** Every resampler tensor of width 256 made `d` wide (consistently), the queries 16. */
const resamplerWidth =
  (d: number): Edit =>
  (s) => {
    for (const t of s.tensors!) {
      if (!t.name.startsWith('resampler.')) continue;
      const sh = t.shape.map((x) => (x === 256 ? d : x));
      Object.assign(t, { shape: sh, type: 'F32', data: new Float32Array(elements(sh)) });
    }
  };

const INVALID = 'MM_GGUF_INVALID';
const UNSUPPORTED = 'MM_GGUF_UNSUPPORTED';
const u32 = gv.uint32;
const i32 = gv.int32;
const VER = 'clip.minicpmv_version';
const QN = 'clip.minicpmv_query_num';

const cases: Case[] = [
  // versions: libmtmd lays out 2..6 and 100045 (0 is 2); others make mtmd_init_from_file throw
  { name: 'version 7', edit: setKey(VER, i32(7)), code: UNSUPPORTED, message: VER },
  { name: 'version -1', edit: setKey(VER, i32(-1)), code: UNSUPPORTED, message: VER },
  { name: 'version 2^31-1', edit: setKey(VER, i32(0x7fffffff)), code: UNSUPPORTED, message: VER },
  { name: 'version 1', edit: setKey(VER, i32(1)), code: UNSUPPORTED, message: VER },
  // libmtmd reads the key with gguf_get_val_i32, which aborts on another type
  {
    name: 'version as uint32',
    edit: setKey(VER, u32(3)),
    code: INVALID,
    message: 'expected int32',
  },
  { name: 'version as string', edit: setKey(VER, gv.string('2.6')), code: INVALID, message: VER },
  { name: 'version 0 (libmtmd: 2)', edit: setKey(VER, i32(0)), code: 'ok' },
  { name: 'version 100045', edit: setKey(VER, i32(100045)), code: 'ok' },
  // query counts: the key must say what the query tensor holds (the graph reshapes by it)
  {
    name: 'query_num 2^32-1',
    edit: setKey(QN, u32(0xffffffff)),
    code: INVALID,
    message: QN,
    projectorOnly: true,
  },
  {
    name: 'query_num 17',
    edit: setKey(QN, u32(17)),
    code: INVALID,
    message: 'queries',
    projectorOnly: true,
  },
  {
    name: 'query_num as int32',
    edit: setKey(QN, i32(16)),
    code: INVALID,
    message: 'expected uint32',
    projectorOnly: true,
  },
  {
    name: 'query_num absent (libmtmd: 64) with 16 queries',
    edit: dropKey(QN),
    code: INVALID,
    message: 'the file says 64',
    projectorOnly: true,
  },
  {
    name: 'query_num 0 (libmtmd: the default, 64)',
    edit: setKey(QN, u32(0)),
    code: INVALID,
    message: '64',
    projectorOnly: true,
  },
  // sizes
  {
    name: 'image_size 0',
    edit: setKey('clip.vision.image_size', u32(0)),
    code: INVALID,
    message: 'image_size',
  },
  {
    name: 'image_size 2^32-1',
    edit: setKey('clip.vision.image_size', u32(0xffffffff)),
    code: INVALID,
    message: 'image_size',
  },
  // 1024 patches a slice side: slices of a million patches
  {
    name: 'image_size 8192',
    edit: setKey('clip.vision.image_size', u32(8192)),
    code: INVALID,
    message: 'image_size',
  },
  {
    name: 'image_size not a multiple of patch_size',
    edit: setKey('clip.vision.image_size', u32(60)),
    code: UNSUPPORTED,
    message: 'multiple',
  },
  {
    name: 'patch_size 0',
    edit: setKey('clip.vision.patch_size', u32(0)),
    code: INVALID,
    message: 'patch_size',
  },
  {
    name: 'patch_size 2^32-1',
    edit: setKey('clip.vision.patch_size', u32(0xffffffff)),
    code: INVALID,
    message: 'patch_size',
  },
  {
    name: 'block_count 2^32-1',
    edit: setKey('clip.vision.block_count', u32(0xffffffff)),
    code: INVALID,
    message: 'block_count',
  },
  {
    name: 'head_count 0',
    edit: setKey('clip.vision.attention.head_count', u32(0)),
    code: INVALID,
    message: 'head_count',
  },
  {
    name: 'head_count_kv 1 (grouped attention)',
    edit: setKey('clip.vision.attention.head_count_kv', u32(1)),
    code: UNSUPPORTED,
    message: 'head_count_kv',
  },
  {
    name: 'pinpoints',
    edit: setKey('clip.vision.image_grid_pinpoints', gv.array('int32', new Int32Array([128, 64]))),
    code: UNSUPPORTED,
    message: 'pinpoints',
  },
  // tensors
  {
    name: 'a class embedding (libmtmd asserts)',
    edit: addTensor('v.class_embd', [32]),
    code: INVALID,
    message: 'class_embd',
  },
  {
    name: 'position table of 4899 rows',
    edit: retensor('v.position_embd.weight', [32, 4899]),
    code: INVALID,
    message: '4900',
  },
  {
    name: 'position table f16',
    edit: retensor('v.position_embd.weight', undefined, 'F16'),
    code: 'ok',
  },
  {
    name: 'no resampler.query',
    edit: dropTensor('resampler.query'),
    code: INVALID,
    message: 'resampler.query',
    projectorOnly: true,
  },
  {
    name: 'resampler.query 128 wide',
    edit: retensor('resampler.query', [128, 16]),
    code: INVALID,
    message: 'resampler.query',
    projectorOnly: true,
  },
  {
    name: 'resampler.query f16 (libmtmd norms it)',
    edit: retensor('resampler.query', undefined, 'F16'),
    code: INVALID,
    message: 'resampler.query',
    projectorOnly: true,
  },
  {
    name: 'resampler.proj not square',
    edit: retensor('resampler.proj.weight', [256, 128]),
    code: INVALID,
    message: 'square',
    projectorOnly: true,
  },
  {
    name: 'resampler.kv from 31',
    edit: retensor('resampler.kv.weight', [31, 256]),
    code: INVALID,
    message: 'resampler.kv.weight',
    projectorOnly: true,
  },
  {
    name: 'resampler.attn.k as i32',
    edit: retensor('resampler.attn.k.weight', undefined, 'I32'),
    code: INVALID,
    message: 'resampler.attn.k.weight',
    projectorOnly: true,
  },
  {
    name: 'no resampler.ln_post.bias',
    edit: dropTensor('resampler.ln_post.bias'),
    code: INVALID,
    message: 'resampler.ln_post.bias',
    projectorOnly: true,
  },
  {
    name: 'no resampler.pos_embed_k (libmtmd requires it)',
    edit: dropTensor('resampler.pos_embed_k'),
    code: INVALID,
    message: 'pos_embed_k',
    projectorOnly: true,
  },
  // heads of 128: a 200-wide resampler would make ggml assert on the reshape
  {
    name: 'resampler 200 wide',
    edit: resamplerWidth(200),
    code: UNSUPPORTED,
    message: '128',
    projectorOnly: true,
  },
  { name: 'resampler 384 wide (3 heads)', edit: resamplerWidth(384), code: 'ok' },
];

describe('hostile resampler mmproj files are typed errors', () => {
  const image = rgbImage(syntheticImage(150, 90, 4));
  let before: { enc: VisionEncoder; proj: Projector; out: Float32Array[] };
  beforeAll(async () => {
    const path = await tinyMinicpmvMmprojFixture({ version: 3 });
    const enc = await VisionEncoder.load(path, { threads: 1 });
    const proj = await Projector.load(path, { threads: 1 });
    before = { enc, proj, out: await runStages(enc, proj, image) };
  });
  afterAll(() => {
    before?.enc.dispose();
    before?.proj.dispose();
  });

  let n = 0;
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const s = tinyMinicpmvMmprojSpec({ version: 3, ...c.options });
    c.edit(s);
    const path = join(dir, `case-${n++}.gguf`);
    await writeGguf(path, s);
    const outs = await expectLoadOutcome(path, c, rgbImage(syntheticImage(70, 140, 2)));
    // what loads runs: overview + 1x2 slices, features and embeddings each
    if (c.code === 'ok') expect(outs.length).toBe(2 * 3);
  });

  it('features of another encoder or grid are MM_MODEL_MISMATCH', async () => {
    const [f] = await before.enc.encodeChunks(rgbImage(syntheticImage(40, 30, 1)));
    using other = await Projector.load(
      await tinyMinicpmvMmprojFixture({ version: 3, nEmbd: 64, nFf: 96 }),
      {
        threads: 1,
      },
    );
    await expect(other.project(f!)).rejects.toMatchObject({ code: 'MM_MODEL_MISMATCH' });
    f!.dispose();
  });

  it('cached graphs used again after larger ones give the same output (compute buffers moved)', async () => {
    // 70x140: a 48x88 overview, then two 64x64 slices, whose graph was built and allocated at
    // load; the larger overview graph grew (and moved) the compute buffers in between
    const path = await tinyMinicpmvMmprojFixture({ version: 3 });
    using enc = await VisionEncoder.load(path, { threads: 1 });
    using proj = await Projector.load(path, { threads: 1 });
    const tall = rgbImage(syntheticImage(70, 140, 2));
    const first = await runStages(enc, proj, tall);
    expect(first).toHaveLength(6);
    await runStages(enc, proj, rgbImage(syntheticImage(500, 500, 3))); // larger graphs again
    const again = await runStages(enc, proj, tall);
    for (const [i, a] of again.entries()) expect(a).toEqual(first[i]);
  });

  it('the model loaded before still gives the same features and embeddings', async () => {
    const after = await runStages(before.enc, before.proj, image);
    expect(after.length).toBe(before.out.length);
    for (const [i, a] of after.entries()) expect(a).toEqual(before.out[i]);
  });
});
