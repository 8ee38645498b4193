import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backbone, nativeModel } from '@mm/backbone-gguf';
import {
  type GgufMetadata,
  type GgufTensorInput,
  type GgufValue,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
} from '@mm/gguf';
import { FusedMedia } from '@mm/projectors';
import {
  LONG_TAIL_FAMILIES,
  type LongTailFamily,
  Prng,
  syntheticImage,
  tinyLongTailMmprojSpec,
  tinyLongTailPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HostileCase, mediaRows, runHostileFused } from './hostile-fused.test-util.js';

// Hostile long-tail mmproj files: libmtmd aborts the process on some malformed files (a key of the
// wrong type), GGML_ASSERTs on others and dereferences tensors it did not check. mm validates the
// header first; whatever still reaches libmtmd must come back as a typed error. Each file is loaded
// (and, when it loads, asked for a picture) through the fused path; the process must survive all of
// them and a model loaded before still gives the same embeddings.

const dir = mkdtempSync(join(tmpdir(), 'mm-long-tail-hostile-'));
const ALLOWED = new Set([
  'MM_GGUF_INVALID',
  'MM_GGUF_UNSUPPORTED',
  'MM_MODEL_LOAD',
  'MM_MODEL_MISMATCH',
  'MM_UNSUPPORTED_FAMILY',
  'MM_MODALITY_UNSUPPORTED',
  'MM_INVALID_ARGUMENT',
  'MM_IMAGE_TOO_LARGE',
  'MM_OUT_OF_MEMORY',
  'MM_INTERNAL',
]);

type Case = HostileCase;

const meta = (s: GgufWriteSpec) => s.metadata as GgufMetadata;

function withKey(family: LongTailFamily, key: string, v: GgufValue | undefined): GgufWriteSpec {
  const s = tinyLongTailMmprojSpec({ family });
  if (v === undefined) meta(s).delete(key);
  else meta(s).set(key, v);
  return s;
}

function withTensors(
  family: LongTailFamily,
  edit: (t: GgufTensorInput[]) => GgufTensorInput[],
): GgufWriteSpec {
  const s = tinyLongTailMmprojSpec({ family });
  s.tensors = edit([...(s.tensors ?? [])]);
  return s;
}

/** The same tensor with another shape (zero-filled F32 data). */
function reshaped(t: GgufTensorInput, shape: number[]): GgufTensorInput {
  return {
    name: t.name,
    type: 'F32',
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  };
}

/** A wrong-typed value for a key of this value. */
function retyped(v: GgufValue): GgufValue[] {
  switch (v.type) {
    case 'uint32':
      return [gv.int32(v.value as number), gv.float32(v.value as number), gv.string('7')];
    case 'float32':
      return [gv.uint32(1), gv.float64(v.value as number)];
    case 'bool':
      return [gv.uint8(1), gv.uint32(1)];
    case 'string':
      return [gv.uint32(1)];
    case 'array':
      return [gv.uint32(3), gv.array('int32', new Int32Array([1, 2, 3]))];
    default:
      return [gv.string('x')];
  }
}

