import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image } from '@mm/encoders';
import { MmError } from '@mm/errors';
import {
  type GgufTensorInput,
  type GgufValue,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
  readGgufFromBuffer,
  summarizeGguf,
} from '@mm/gguf';
import {
  Prng,
  syntheticImage,
  tinyGemma3MmprojSpec,
  tinyIdefics3MmprojSpec,
  tinyMmprojSpec,
  tinyQwenVlMmprojSpec,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  dropTensorAt,
  elements,
  FuzzTally,
  fuzzLoaders,
  pick,
  reshapeTensorAt,
  setOrDeleteKey,
} from './mutated-mmproj.test-util.js';

/**
 * Mutation fuzzing of mmproj files through the native loaders (VisionEncoder.load, Projector.load,
 * inspectMmproj) and the TypeScript reader and summary (mm inspect), per family: random values (any type, absurd sizes, deletions) for the family's
 * keys and the keys other families use, dropped / reshaped / retyped / renamed / added tensors, and
 * byte flips in the header. Every case must end in a typed error, or load and then encode and
 * project a picture; never a crash, an abort caught from ggml (MM_INTERNAL) or a hang.
 * Deterministic (seeded); prints the outcomes per family.
 */

const N = Number(process.env['MM_MMPROJ_FUZZ_N'] ?? 400);
const MAX_CASE_MS = 10_000;

type Family = 'qwen2vl_merger' | 'qwen2.5vl_merger' | 'gemma3' | 'idefics3' | 'mlp';

function baseSpec(family: Family): GgufWriteSpec {
  if (family === 'gemma3') return tinyGemma3MmprojSpec();
  if (family === 'idefics3') return tinyIdefics3MmprojSpec();
  if (family === 'mlp') return tinyMmprojSpec({ family: 'mlp' });
  return tinyQwenVlMmprojSpec({ family });
}

/** Keys that some family reads, whether or not this file has them. */
const EXTRA_KEYS = [
  'clip.vision.n_wa_pattern',
  'clip.vision.spatial_merge_size',
  'clip.vision.projector.scale_factor',
  'clip.vision.attention.head_dim',
  'clip.vision.feature_layer',
  'clip.vision.image_grid_pinpoints',
  'clip.vision.preproc_image_size',
  'clip.vision.projector_type',
  'clip.use_gelu',
  'clip.use_silu',
  'clip.has_vision_encoder',
  'clip.has_audio_encoder',
];

/** The keys that size the new families' graphs: mutated more often. */
const FOCUS_KEYS = [
  'clip.vision.n_wa_pattern',
  'clip.vision.spatial_merge_size',
  'clip.vision.projector.scale_factor',
  'clip.vision.patch_size',
  'clip.vision.image_size',
  'clip.vision.projection_dim',
  'clip.vision.attention.head_count',
  'clip.vision.preproc_image_size',
];

const U32 = [
  0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 32, 46, 56, 57, 60, 64, 100, 362, 363, 1024, 8192, 8193, 65535,
  0x7fffffff, 0x80000000, 0xffffffff,
];
const DIMS = [1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 47, 48, 64, 96, 128];
const TYPES = ['F32', 'F16', 'BF16', 'I32', 'Q8_0'] as const;
const NAMES = [
  'v.patch_embd.bias',
  'v.class_embd',
  'v.position_embd.weight',
  'v.pre_ln.weight',
  'v.patch_embd.weight.1',
  'mm.3.weight',
  'mm.input_projection.weight',
  'mm.soft_emb_norm.weight',
  'mm.model.fc.weight',
];

function randomValue(r: Prng): GgufValue | undefined {
  switch (Math.floor(r.uniform() * 12)) {
    case 0:
      return undefined; // delete the key
    case 1:
      return gv.int32(-1 - Math.floor(r.uniform() * 8));
    case 2:
      return gv.float32(pick(r, [Number.NaN, -1, 0, 0.5, 2, 1e30, Number.POSITIVE_INFINITY]));
    case 3:
      return gv.string(
        pick(r, ['', 'qwen2vl_merger', 'qwen2.5vl_merger', 'gemma3', 'idefics3', 'mlp', 'x']),
      );
    case 4:
      return gv.bool(r.uniform() < 0.5);
    case 5:
      return gv.array(
        'float32',
        new Float32Array(Math.floor(r.uniform() * 5)).map(() => pick(r, [0, 0.5, Number.NaN, 1])),
      );
    case 6:
      return gv.array(
        'int32',
        new Int32Array(Math.floor(r.uniform() * 4)).map(() => pick(r, [-1, 0, 1, 2, 3, 99])),
      );
    case 7:
      return gv.uint64(BigInt(pick(r, U32)));
    default:
      return gv.uint32(pick(r, U32));
  }
}

/** Zeros of a type and shape, as the writer takes them (undefined when the shape cannot be that type). */
function zeros(type: (typeof TYPES)[number], shape: number[]): ArrayBufferView | undefined {
  const n = elements(shape);
  if (type === 'I32') return new Int32Array(n);
  if (type === 'Q8_0')
    return (shape[0] as number) % 32 === 0 ? new Uint8Array((n / 32) * 34) : undefined;
  return new Float32Array(n);
}

