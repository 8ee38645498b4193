import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, gv } from '@mm/gguf';
import { FIXTURE_GENERATOR_VERSION } from './fixtures.js';
import { checkSeed, checkWeightType, positiveInt, type TensorBuilder } from './weights.js';

/**
 * What the tiny mmproj generators share: their ViT options, the header keys llama.cpp's clip loader
 * requires of every vision tower, and the tower's tensors as llama.cpp's converters name them. A
 * file's bytes depend on the order of its keys and tensors: the builders add them in the order
 * each generator always did.
 */

/** The ViT options every tiny mmproj generator takes. */
export interface TinyVitOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Width of the ViT. Default 32. */
  nEmbd?: number;
  /** Default 2. */
  nHead?: number;
  /** Default 48 (must differ from nEmbd: libmtmd swaps ffn_up/ffn_down when ffn_down.ne[0] == nEmbd). */
  nFf?: number;
  /** Default 2. */
  nLayers?: number;
  /** Uniform weights, one PRNG draw each (large benchmark shapes). Default false. */
  fastWeights?: boolean;
  name?: string;
}

export interface ResolvedVit {
  seed: number;
  imageSize: number;
  patchSize: number;
  nEmbd: number;
  nHead: number;
  nFf: number;
  nLayers: number;
  weightType: 'F32' | 'F16';
  name: string;
}

/** A family's defaults for resolveVit (sizes, weight type, name from the seed). */
export interface VitDefaults {
  imageSize: number;
  patchSize: number;
  weightType: 'F32' | 'F16';
  name: (seed: number) => string;
}

/** The options every ViT has, checked, with the family's defaults and the widths' (32 wide, 2 heads, FFN 48, 2 blocks). */
export function resolveVit(
  options: Omit<TinyVitOptions, 'fastWeights'> & {
    imageSize?: number;
    patchSize?: number;
    weightType?: 'F32' | 'F16';
  },
  d: VitDefaults,
): ResolvedVit {
  const seed = checkSeed(options.seed ?? 0);
  return {
    seed,
    imageSize: positiveInt('imageSize', options.imageSize ?? d.imageSize),
    patchSize: positiveInt('patchSize', options.patchSize ?? d.patchSize),
    nEmbd: positiveInt('nEmbd', options.nEmbd ?? 32),
    nHead: positiveInt('nHead', options.nHead ?? 2),
    nFf: positiveInt('nFf', options.nFf ?? 48),
    nLayers: positiveInt('nLayers', options.nLayers ?? 2),
    weightType: checkWeightType(options.weightType ?? d.weightType),
    name: options.name ?? d.name(seed),
  };
}

/** The FFN width must differ from nEmbd: libmtmd would take fc1 for fc2 (its legacy-name swap). */
export function checkFfnWidth(r: ResolvedVit): void {
  if (r.nFf === r.nEmbd) {
    throw new MmInvalidArgumentError('nFf', 'must differ from nEmbd (libmtmd would swap the FFN)');
  }
}

/** Patches tile the image, heads split the width, and the FFN width is not nEmbd. */
export function checkVitShape(r: ResolvedVit): void {
  if (r.imageSize % r.patchSize !== 0) {
    throw new MmInvalidArgumentError('patchSize', `must divide imageSize ${r.imageSize}`);
  }
  if (r.nEmbd % r.nHead !== 0) {
    throw new MmInvalidArgumentError('nHead', `${r.nHead} does not divide nEmbd ${r.nEmbd}`);
  }
  checkFfnWidth(r);
}

/** OpenAI CLIP's pixel mean and std (clip.vision.image_mean / image_std). */
export const CLIP_IMAGE_MEAN = new Float32Array([0.48145466, 0.4578275, 0.40821073]);
export const CLIP_IMAGE_STD = new Float32Array([0.26862954, 0.26130258, 0.27577711]);
/** SigLIP's (and InternViT's): 0.5 for both. */
export const HALF_IMAGE_NORM = new Float32Array([0.5, 0.5, 0.5]);

export interface VitHeader {
  /** `clip.projector_type`. */
  projectorType: string;
  /** What `general.description` calls the file. Default `<projectorType> mmproj`. */
  kind?: string;
  /** `clip.vision.projection_dim`: the projector's output width. */
  projectionDim: number;
  /** `clip.vision.attention.layer_norm_epsilon`. Default 1e-6. */
  eps?: number;
  /** Default HALF_IMAGE_NORM. */
  mean?: Float32Array;
  /** Default HALF_IMAGE_NORM. */
  std?: Float32Array;
}

/**
 * The keys of a tiny mmproj up to the pixel normalisation, in llama.cpp's converter order; the
 * generator adds its family's keys after them.
 */
