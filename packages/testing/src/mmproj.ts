import { MmInvalidArgumentError } from '@mm/errors';
import {
  f32ToF16Bits,
  type GgufMetadata,
  type GgufTensorInput,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
  writeGguf,
} from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath, tinyLlamaFixture } from './fixtures.js';
import { Prng } from './prng.js';

/**
 * Tiny random mmproj files (CLIP ViT + projector) that libmtmd (pinned 80fb11ac) loads, one per
 * projector family. Keys, key types and tensor names mirror what llama.cpp's clip loader reads
 * (tools/mtmd/clip.cpp, clip-impl.h), including the parts that look optional but are not:
 * `clip.vision.projection_dim` is required, `mm.2` is needed for `mlp` (libmtmd reads the output
 * width from it), the depthwise kernels of `ldp`/`ldpv2` are f16 (ggml's CPU backend aborts on f32
 * ones) and their patch grid is 24x24 (hard-coded in libmtmd). Those kernels are written rank 4
 * `[3, 3, 1, C]` by default, or rank 3 `[3, 3, C]` (`dwKernelRank: 3`), the two layouts converters
 * write and libmtmd runs.
 */

export type MmprojFamily = 'mlp' | 'mlp_norm' | 'ldp' | 'ldpv2';
export const MMPROJ_FAMILIES: readonly MmprojFamily[] = ['mlp', 'mlp_norm', 'ldp', 'ldpv2'];

export interface TinyMmprojOptions {
  family: MmprojFamily;
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Square input side in pixels. ldp/ldpv2 need imageSize / patchSize = 24. */
  imageSize?: number;
  patchSize?: number;
  /** Width of the vision tower. */
  nEmbd?: number;
  nHead?: number;
  nFf?: number;
  /** Blocks stored. */
  nLayers?: number;
  /** `clip.vision.feature_layer`; null leaves the key out (libmtmd then runs nLayers - 1 blocks). */
  featureLayers?: number[] | null;
  /** Store `v.class_embd` (appended after the patches, dropped from the output). */
  classEmbd?: boolean;
  patchBias?: boolean;
  preLn?: boolean;
  postLn?: boolean;
  /** `clip.use_gelu` / `clip.use_silu`; gelu_quick writes neither key. */
  act?: 'gelu' | 'silu' | 'gelu_quick';
  /** Write fc1 as `ffn_down` and fc2 as `ffn_up`, as legacy converters did (libmtmd swaps back). */
  legacyFfnNames?: boolean;
  /** The projector's output width: the text model's n_embd. */
  projectionDim?: number;
  /** Hidden width of the mlp / mlp_norm projector. */
  hiddenDim?: number;
  /** Type of the matrices (and patch kernel, position table); vectors stay F32, dw kernels F16. */
  weightType?: 'F32' | 'F16';
  /**
   * Layout of the ldp / ldpv2 depthwise kernels: 4 = `[3, 3, 1, C]` (default), 3 = `[3, 3, C]`.
   * libmtmd runs both (ggml_conv_2d_dw views either as `[3, 3, 1, C]`).
   */
  dwKernelRank?: 3 | 4;
  /**
   * Cheap uniform weights (one PRNG draw per value) instead of the near-normal ones: for the large
   * benchmark shapes, where generation time matters and the values do not.
   */
  fastWeights?: boolean;
  /** general.name */
  name?: string;
}

export type ResolvedTinyMmprojOptions = Required<Omit<TinyMmprojOptions, 'featureLayers'>> & {
  featureLayers: number[] | null;
};

const FAMILY_DEFAULTS: Readonly<
  Record<MmprojFamily, Omit<ResolvedTinyMmprojOptions, 'seed' | 'name'>>
