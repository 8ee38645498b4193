import { createHash } from 'node:crypto';
import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { fixturePath, tinyLlamaFixture } from './fixtures.js';
import {
  REALISTIC_CLIP_L14_336,
  resolveTinyMmprojOptions,
  type TinyMmprojOptions,
  type TinyMmprojPair,
  tinyMmprojFixtureName,
  tinyMmprojSpec,
} from './mmproj.js';

/**
 * Tiny LLaVA-1.6 ("anyres") mmproj files: a tiny CLIP + `mlp` (or `mlp_norm`, `ldp`, `ldpv2`)
 * mmproj with `clip.vision.image_grid_pinpoints`, the candidate resolutions libmtmd's llava-uhd
 * preprocessor cuts a picture into (each a whole number of image_size slices), and
 * `clip.vision.mm_patch_merge_type = spatial_unpad` as LLaVA-1.6 converters write it (libmtmd reads
 * it and does nothing with it).
 */

/** (width, height) pairs. */
export type Pinpoints = readonly (readonly [number, number])[];

/**
 * LLaVA-1.6's five candidates (336x672, 672x336, 672x672, 1008x336, 336x1008) scaled to 32-px
 * slices, and 96x96 (a 3x3 grid) so that a picture can make ten chunks.
 */
export const LLAVA16_TEST_PINPOINTS: Pinpoints = [
  [32, 64],
  [64, 32],
  [64, 64],
  [96, 32],
  [32, 96],
  [96, 96],
];

export interface TinyLlava16MmprojOptions extends Partial<TinyMmprojOptions> {
  /** Default LLAVA16_TEST_PINPOINTS. */
  pinpoints?: Pinpoints;
  /**
   * Raw values of the key instead of pairs (hostile files: odd counts, zero or negative sides).
   * Takes precedence over `pinpoints`.
   */
  rawPinpoints?: readonly number[];
}

function pinpointValues(o: TinyLlava16MmprojOptions): number[] {
  if (o.rawPinpoints !== undefined) return [...o.rawPinpoints];
  return (o.pinpoints ?? LLAVA16_TEST_PINPOINTS).flat();
}

function baseOptions(o: TinyLlava16MmprojOptions): TinyMmprojOptions {
  const { pinpoints: _p, rawPinpoints: _r, ...rest } = o;
  return {
    ...rest,
    family: o.family ?? 'mlp',
    name: o.name ?? `tiny-llava16-${o.family ?? 'mlp'}`,
  };
}

/** The metadata and tensors: tinyMmprojSpec's with the pinpoints and the merge type. */
export function tinyLlava16MmprojSpec(options: TinyLlava16MmprojOptions = {}): GgufWriteSpec {
  const values = pinpointValues(options);
  for (const v of values) {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new MmInvalidArgumentError('pinpoints', `${v} is not an int32`);
    }
  }
  const spec = tinyMmprojSpec(baseOptions(options));
  const meta = spec.metadata as GgufMetadata; // tinyMmprojSpec writes a Map
  meta.set('clip.vision.image_grid_pinpoints', gv.array('int32', Int32Array.from(values)));
  meta.set('clip.vision.mm_patch_merge_type', gv.string('spatial_unpad'));
  return spec;
}

export function tinyLlava16MmprojBuffer(options: TinyLlava16MmprojOptions = {}): Uint8Array {
  return ggufToBuffer(tinyLlava16MmprojSpec(options));
}

export async function writeTinyLlava16Mmproj(
  path: string,
  options: TinyLlava16MmprojOptions = {},
): Promise<void> {
  await writeGguf(path, tinyLlava16MmprojSpec(options));
}

/** File name: the base mmproj's name with the pinpoint values. */
export function tinyLlava16MmprojFixtureName(options: TinyLlava16MmprojOptions = {}): string {
  let pp = pinpointValues(options)
    .map((v) => (v < 0 ? `m${-v}` : String(v)))
    .join('_');
  // long lists (hostile files) by their hash: file names stay under 255 bytes
  if (pp.length > 80) pp = `h${createHash('sha256').update(pp).digest('hex').slice(0, 16)}`;
  return tinyMmprojFixtureName(baseOptions(options)).replace(/\.gguf$/, `-pp${pp || 'none'}.gguf`);
}

export function tinyLlava16MmprojFixture(options: TinyLlava16MmprojOptions = {}): Promise<string> {
  return fixturePath(tinyLlava16MmprojFixtureName(options), (p) =>
    writeTinyLlava16Mmproj(p, options),
  );
}

/**
 * A cached LLaVA-1.6 mmproj and a matching tiny llama text model (n_embd = projectionDim, a
 * 1024-token context: a 3x3 grid and its overview are 640 image rows).
 */
export async function tinyLlava16Pair(
  options: TinyLlava16MmprojOptions = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyMmprojOptions(baseOptions(options));
  const [mmproj, llm] = await Promise.all([
    tinyLlava16MmprojFixture(options),
    tinyLlamaFixture({
      seed: o.seed,
      nEmbd: o.projectionDim,
      nHead: 4,
      nFf: 2 * o.projectionDim,
      nCtx: 1024,
    }),
  ]);
  return { mmproj, llm, nEmbd: o.projectionDim };
}

/**
 * Picture sizes for the default fixture (32-px slices, LLAVA16_TEST_PINPOINTS) and the chunks
 * libmtmd makes of each: the overview alone (fits one slice), or the slices of the best pinpoint
 * plus the overview.
 */
export const LLAVA16_TEST_IMAGE_SIZES: readonly {
  size: readonly [number, number];
  grid: readonly [number, number];
  chunks: number;
}[] = [
  { size: [24, 20], grid: [0, 0], chunks: 1 },
  { size: [60, 30], grid: [2, 1], chunks: 3 },
  { size: [30, 100], grid: [1, 3], chunks: 4 },
  { size: [90, 90], grid: [3, 3], chunks: 10 },
];

/** LLaVA-1.6's five anyres candidates at its 336-px slices (clip.vision.image_grid_pinpoints). */
export const LLAVA16_PINPOINTS: Pinpoints = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/**
 * A LLaVA-1.6-7B-shaped mmproj: CLIP ViT-L/14-336 (REALISTIC_CLIP_L14_336's widths) with the
 * anyres pinpoints and the 2-layer mlp to 4096, random f16 weights; 8 of the 23 blocks it runs
 * (a picture is several 577-patch chunks: pass `nLayers: 24` for the full depth).
 */
export const REALISTIC_LLAVA16_7B: TinyLlava16MmprojOptions = {
  ...REALISTIC_CLIP_L14_336,
  nLayers: 9,
  pinpoints: LLAVA16_PINPOINTS,
  name: 'llava16-clip-l14-336-random',
};

/** Writes (once) a large LLaVA-1.6 mmproj, by default REALISTIC_LLAVA16_7B, into `benchDir()`. */
export function benchLlava16Mmproj(
  options: TinyLlava16MmprojOptions = REALISTIC_LLAVA16_7B,
): Promise<string> {
  return inBenchDir(() => tinyLlava16MmprojFixture(options));
}