function cases(family: LongTailFamily): Case[] {
  const out: Case[] = [];
  const add = (name: string, s: GgufWriteSpec) => out.push({ name, bytes: ggufToBuffer(s) });
  const base = tinyLongTailMmprojSpec({ family });
  // every clip.* key: dropped, and of each wrong type
  for (const [key, v] of meta(base)) {
    if (!key.startsWith('clip.')) continue;
    add(`${key} dropped`, withKey(family, key, undefined));
    for (const w of retyped(v)) add(`${key} as ${w.type}`, withKey(family, key, w));
  }
  // absurd values
  const absurd: [string, GgufValue][] = [
    ['clip.vision.block_count', gv.uint32(0)],
    ['clip.vision.block_count', gv.uint32(1000)],
    ['clip.vision.block_count', gv.uint32(0x80000000)],
    ['clip.vision.embedding_length', gv.uint32(0)],
    ['clip.vision.embedding_length', gv.uint32(31)],
    ['clip.vision.embedding_length', gv.uint32(1 << 20)],
    ['clip.vision.attention.head_count', gv.uint32(0)],
    ['clip.vision.attention.head_count', gv.uint32(3)],
    ['clip.vision.attention.head_count', gv.uint32(1 << 20)],
    ['clip.vision.attention.head_count_kv', gv.uint32(0)],
    ['clip.vision.attention.head_dim', gv.uint32(0xffffffff)],
    ['clip.vision.feed_forward_length', gv.uint32(0)],
    ['clip.vision.image_size', gv.uint32(0)],
    ['clip.vision.image_size', gv.uint32(1)],
    ['clip.vision.image_size', gv.uint32(8193)],
    ['clip.vision.image_size', gv.uint32(0xffffffff)],
    ['clip.vision.patch_size', gv.uint32(0)],
    ['clip.vision.patch_size', gv.uint32(1)],
    ['clip.vision.patch_size', gv.uint32(100000)],
    ['clip.vision.projection_dim', gv.uint32(0xffffffff)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(Number.NaN)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(-1)],
    ['clip.vision.image_mean', gv.array('float32', new Float32Array([0.5, 0.5]))],
    ['clip.vision.image_std', gv.array('float32', new Float32Array([0, 0, 0]))],
    ['clip.vision.image_min_pixels', gv.uint32(0xffffffff)],
    ['clip.vision.image_max_pixels', gv.uint32(0xffffffff)],
    ['clip.vision.image_max_pixels', gv.uint32(1)],
    ['clip.vision.projector.scale_factor', gv.uint32(0)],
    ['clip.vision.projector.scale_factor', gv.uint32(3)],
    ['clip.vision.projector.scale_factor', gv.uint32(100000)],
    ['clip.vision.spatial_merge_size', gv.uint32(0)],
    ['clip.vision.spatial_merge_size', gv.uint32(3)],
    ['clip.vision.spatial_merge_size', gv.uint32(100000)],
    ['clip.vision.preproc_min_tiles', gv.uint32(0)],
    ['clip.vision.preproc_min_tiles', gv.uint32(9)],
    ['clip.vision.preproc_max_tiles', gv.uint32(0xffffffff)],
    ['clip.vision.feature_layer', gv.array('int32', new Int32Array([-5, 99]))],
    ['clip.vision.image_grid_pinpoints', gv.array('int32', new Int32Array([64, 64, 0]))],
    ['clip.has_vision_encoder', gv.bool(false)],
    ['clip.has_audio_encoder', gv.bool(true)],
    ['clip.use_gelu', gv.bool(true)],
    ['clip.use_silu', gv.bool(true)],
    ['general.architecture', gv.string('llama')],
    ['general.name', gv.uint32(3)],
  ];
  for (const [key, v] of absurd) add(`${key} = ${String(v.value)}`, withKey(family, key, v));
  // every tensor: dropped, one wider, a 1-D one in f16, two swapped
  for (const t of base.tensors ?? []) {
    add(
      `${t.name} dropped`,
      withTensors(family, (ts) => ts.filter((x) => x.name !== t.name)),
    );
    const wider = [...t.shape] as number[];
    wider[0] = (wider[0] as number) + 1;
    add(
      `${t.name} [${wider.join(', ')}]`,
      withTensors(family, (ts) => ts.map((x) => (x.name === t.name ? reshaped(x, wider) : x))),
    );
    if (t.shape.length === 1 || t.shape.slice(1).every((d) => d === 1)) {
      add(
        `${t.name} f16`,
        withTensors(family, (ts) =>
          ts.map((x) =>
            x.name === t.name
              ? {
                  ...x,
                  type: 'F16' as const,
                  data: new Uint16Array(t.shape.reduce((a, b) => a * b, 1)),
                }
              : x,
          ),
        ),
      );
    }
  }
  const names = (base.tensors ?? []).map((t) => t.name);
  add(
    'first and last tensor swapped',
    withTensors(family, (ts) =>
      ts.map((x) =>
        x.name === names[0]
          ? { ...x, name: names[names.length - 1] as string }
          : x.name === names[names.length - 1]
            ? { ...x, name: names[0] as string }
            : x,
      ),
    ),
  );
  add(
    'a stranger tensor',
    withTensors(family, (ts) =>
      [...ts, reshaped(ts[0] as GgufTensorInput, [3, 5])].map((x, i, a) =>
        i === a.length - 1 ? { ...x, name: 'v.blk.0.attn_q.weight.2' } : x,
      ),
    ),
  );
  // bytes: truncated, and header bytes flipped (seeded)
  const good = ggufToBuffer(base);
  for (const n of [0, 4, 24, 100, Math.floor(good.length / 2), good.length - 1]) {
    out.push({ name: `truncated to ${n} bytes`, bytes: good.slice(0, n) });
  }
  const rng = new Prng(7);
  const headerEnd = Math.min(good.length, 4096);
  for (let i = 0; i < 40; i++) {
    const b = new Uint8Array(good);
    const at = Math.floor(rng.uniform() * headerEnd);
    b[at] = (b[at] as number) ^ (1 + Math.floor(rng.uniform() * 255));
    out.push({ name: `byte ${at} flipped`, bytes: b });
  }
  return out;
}

describe.each(LONG_TAIL_FAMILIES)('hostile %s mmproj files', (family: LongTailFamily) => {
  let backbone: Backbone;
  let good: FusedMedia;
  let before: Float32Array[];
  const image = syntheticImage(48, 40, 3);
  beforeAll(async () => {
    const files = await tinyLongTailPair({ family });
    backbone = await Backbone.load(files.llm);
    good = await FusedMedia.load(files.mmproj, nativeModel(backbone), { threads: 1 });
    before = mediaRows(await good.embed(image));
  }, 120_000);
  afterAll(() => {
    good?.dispose();
    backbone?.dispose();
  });

  it('are typed errors or load and run; the process and a model loaded before survive', {
    timeout: 1_800_000,
  }, async () => {
    const all = cases(family);
    const { tally, loaded } = await runHostileFused({
      label: family,
      cases: all,
      dir,
      backbone,
      threads: 1,
      allowed: ALLOWED,
      run: (f) => f.embed(image),
    });
    console.log(
      `${family}: ${all.length} hostile files, ${loaded} loaded by libmtmd; outcomes ${JSON.stringify(Object.fromEntries(tally))}`,
    );
    expect(all.length).toBeGreaterThan(100);
    // for these families mm's header checks refuse everything libmtmd would assert on
    expect([...tally.keys()].filter((k) => k.includes('assert caught'))).toEqual([]);
    // the model loaded before still gives what it gave
    const after = mediaRows(await good.embed(image));
    expect(after).toEqual(before);
  });

  it('a projection that does not fit the text model is MM_MODEL_MISMATCH', async () => {
    const s = tinyLongTailMmprojSpec({ family, projectionDim: 48 });
    const path = join(dir, `${family}-d48.gguf`);
    writeFileSync(path, ggufToBuffer(s));
    await expect(
      FusedMedia.load(path, nativeModel(backbone), { threads: 1 }),
    ).rejects.toMatchObject({ code: 'MM_MODEL_MISMATCH' });
    expect(readFileSync(path).length).toBeGreaterThan(0);
  });
});