> = {
  // CLS token, no feature_layer (nLayers - 1 blocks run), legacy ffn names, gelu_quick, f16
  mlp: {
    family: 'mlp',
    imageSize: 32,
    patchSize: 4,
    nEmbd: 32,
    nHead: 2,
    nFf: 64,
    nLayers: 3,
    featureLayers: null,
    classEmbd: true,
    patchBias: false,
    preLn: true,
    postLn: false,
    act: 'gelu_quick',
    legacyFfnNames: true,
    projectionDim: 64,
    hiddenDim: 48,
    weightType: 'F16',
    fastWeights: false,
    dwKernelRank: 4,
  },
  // two stacked feature layers (the projector input is 2 x nEmbd wide), gelu, f32
  mlp_norm: {
    family: 'mlp_norm',
    imageSize: 32,
    patchSize: 8,
    nEmbd: 32,
    nHead: 4,
    nFf: 48,
    nLayers: 2,
    featureLayers: [1, 2],
    classEmbd: false,
    patchBias: false,
    preLn: true,
    postLn: false,
    act: 'gelu',
    legacyFfnNames: false,
    projectionDim: 64,
    hiddenDim: 40,
    weightType: 'F32',
    fastWeights: false,
    dwKernelRank: 4,
  },
  // 24x24 grid, CLS token, feature layer = last block, f16
  ldp: {
    family: 'ldp',
    imageSize: 48,
    patchSize: 2,
    nEmbd: 16,
    nHead: 2,
    nFf: 32,
    nLayers: 2,
    featureLayers: [2],
    classEmbd: true,
    patchBias: false,
    preLn: true,
    postLn: false,
    act: 'gelu',
    legacyFfnNames: false,
    projectionDim: 64,
    hiddenDim: 16,
    weightType: 'F16',
    fastWeights: false,
    dwKernelRank: 4,
  },
  // 24x24 grid, patch bias, post-LN instead of pre-LN, silu, no feature_layer, f32
  ldpv2: {
    family: 'ldpv2',
    imageSize: 48,
    patchSize: 2,
    nEmbd: 16,
    nHead: 2,
    nFf: 32,
    nLayers: 3,
    featureLayers: null,
    classEmbd: false,
    patchBias: true,
    preLn: false,
    postLn: true,
    act: 'silu',
    legacyFfnNames: false,
    projectionDim: 64,
    hiddenDim: 16,
    weightType: 'F32',
    fastWeights: false,
    dwKernelRank: 4,
  },
};

/**
 * A CLIP ViT-L/14 at 336 px with an `mlp` projector to 4096, random f16 weights: the realistic
 * shape of BENCH.md (LLaVA-1.5-7B's mmproj: 577 positions, 24 blocks of width 1024, no
 * feature_layer key so 23 blocks run).
 */
export const REALISTIC_CLIP_L14_336: TinyMmprojOptions = {
  family: 'mlp',
  imageSize: 336,
  patchSize: 14,
  nEmbd: 1024,
  nHead: 16,
  nFf: 4096,
  nLayers: 24,
  featureLayers: null,
  classEmbd: true,
  patchBias: false,
  preLn: true,
  postLn: false,
  act: 'gelu_quick',
  legacyFfnNames: false,
  projectionDim: 4096,
  hiddenDim: 4096,
  weightType: 'F16',
  fastWeights: true,
  dwKernelRank: 4,
  name: 'clip-vit-l14-336-random',
};

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new MmInvalidArgumentError(name, `must be a positive integer, got ${v}`);
  }
  return v;
}

