import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { type GgufValue, type GgufWriteSpec, gv, writeGguf } from '@mm/gguf';
import {
  syntheticImage,
  type TinyGemma3MmprojOptions,
  type TinyQwenVlMmprojOptions,
  tinyGemma3MmprojFixture,
  tinyGemma3MmprojSpec,
  tinyQwenVlMmprojFixture,
  tinyQwenVlMmprojSpec,
  tinyShapesPaths,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';
import {
  addTensor,
  dropKey,
  dropTensor,
  type Edit,
  expectLoadOutcome,
  type LoadExpectation,
  meta,
  retensor,
  runStages,
  setKey,
} from './mutated-mmproj.test-util.js';

// Hostile mmproj files of the families with dynamic resolution, windows and pooling (qwen2vl_merger,
// qwen2.5vl_merger, gemma3): every one is a typed error from VisionEncoder.load, Projector.load and
// inspectMmproj (never an abort inside ggml, a hang or an absurd allocation), and the models loaded
// before keep giving the same output.

type Family = 'qwen2vl_merger' | 'qwen2.5vl_merger' | 'gemma3';

interface Case extends LoadExpectation {
  family: Family;
  name: string;
  edit: Edit;
  /** Builder options (e.g. a patch size with matching kernels). */
  options?: Partial<TinyQwenVlMmprojOptions & TinyGemma3MmprojOptions>;
}

const dir = mkdtempSync(join(tmpdir(), 'mm-hostile-fam-'));

function spec(family: Family, options: Case['options'] = {}): GgufWriteSpec {
  return family === 'gemma3'
    ? tinyGemma3MmprojSpec(options)
    : tinyQwenVlMmprojSpec({ ...options, family });
}

const qwen = ['qwen2vl_merger', 'qwen2.5vl_merger'] as const;
const all = [...qwen, 'gemma3'] as const;
const INVALID = 'MM_GGUF_INVALID';
const UNSUPPORTED = 'MM_GGUF_UNSUPPORTED';
const u32 = gv.uint32;
const V = 'clip.vision.';

function show(v: GgufValue): string {
  return v.type === 'array' ? `${v.itemType}[${v.value.length}]` : `${v.type} ${String(v.value)}`;
}

/** A case that sets `clip.vision.<key>` (or another key, spelled out) to a value. */
function key(family: Family, k: string, v: GgufValue, code = INVALID, message?: string): Case {
  const full = k.startsWith('clip.') ? k : V + k;
  return {
    family,
    name: `${full} = ${show(v)}`,
    edit: setKey(full, v),
    code,
    message: message ?? (code === 'ok' ? '' : k),
  };
}

/** A case that edits tensors. */
function t(family: Family, name: string, edit: Edit, message: string, code = INVALID): Case {
  return { family, name, edit, code, message, projectorOnly: /^'?mm\./.test(message) };
}

const cases: Case[] = [
  // ---- every family: the shared vision keys and the ViT's tensors -----------------------------
  ...all.flatMap((f): Case[] => [
    key(f, 'patch_size', u32(0)),
    key(f, 'patch_size', u32(0xffffffff)),
    key(f, 'patch_size', gv.int32(8), INVALID, 'expected uint32'),
    key(f, 'image_size', u32(0)),
    key(f, 'image_size', u32(0xffffffff)),
    key(f, 'image_size', u32(8193)), // libmtmd's cap is 8192
    key(f, 'embedding_length', u32(0)),
    key(f, 'embedding_length', u32(0xffffffff)),
    key(f, 'attention.head_count', u32(0)),
    key(f, 'attention.head_count', u32(33)), // more heads than channels
    key(f, 'block_count', u32(0)),
    key(f, 'block_count', u32(0xffffffff)),
    key(f, 'block_count', u32(3), INVALID, "'v.blk.2."), // one more than stored
    key(f, 'attention.layer_norm_epsilon', gv.float32(Number.NaN)),
    key(f, 'image_std', gv.array('float32', new Float32Array([0, 1, 1]))),
    key(f, 'clip.projector_type', u32(7)),
    {
      family: f,
      name: 'projection_dim missing',
      edit: dropKey(`${V}projection_dim`),
      code: INVALID,
      message: 'projection_dim',
    },
    {
      family: f,
      name: 'image_mean missing',
      edit: dropKey(`${V}image_mean`),
      code: INVALID,
      message: 'image_mean',
    },
    t(f, 'no patch kernel', dropTensor('v.patch_embd.weight'), "'v.patch_embd.weight' is missing"),
    t(
      f,
      'a 3x3 patch kernel',
      retensor('v.patch_embd.weight', [3, 3, 3, 32]),
      'v.patch_embd.weight',
    ),
    t(
      f,
      'a q8_0 patch kernel',
      retensor('v.patch_embd.weight', [32], 'Q8_0'),
      'expected f32 or f16',
    ),
    t(f, 'no attn_q', dropTensor('v.blk.1.attn_q.weight'), "'v.blk.1.attn_q.weight' is missing"),
    t(f, 'attn_q as i32', retensor('v.blk.0.attn_q.weight', undefined, 'I32'), 'has type i32'),
    t(f, 'attn_v 31 wide', retensor('v.blk.0.attn_v.weight', [32, 31]), 'attn_v'),
    t(f, 'attn_k bias f16', retensor('v.blk.0.attn_k.bias', undefined, 'F16'), 'expected f32'),
    t(f, 'no ffn_down', dropTensor('v.blk.0.ffn_down.weight'), 'ffn_down'),
    t(f, 'ffn_down 47 deep', retensor('v.blk.1.ffn_down.weight', [47, 32]), 'ffn_'),
    t(f, 'post_ln 31 long', retensor('v.post_ln.weight', [31]), 'v.post_ln.weight'),
  ]),

  // ---- Qwen2/2.5-VL ------------------------------------------------------------------------------
  ...qwen.flatMap((f): Case[] => [
    key(f, 'spatial_merge_size', u32(3), UNSUPPORTED, 'merges 2x2'),
    key(f, 'spatial_merge_size', u32(0), UNSUPPORTED),
    key(f, 'spatial_merge_size', u32(2), 'ok'), // what libmtmd assumes
    key(f, 'image_grid_pinpoints', gv.array('int32', new Int32Array([32, 32])), 'ok'), // unused
    // libmtmd's max_pixels = 4096 * (2 * patch)^2 overflows int32 from patch 363 on (2.5: and the
    // 112-px windows hold no patch)
    key(f, 'patch_size', u32(400), f === 'qwen2vl_merger' ? INVALID : UNSUPPORTED),
    key(f, 'attention.head_count', u32(16), INVALID, 'multiple of 4'), // head dim 2: no 2-D rotary
    key(f, 'attention.head_count', u32(3), INVALID, 'head_count'), // 32 / 3
    // libmtmd would run its temporal conv with a null second kernel
    t(
      f,
      'no patch_embd.weight.1',
      dropTensor('v.patch_embd.weight.1'),
      "'v.patch_embd.weight.1' is missing",
    ),
    t(
      f,
      'patch_embd.weight.1 16 wide',
      retensor('v.patch_embd.weight.1', [8, 8, 3, 16]),
      'v.patch_embd.weight.1',
    ),
    t(
      f,
      'patch_embd.weight.1 as i32',
      retensor('v.patch_embd.weight.1', undefined, 'I32'),
      'expected f32 or f16',
    ),
    // libmtmd asserts there are none
    t(f, 'a patch bias', addTensor('v.patch_embd.bias', [32]), 'v.patch_embd.bias'),
    t(f, 'a class embedding', addTensor('v.class_embd', [32]), 'v.class_embd'),
    t(f, 'no attn_q bias', dropTensor('v.blk.0.attn_q.bias'), "'v.blk.0.attn_q.bias' is missing"),
    t(f, 'no attn_k bias', dropTensor('v.blk.1.attn_k.bias'), "'v.blk.1.attn_k.bias' is missing"),
    t(f, 'no attn_v bias', dropTensor('v.blk.0.attn_v.bias'), "'v.blk.0.attn_v.bias' is missing"),
    t(f, 'attn_v bias 33 long', retensor('v.blk.0.attn_v.bias', [33]), 'attn_v.bias'),
    t(f, 'no mm.0.weight', dropTensor('mm.0.weight'), "'mm.0.weight' is missing"),
    t(f, 'mm.0.weight not from 4x the width', retensor('mm.0.weight', [64, 128]), 'mm.0.weight'),
    t(f, 'no mm.0.bias', dropTensor('mm.0.bias'), "'mm.0.bias' is missing"),
    t(f, 'no mm.2.weight', dropTensor('mm.2.weight'), "'mm.2.weight' is missing"),
    t(f, 'mm.2.weight 64 deep', retensor('mm.2.weight', [64, 64]), 'mm.2.weight'),
    t(f, 'mm.2.weight as i32', retensor('mm.2.weight', undefined, 'I32'), 'mm.2.weight'),
    t(f, 'mm.2.bias f16', retensor('mm.2.bias', undefined, 'F16'), 'mm.2.bias'),
    t(f, 'mm.2.bias 63 long', retensor('mm.2.bias', [63]), 'mm.2.bias'),
  ]),
  ...(['qwen2.5vl_merger'] as const).flatMap((f): Case[] => [
    {
      family: f,
      name: 'n_wa_pattern missing',
      edit: dropKey(`${V}n_wa_pattern`),
      code: INVALID,
      message: 'n_wa_pattern is required',
    },
    key(f, 'n_wa_pattern', u32(3)), // more than the blocks
    key(f, 'n_wa_pattern', u32(0xffffffff)),
    key(f, 'n_wa_pattern', gv.int32(2), INVALID, 'expected uint32'),
    key(f, 'n_wa_pattern', u32(0), 'ok'), // no windows
    key(f, 'n_wa_pattern', u32(1), UNSUPPORTED), // every block full: libmtmd aborts at the first encode
    key(f, 'n_wa_pattern', u32(2), 'ok'), // = block_count: the last block full
    // libmtmd reorders the windows with projection_dim
    { ...key(f, 'projection_dim', u32(32)), projectorOnly: true },
    t(f, 'ffn_gate 47 wide', retensor('v.blk.0.ffn_gate.weight', [32, 47]), 'ffn_gate'),
    // libmtmd's window loop steps by 112 / patch / 2 merged tokens: 0 from patch 57 on, forever
    {
      family: f,
      name: 'patch 60',
      options: { patchSize: 60, imageSize: 240 },
      edit: () => {},
      code: UNSUPPORTED,
      message: 'attention window',
    },
    {
      family: f,
      name: 'patch 56 (one token per window)',
      options: { patchSize: 56, imageSize: 224 },
      edit: () => {},
      code: 'ok',
    },
  ]),
  ...(['qwen2vl_merger'] as const).flatMap((f): Case[] => [
    // libmtmd's Qwen2-VL graph would attend in windows whose inputs it never fills
    key(f, 'n_wa_pattern', u32(2)),
    key(f, 'n_wa_pattern', u32(0), 'ok'),
    {
      family: f,
      name: 'patch 60 (no windows)',
      options: { patchSize: 60, imageSize: 240 },
      edit: () => {},
      code: 'ok',
    },
  ]),

  // ---- Gemma 3 -----------------------------------------------------------------------------------
  ...(['gemma3'] as const).flatMap((f): Case[] => [
    key(f, 'projector.scale_factor', u32(0)),
    key(f, 'projector.scale_factor', u32(0xffffffff)),
    key(f, 'projector.scale_factor', u32(9)), // larger than the 8-patch grid
    key(f, 'projector.scale_factor', u32(3), INVALID, 'does not divide'),
    key(f, 'projector.scale_factor', gv.float32(2), INVALID, 'expected uint32'),
    key(f, 'projector.scale_factor', u32(8), 'ok'), // one token
    {
      family: f,
      name: 'scale_factor absent (libmtmd: 4)',
      edit: dropKey(`${V}projector.scale_factor`),
      code: 'ok',
    },
    key(f, 'patch_size', u32(33)), // larger than the image
    key(f, 'attention.head_count', u32(3), INVALID, 'attn_q'), // 32 / 3: the q/k/v widths differ
    t(
      f,
      'no mm.input_projection',
      dropTensor('mm.input_projection.weight'),
      "'mm.input_projection.weight' is missing",
    ),
    t(
      f,
      'mm.input_projection from 31',
      retensor('mm.input_projection.weight', [64, 31]),
      'mm.input_projection.weight',
    ),
    t(
      f,
      'mm.input_projection as i32',
      retensor('mm.input_projection.weight', undefined, 'I32'),
      'mm.input_projection.weight',
    ),
    t(
      f,
      'mm.input_projection 3-D',
      retensor('mm.input_projection.weight', [64, 32, 2]),
      'mm.input_projection.weight',
    ),
    t(
      f,
      'no mm.soft_emb_norm',
      dropTensor('mm.soft_emb_norm.weight'),
      "'mm.soft_emb_norm.weight' is missing",
    ),
    t(
      f,
      'mm.soft_emb_norm f16',
      retensor('mm.soft_emb_norm.weight', undefined, 'F16'),
      'mm.soft_emb_norm.weight',
    ),
    t(
      f,
      'mm.soft_emb_norm 64 long',
      retensor('mm.soft_emb_norm.weight', [64]),
      'mm.soft_emb_norm.weight',
    ),
    t(
      f,
      'position table of 63 rows (64 patches)',
      retensor('v.position_embd.weight', [32, 63]),
      'position_embd',
    ),
    t(
      f,
      'no position table',
      dropTensor('v.position_embd.weight'),
      "'v.position_embd.weight' is missing",
    ),
    t(f, 'position table 31 wide', retensor('v.position_embd.weight', [31, 64]), 'position_embd'),
    t(
      f,
      'position table q8_0',
      retensor('v.position_embd.weight', [32, 64], 'Q8_0'),
      'expected f32 or f16',
    ),
    t(f, 'a class embedding (SigLIP has none)', addTensor('v.class_embd', [32]), 'class_embd'),
    // ours reads the table through get_rows, which takes f16
    t(f, 'position table f16', retensor('v.position_embd.weight', undefined, 'F16'), '', 'ok'),
    t(f, 'position table of 100 rows', retensor('v.position_embd.weight', [32, 100]), '', 'ok'),
    // ignored, as libmtmd's fixed-size preprocessor does
    key(f, 'image_grid_pinpoints', gv.array('int32', new Int32Array([32, 32])), 'ok'),
  ]),
];

describe('hostile qwen2vl_merger, qwen2.5vl_merger and gemma3 mmproj files are typed errors', () => {
  const image = Image.fromRGB(syntheticImage(150, 90, 4).data, 150, 90);
  // models loaded before the hostile files, and what they gave then
  const loaded: { name: string; enc: VisionEncoder; proj: Projector; before: Float32Array[] }[] =
    [];
  beforeAll(async () => {
    const paths: [string, string][] = [
      ['tiny-shapes', tinyShapesPaths().mmproj],
      ['qwen2vl_merger', await tinyQwenVlMmprojFixture({ family: 'qwen2vl_merger' })],
      ['qwen2.5vl_merger', await tinyQwenVlMmprojFixture({ family: 'qwen2.5vl_merger' })],
      ['gemma3', await tinyGemma3MmprojFixture()],
    ];
    for (const [name, path] of paths) {
      const enc = await VisionEncoder.load(path, { threads: 1 });
      const proj = await Projector.load(path, { threads: 1 });
      loaded.push({ name, enc, proj, before: await runStages(enc, proj, image) });
    }
  });
  afterAll(() => {
    for (const m of loaded) {
      m.enc.dispose();
      m.proj.dispose();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  it.each(cases.map((c) => [`${c.family}: ${c.name}`, c] as const))('%s', async (_, c) => {
    const s = spec(c.family, c.options);
    c.edit(s);
    const path = join(dir, `case-${n++}.gguf`);
    await writeGguf(path, s);
    // what loads also runs, on a picture of another aspect ratio
    const picture = Image.fromRGB(syntheticImage(70, 40, 2).data, 70, 40);
    const outs = await expectLoadOutcome(path, c, picture);
    if (c.code === 'ok') {
      const info = await inspectMmproj(path);
      expect(outs.at(-1)!.length % info.nEmbdOut).toBe(0);
    }
  });

  it('a huge image_size does not size the typical Qwen input (built at load) past libmtmd warmup', async () => {
    for (const family of qwen) {
      const s = spec(family);
      meta(s).set('clip.vision.image_size', gv.uint32(8192));
      const path = join(dir, `huge-image-size-${family}.gguf`);
      await writeGguf(path, s);
      const info = await inspectMmproj(path);
      // an 8192-px square would resize to 1024 x 1024 (patch 8: 4096 tokens, and a 1 GiB
      // Qwen2.5-VL window mask at load); the typical input is libmtmd's 46 x 46-token warmup
      expect([info.gridSize, info.nPatches, info.nTokensOut]).toEqual([92, 8464, 2116]);
      using proj = await Projector.load(path, { threads: 1 });
      using enc = await VisionEncoder.load(path, { threads: 1 });
      expect([proj.info.nTokensOut, enc.info.gridSize]).toEqual([2116, 92]);
      // and pictures still resize beyond it (100 tokens wide here)
      using f = (
        await enc.encodeChunks(Image.fromRGB(syntheticImage(1600, 160, 3).data, 1600, 160))
      )[0]!;
      using e = await proj.project(f);
      expect([e.nx, e.ny]).toEqual([100, 10]);
    }
  });

  it('the models loaded before still give the same features and embeddings', async () => {
    expect(loaded).toHaveLength(4);
    for (const m of loaded) {
      const after = await runStages(m.enc, m.proj, image);
      expect(after.length, m.name).toBe(m.before.length);
      for (const [i, a] of after.entries()) expect(a, m.name).toEqual(m.before[i]);
    }
  });
});