function mutateTensors(r: Prng, s: GgufWriteSpec): string {
  const tensors = [...(s.tensors as GgufTensorInput[])];
  const i = Math.floor(r.uniform() * tensors.length);
  const t = tensors[i] as GgufTensorInput;
  let what: string;
  switch (Math.floor(r.uniform() * 5)) {
    case 0:
      what = dropTensorAt(tensors, i);
      break;
    case 1: {
      const shape = [...t.shape];
      const d = Math.floor(r.uniform() * (shape.length + (shape.length < 4 ? 1 : 0)));
      shape[d] = pick(r, DIMS);
      what = reshapeTensorAt(tensors, i, shape);
      break;
    }
    case 2: {
      const type = pick(r, TYPES);
      const data = zeros(type, [...t.shape]);
      if (data) tensors[i] = { name: t.name, type, shape: t.shape, data };
      what = `retype ${t.name} ${type}`;
      break;
    }
    case 3: {
      const other = tensors[Math.floor(r.uniform() * tensors.length)] as GgufTensorInput;
      if (other.name !== t.name) {
        tensors[i] = { ...t, name: other.name };
        tensors.splice(tensors.indexOf(other), 1, { ...other, name: t.name });
      }
      what = `swap ${t.name} / ${other.name}`;
      break;
    }
    default: {
      const name = pick(r, NAMES);
      if (!tensors.some((x) => x.name === name)) tensors.push({ ...t, name });
      what = `add ${name} like ${t.name}`;
    }
  }
  s.tensors = tensors;
  return what;
}

function mutateKey(r: Prng, s: GgufWriteSpec): string {
  const md = s.metadata as Map<string, GgufValue>;
  const keys = [...md.keys()].filter((k) => k.startsWith('clip.'));
  const u = r.uniform();
  const key = u < 0.5 ? pick(r, keys) : u < 0.75 ? pick(r, FOCUS_KEYS) : pick(r, EXTRA_KEYS);
  return setOrDeleteKey(s, key, randomValue(r));
}

/** Byte flips in the metadata and tensor table (the header ggml parses). */
function mutateBytes(r: Prng, buf: Uint8Array): Uint8Array {
  const out = buf.slice();
  const header = readGgufFromBuffer(buf).dataOffset;
  const n = 1 + Math.floor(r.uniform() * 4);
  for (let k = 0; k < n; k++) {
    const p = 24 + Math.floor(r.uniform() * (header - 24));
    out[p] =
      r.uniform() < 0.5
        ? (out[p] as number) ^ (1 << Math.floor(r.uniform() * 8))
        : pick(r, [0, 0xff, 0x7f, 0x80, 1]);
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'mm-mmproj-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mmproj fuzz through the native loaders', () => {
  const picture = Image.fromRGB(syntheticImage(40, 30, 7).data, 40, 30);

  it.each([
    ['qwen2vl_merger', N],
    ['qwen2.5vl_merger', N],
    ['gemma3', N],
    ['idefics3', N],
    ['mlp', Math.ceil(N / 4)],
  ] as const)(
    '%s: %i mutated mmproj files, typed errors or they load and run',
    {
      timeout: 600_000,
    },
    async (family, cases) => {
      const r = new Prng(0x6d6d7072 ^ family.length);
      const tally = new FuzzTally();
      let newKeys = 0;
      for (let i = 0; i < cases; i++) {
        const s = baseSpec(family);
        const steps: string[] = [];
        const n = 1 + (r.uniform() < 0.3 ? 1 + Math.floor(r.uniform() * 2) : 0);
        for (let k = 0; k < n; k++) {
          steps.push(r.uniform() < 0.6 ? mutateKey(r, s) : mutateTensors(r, s));
        }
        if (steps.some((x) => /n_wa_pattern|spatial_merge_size|scale_factor/.test(x))) newKeys++;
        let buf: Uint8Array;
        try {
          buf = ggufToBuffer(s);
        } catch {
          tally.count('writer refused');
          continue;
        }
        if (r.uniform() < 0.15) {
          buf = mutateBytes(r, buf);
          steps.push('byte flips');
        }
        // the TypeScript reader and mm inspect's summary: a parse or a typed error
        try {
          summarizeGguf(readGgufFromBuffer(buf));
        } catch (e) {
          if (!MmError.isInstance(e))
            tally.failures.push(`case ${i}: summary: untyped ${String(e)}`);
        }
        const path = join(dir, `${family}-${i}.gguf`);
        writeFileSync(path, buf);
        await fuzzLoaders(path, `case ${i} (${steps.join('; ')})`, picture, tally, {
          maxMs: MAX_CASE_MS,
        });
        rmSync(path);
      }
      console.log(
        `mmproj fuzz ${family}: ${cases} cases, ${tally.loaded} loaded and ran, ${tally.failures.length} crashes; ${tally.summary} (${newKeys} set n_wa_pattern, spatial_merge_size or scale_factor; max ${tally.maxMs.toFixed(0)} ms/case)`,
      );
      expect(tally.failures.slice(0, 10)).toEqual([]);
      expect(newKeys).toBeGreaterThanOrEqual(Math.floor(cases / 20));
      expect(tally.loaded).toBeGreaterThanOrEqual(Math.floor(cases / 20));
      expect(tally.counts['MM_GGUF_INVALID'] ?? 0).toBeGreaterThanOrEqual(Math.floor(cases / 5));
    },
  );
});