export function resolveTinyMmprojOptions(options: TinyMmprojOptions): ResolvedTinyMmprojOptions {
  const d = FAMILY_DEFAULTS[options.family];
  if (d === undefined) {
    throw new MmInvalidArgumentError(
      'family',
      `'${String(options.family)}' is not one of ${MMPROJ_FAMILIES.join(', ')}`,
    );
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new MmInvalidArgumentError('seed', `must be an integer in [0, 2^32), got ${seed}`);
  }
  const r: ResolvedTinyMmprojOptions = {
    ...d,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    seed,
    name: options.name ?? `tiny-mmproj-${options.family}-s${seed}`,
  };
  for (const k of ['imageSize', 'patchSize', 'nEmbd', 'nHead', 'nFf', 'nLayers'] as const) {
    positiveInt(k, r[k]);
  }
  positiveInt('projectionDim', r.projectionDim);
  positiveInt('hiddenDim', r.hiddenDim);
  if (r.nEmbd % r.nHead !== 0) {
    throw new MmInvalidArgumentError('nHead', `${r.nHead} does not divide nEmbd ${r.nEmbd}`);
  }
  if (r.patchSize > r.imageSize) {
    throw new MmInvalidArgumentError('patchSize', 'must not exceed imageSize');
  }
  if (r.dwKernelRank !== 3 && r.dwKernelRank !== 4) {
    throw new MmInvalidArgumentError(
      'dwKernelRank',
      `must be 3 or 4, got ${String(r.dwKernelRank)}`,
    );
  }
  if ((r.family === 'ldp' || r.family === 'ldpv2') && r.imageSize / r.patchSize !== 24) {
    throw new MmInvalidArgumentError('imageSize', `${r.family} needs imageSize / patchSize = 24`);
  }
  return r;
}

/** Blocks libmtmd runs and the width of the features it hands to the projector. */
export function visionOutput(o: ResolvedTinyMmprojOptions): {
  blocksRun: number;
  nStacked: number;
  nEmbdFeatures: number;
} {
  const layers = o.featureLayers ?? [];
  const deepest = layers.length ? Math.max(...layers) : -1;
  const blocksRun = deepest < 0 ? o.nLayers - 1 : deepest;
  let nStacked = 0;
  for (let il = 0; il <= blocksRun; il++) if (layers.includes(il)) nStacked++;
  return { blocksRun, nStacked, nEmbdFeatures: o.nEmbd * Math.max(1, nStacked) };
}