export function vitMetadata(o: ResolvedVit, h: VitHeader): GgufMetadata {
  return new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(
        `tiny random ${h.kind ?? `${h.projectorType} mmproj`} (@mm/testing v${FIXTURE_GENERATOR_VERSION})`,
      ),
    ],
    ['general.file_type', gv.uint32(o.weightType === 'F16' ? 1 : 0)],
    ['clip.has_vision_encoder', gv.bool(true)],
    ['clip.projector_type', gv.string(h.projectorType)],
    ['clip.vision.image_size', gv.uint32(o.imageSize)],
    ['clip.vision.patch_size', gv.uint32(o.patchSize)],
    ['clip.vision.embedding_length', gv.uint32(o.nEmbd)],
    ['clip.vision.feed_forward_length', gv.uint32(o.nFf)],
    ['clip.vision.projection_dim', gv.uint32(h.projectionDim)],
    ['clip.vision.attention.head_count', gv.uint32(o.nHead)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(h.eps ?? 1e-6)],
    ['clip.vision.block_count', gv.uint32(o.nLayers)],
    // copies: a hostile test may edit a spec's values in place
    ['clip.vision.image_mean', gv.array('float32', new Float32Array(h.mean ?? HALF_IMAGE_NORM))],
    ['clip.vision.image_std', gv.array('float32', new Float32Array(h.std ?? HALF_IMAGE_NORM))],
  ]);
}

/**
 * A patch kernel `name` [patchSize, patchSize, 3, nEmbd] of the tower's weight type, N(0, 1/fan-in)
 * over `frames` stacked kernels (Qwen-VL's temporal pair: 2).
 */
export function patchKernel(b: TensorBuilder, name: string, o: ResolvedVit, frames = 1): void {
  const P = o.patchSize;
  b.add(name, o.weightType, [P, P, 3, o.nEmbd], 1 / Math.sqrt(frames * 3 * P * P));
}

export interface VitBlockLayout {
  /** LayerNorms with biases; false: weights only (RMSNorm). Default true. */
  normBias?: boolean;
  /** Biases on q/k/v/out and the FFN. Default true. */
  linearBias?: boolean;
  /** One fused `attn_qkv` [nEmbd, 3 nEmbd] for q, k and v (Qwen3-VL). Default false. */
  fusedQkv?: boolean;
  /** A gated FFN (`ffn_gate`). Default false. */
  gate?: boolean;
  /** InternViT's layer scales `ls1` / `ls2` after attention and FFN. Default false. */
  layerScale?: boolean;
}

/** The `v.blk.N` tensors: ln1, q/k/v (or qkv), out, [ls1], ln2, [gate], up, down, [ls2]. */
export function vitBlocks(b: TensorBuilder, o: ResolvedVit, layout: VitBlockLayout = {}): void {
  const { normBias = true, linearBias = true, fusedQkv = false, gate = false } = layout;
  const E = o.nEmbd;
  const w = o.weightType;
  const linear = (prefix: string, nIn: number, nOut: number) =>
    linearBias ? b.linear(prefix, w, nIn, nOut) : b.matrix(`${prefix}.weight`, w, nIn, nOut);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `v.blk.${il}`;
    b.norm(`${p}.ln1`, E, normBias);
    if (fusedQkv) linear(`${p}.attn_qkv`, E, 3 * E);
    else for (const part of ['attn_q', 'attn_k', 'attn_v']) linear(`${p}.${part}`, E, E);
    linear(`${p}.attn_out`, E, E);
    if (layout.layerScale) b.vector(`${p}.ls1.weight`, E, 0.1, 0.5);
    b.norm(`${p}.ln2`, E, normBias);
    if (gate) linear(`${p}.ffn_gate`, E, o.nFf);
    linear(`${p}.ffn_up`, E, o.nFf);
    linear(`${p}.ffn_down`, o.nFf, E);
    if (layout.layerScale) b.vector(`${p}.ls2.weight`, E, 0.1, 0.5);
  }
}

/**
 * A SigLIP tower (Gemma 3, Idefics3, MiniCPM-V): patch kernel with bias, a learned position table
 * of `positions` rows, LayerNorm blocks with biases, `v.post_ln`. The table is F32 whatever the
 * weight type: it is added straight to the F32 patch rows, and ggml's CPU add aborts on an F16
 * second operand.
 */
export function siglipTower(b: TensorBuilder, o: ResolvedVit, positions: number): void {
  patchKernel(b, 'v.patch_embd.weight', o);
  b.vector('v.patch_embd.bias', o.nEmbd, 0.02);
  b.add('v.position_embd.weight', 'F32', [o.nEmbd, positions], 0.1);
  vitBlocks(b, o);
  b.norm('v.post_ln', o.nEmbd, true);
}
