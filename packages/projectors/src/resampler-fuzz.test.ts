import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image } from '@mm/encoders';
import { type GgufValue, type GgufWriteSpec, ggufToBuffer, gv } from '@mm/gguf';
import { Prng, syntheticImage, tinyMinicpmvMmprojSpec } from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FuzzTally,
  fuzzLoaders,
  mutateTensor,
  pick,
  setOrDeleteKey,
} from './mutated-mmproj.test-util.js';

/**
 * Mutation fuzzing of resampler (MiniCPM-V) mmproj files through the native loaders: random values
 * of any type for the keys that size its graphs (version, query count, slice and patch sizes, the
 * ViT's shape) and dropped / reshaped / retyped / swapped resampler and ViT tensors. Every case must
 * be a typed error, or load and then slice, encode and project a picture that makes several
 * chunks; never a crash, an abort caught from ggml (MM_INTERNAL) or a hang. Deterministic.
 */

const N = Number(process.env['MM_RESAMPLER_FUZZ_N'] ?? 150);
const MAX_CASE_MS = 10_000;

const FOCUS_KEYS = [
  'clip.minicpmv_version',
  'clip.minicpmv_query_num',
  'clip.vision.image_size',
  'clip.vision.patch_size',
  'clip.vision.attention.head_count',
  'clip.vision.attention.head_count_kv',
  'clip.vision.attention.head_dim',
  'clip.vision.embedding_length',
  'clip.vision.block_count',
  'clip.vision.image_grid_pinpoints',
];
const U32 = [
  0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 32, 63, 64, 65, 96, 100045, 1024, 0x7fffffff, 0xffffffff,
];
const I32 = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 100045, -0x80000000, 0x7fffffff];
const DIMS = [1, 2, 16, 31, 32, 64, 96, 127, 128, 255, 256, 4899, 4900];

function randomValue(r: Prng): GgufValue | undefined {
  switch (Math.floor(r.uniform() * 8)) {
    case 0:
      return undefined;
    case 1:
      return gv.int32(pick(r, I32));
    case 2:
      return gv.float32(pick(r, [Number.NaN, -1, 0, 3, 1e30]));
    case 3:
      return gv.array(
        'int32',
        new Int32Array(Math.floor(r.uniform() * 4)).map(() => pick(r, [0, 64, 128])),
      );
    case 4:
      return gv.string(pick(r, ['', '3', 'resampler']));
    default:
      return gv.uint32(pick(r, U32));
  }
}

function mutateKey(r: Prng, s: GgufWriteSpec): string {
  const md = s.metadata as Map<string, GgufValue>;
  const key =
    r.uniform() < 0.7
      ? pick(r, FOCUS_KEYS)
      : pick(
          r,
          [...md.keys()].filter((k) => k.startsWith('clip.')),
        );
  return setOrDeleteKey(s, key, randomValue(r));
}

const dir = mkdtempSync(join(tmpdir(), 'mm-resampler-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('resampler mmproj fuzz through the native loaders', () => {
  // 100x60: an overview and 2 slices of another size
  const picture = Image.fromRGB(syntheticImage(100, 60, 7).data, 100, 60);

  it(`${N} mutated files: typed errors, or they load and run`, { timeout: 900_000 }, async () => {
    const r = new Prng(0x6d696e69);
    const tally = new FuzzTally();
    for (let i = 0; i < N; i++) {
      const s = tinyMinicpmvMmprojSpec({ version: 3, width: 128 });
      const steps: string[] = [];
      const n = 1 + (r.uniform() < 0.3 ? 1 : 0);
      for (let k = 0; k < n; k++)
        steps.push(
          r.uniform() < 0.6
            ? mutateKey(r, s)
            : mutateTensor(
                r,
                s,
                (name) => name.startsWith('resampler.') || name.includes('position'),
                DIMS,
              ),
        );
      let buf: Uint8Array;
      try {
        buf = ggufToBuffer(s);
      } catch {
        tally.count('writer refused');
        continue;
      }
      const path = join(dir, `case-${i}.gguf`);
      writeFileSync(path, buf);
      await fuzzLoaders(path, `case ${i} (${steps.join('; ')})`, picture, tally, {
        maxMs: MAX_CASE_MS,
        // every chunk, whatever its slice size, is resampled to the query count
        check: (e, proj) => expect(e.nTokens).toBe(proj.info.nTokensOut),
      });
      rmSync(path);
    }
    console.log(
      `resampler fuzz: ${N} cases, ${tally.loaded} loaded and ran, ${tally.failures.length} failures; ${tally.summary} (max ${tally.maxMs.toFixed(0)} ms/case)`,
    );
    expect(tally.failures.slice(0, 10)).toEqual([]);
    expect(tally.loaded).toBeGreaterThanOrEqual(Math.floor(N / 10));
    expect(tally.counts['MM_GGUF_INVALID'] ?? 0).toBeGreaterThanOrEqual(Math.floor(N / 5));
  });
});