/** The metadata and tensors of a tiny mmproj, deterministic in the options. */
export function tinyMmprojSpec(options: TinyMmprojOptions): GgufWriteSpec {
  const o = resolveTinyMmprojOptions(options);
  const E = o.nEmbd;
  const grid = Math.floor(o.imageSize / o.patchSize);
  const nPos = grid * grid + (o.classEmbd ? 1 : 0);
  const D = o.projectionDim;
  const { nEmbdFeatures } = visionOutput(o);

  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random ${o.family} mmproj (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(o.weightType === 'F16' ? 1 : 0)],
    ['clip.has_text_encoder', gv.bool(false)],
    ['clip.has_vision_encoder', gv.bool(true)],
    ['clip.has_llava_projector', gv.bool(true)],
    // mlp_norm is written as `mlp`: libmtmd switches on the presence of mm.3.weight
    ['clip.projector_type', gv.string(o.family === 'mlp_norm' ? 'mlp' : o.family)],
    ['clip.vision.image_size', gv.uint32(o.imageSize)],
    ['clip.vision.patch_size', gv.uint32(o.patchSize)],
    ['clip.vision.embedding_length', gv.uint32(E)],
    ['clip.vision.feed_forward_length', gv.uint32(o.nFf)],
    ['clip.vision.projection_dim', gv.uint32(D)],
    ['clip.vision.attention.head_count', gv.uint32(o.nHead)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(1e-5)],
    ['clip.vision.block_count', gv.uint32(o.nLayers)],
    [
      'clip.vision.image_mean',
      gv.array('float32', new Float32Array([0.48145466, 0.4578275, 0.40821073])),
    ],
    [
      'clip.vision.image_std',
      gv.array('float32', new Float32Array([0.26862954, 0.26130258, 0.27577711])),
    ],
  ]);
  if (o.featureLayers !== null) {
    metadata.set('clip.vision.feature_layer', gv.array('int32', new Int32Array(o.featureLayers)));
  }
  if (o.act === 'gelu') metadata.set('clip.use_gelu', gv.bool(true));
  if (o.act === 'silu') metadata.set('clip.use_silu', gv.bool(true));

  const rng = new Prng(o.seed);
  const values = (n: number, std: number, mean = 0): Float32Array => {
    if (!o.fastWeights) return rng.normals(n, std, mean);
    // uniform with the same standard deviation: sqrt(3) * std * (2u - 1)
    const out = new Float32Array(n);
    const a = Math.sqrt(3) * std;
    for (let i = 0; i < n; i++) out[i] = mean + a * (2 * rng.uniform() - 1);
    return out;
  };
  const f16Values = (n: number, std: number): Uint16Array => {
    const out = new Uint16Array(n);
    const a = Math.sqrt(3) * std;
    for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(a * (2 * rng.uniform() - 1));
    return out;
  };
  const tensors: GgufTensorInput[] = [];
  const typed = (name: string, type: 'F32' | 'F16', shape: number[], std: number): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = type === 'F16' && o.fastWeights ? f16Values(n, std) : values(n, std);
    tensors.push({ name, type, shape, data });
  };
  /** A matrix with ggml shape [nIn, nOut], N(0, 1/nIn) entries so activations keep their scale. */
  const matrix = (name: string, nIn: number, nOut: number): void =>
    typed(name, o.weightType, [nIn, nOut], 1 / Math.sqrt(nIn));
  const vector = (name: string, n: number, std: number, mean = 0): void => {
    tensors.push({ name, type: 'F32', shape: [n], data: values(n, std, mean) });
  };
  const norm = (prefix: string, n: number): void => {
    vector(`${prefix}.weight`, n, 0.1, 1);
    vector(`${prefix}.bias`, n, 0.05);
  };
  const linear = (prefix: string, nIn: number, nOut: number): void => {
    matrix(`${prefix}.weight`, nIn, nOut);
    vector(`${prefix}.bias`, nOut, 0.02);
  };
  /** A 3x3 depthwise kernel over n channels: always F16 (ggml's conv_2d_dw needs it). */
  const dwKernel = (name: string, n: number): void => {
    const shape = o.dwKernelRank === 3 ? [3, 3, n] : [3, 3, 1, n];
    tensors.push({ name, type: 'F16', shape, data: values(9 * n, 1 / 3) });
  };

  // vision tower
  typed(
    'v.patch_embd.weight',
    o.weightType,
    [o.patchSize, o.patchSize, 3, E],
    1 / Math.sqrt(3 * o.patchSize * o.patchSize),
  );
  if (o.patchBias) vector('v.patch_embd.bias', E, 0.02);
  if (o.classEmbd) vector('v.class_embd', E, 0.5);
  typed('v.position_embd.weight', o.weightType, [E, nPos], 0.1);
  if (o.preLn) norm('v.pre_ln', E);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `v.blk.${il}`;
    norm(`${p}.ln1`, E);
    for (const part of ['attn_q', 'attn_k', 'attn_v', 'attn_out']) linear(`${p}.${part}`, E, E);
    norm(`${p}.ln2`, E);
    // fc1 [E -> F] and fc2 [F -> E]; legacy files swap their names
    linear(`${p}.${o.legacyFfnNames ? 'ffn_down' : 'ffn_up'}`, E, o.nFf);
    linear(`${p}.${o.legacyFfnNames ? 'ffn_up' : 'ffn_down'}`, o.nFf, E);
  }
  if (o.postLn) norm('v.post_ln', E);

  // projector
  const H = o.hiddenDim;
  switch (o.family) {
    case 'mlp':
      linear('mm.0', nEmbdFeatures, H);
      linear('mm.2', H, D);
      break;
    case 'mlp_norm':
      linear('mm.0', nEmbdFeatures, H);
      norm('mm.1', H);
      linear('mm.3', H, D);
      norm('mm.4', D);
      break;
    case 'ldp':
      linear('mm.model.mlp.1', nEmbdFeatures, D);
      linear('mm.model.mlp.3', D, D);
      for (const b of [1, 2]) {
        const p = `mm.model.mb_block.${b}.block`;
        dwKernel(`${p}.0.0.weight`, D);
        norm(`${p}.0.1`, D);
        linear(`${p}.1.fc1`, D, H);
        linear(`${p}.1.fc2`, H, D);
        matrix(`${p}.2.0.weight`, D, D);
        norm(`${p}.2.1`, D);
      }
      break;
    case 'ldpv2':
      linear('mm.model.mlp.0', nEmbdFeatures, D);
      linear('mm.model.mlp.2', D, D);
      dwKernel('mm.model.peg.0.weight', D);
      vector('mm.model.peg.0.bias', D, 0.02);
      break;
  }
  return { metadata, tensors, alignment: 32 };
}

/** The tiny mmproj as GGUF bytes. */
export function tinyMmprojBuffer(options: TinyMmprojOptions): Uint8Array {
  return ggufToBuffer(tinyMmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyMmproj(path: string, options: TinyMmprojOptions): Promise<void> {
  await writeGguf(path, tinyMmprojSpec(options));
}

/** File name of a tiny mmproj fixture: every resolved option is part of it. */
export function tinyMmprojFixtureName(options: TinyMmprojOptions): string {
  const o = resolveTinyMmprojOptions(options);
  const fl = o.featureLayers === null ? 'none' : o.featureLayers.join('_');
  const flags = [
    o.classEmbd ? 'cls' : '',
    o.patchBias ? 'pb' : '',
    o.preLn ? 'pre' : '',
    o.postLn ? 'post' : '',
    o.legacyFfnNames ? 'legacy' : '',
    o.fastWeights ? 'fast' : '',
    o.dwKernelRank === 3 ? 'dw3' : '',
  ]
    .filter(Boolean)
    .join('-');
  const name = o.name.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    `mmproj-${o.family}-s${o.seed}-i${o.imageSize}-p${o.patchSize}-e${o.nEmbd}-h${o.nHead}` +
    `-ff${o.nFf}-l${o.nLayers}-fl${fl}-${o.act}-${flags || 'plain'}-d${o.projectionDim}` +
    `-hd${o.hiddenDim}-${o.weightType.toLowerCase()}-${name}.gguf`
  );
}

/** A cached tiny mmproj with these options (see writeTinyMmproj). */
export function tinyMmprojFixture(options: TinyMmprojOptions): Promise<string> {
  return fixturePath(tinyMmprojFixtureName(options), (path) => writeTinyMmproj(path, options));
}

export interface TinyMmprojPair {
  mmproj: string;
  /** A tiny llama text model whose n_embd equals the mmproj's projection width. */
  llm: string;
  /** The projection width = the text model's n_embd. */
  nEmbd: number;
}

/** A cached tiny mmproj and a matching tiny text model. */
export async function tinyMmprojPair(options: TinyMmprojOptions): Promise<TinyMmprojPair> {
  const o = resolveTinyMmprojOptions(options);
  const [mmproj, llm] = await Promise.all([
    tinyMmprojFixture(options),
    tinyLlamaFixture({ seed: o.seed, nEmbd: o.projectionDim, nHead: 4, nFf: 2 * o.projectionDim }),
  ]);
  return { mmproj, llm, nEmbd: o.projectionDim };
}

/**
 * Writes (once) a large mmproj, by default the realistic CLIP ViT-L/14-336 + mlp shape, into the
 * benchmark cache outside the repo (`benchDir()`), and returns its path.
 */
export async function benchMmproj(
  options: TinyMmprojOptions = REALISTIC_CLIP_L14_336,
): Promise<string> {
  return inBenchDir(() => tinyMmprojFixture(options));
}
