import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
import { QWEN2VL_CHAT_TEMPLATE, QWEN2VL_SPECIAL_TOKENS, qwen2vlRopeSections } from './qwen2vl.js';
import {
  bpeTokenizerKeys,
  checkTextModel,
  decoderTensors,
  qwenChatKeys,
  resolveTextModel,
  type TinyTextModelOptions,
  textModelMetadata,
} from './text-spec.js';
import { bpeVocab, type TextVocab } from './text-vocab.js';
import { CHATML_TEMPLATE } from './tiny-llama.js';
import {
  CLIP_IMAGE_MEAN,
  CLIP_IMAGE_STD,
  HALF_IMAGE_NORM,
  patchKernel,
  resolveVit,
  vitBlocks,
  vitMetadata,
} from './vit-spec.js';
import { fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random fixtures of projector types mm runs through libmtmd's fused encoder + projector (the
 * long tail), each with a text model of the architecture its real models pair with, as llama.cpp's
 * converters write them and libmtmd / llama.cpp (pinned 80fb11ac) load them:
 *
 * - `pixtral` (Pixtral-12B): RMSNorm ViT with 2-D RoPE and a SwiGLU FFN, no biases, the two-layer
 *   GELU projector and the `[IMG_BREAK]` row embedding (`v.token_embd.img_break`); a `llama` text
 *   model with Mistral's `[INST]` / `[IMG_END]` tokens (libmtmd ends each image with `[IMG_END]`).
 * - `internvl` (InternVL 2.5 / 3): LayerNorm ViT with a class token, learned positions and layer
 *   scales, pixel shuffle by `projector.scale_factor`, LayerNorm + two-layer GELU projector; pictures
 *   larger than `image_size` are cut into tiles plus a thumbnail; a `qwen2` text model with `<img>` /
 *   `</img>`.
 * - `qwen3vl_merger` (Qwen3-VL): LayerNorm ViT with fused q/k/v, a patch bias and a learned position
 *   grid (resized to the picture), 2-D M-RoPE, the 2x2 merger, and deepstack mergers whose outputs
 *   widen each row (n_embd × (1 + deepstack layers)); a `qwen3vl` text model (q/k norms, interleaved
 *   M-RoPE sections, `n_deepstack_layers`) with `<|vision_start|>` / `<|vision_end|>`.
 */

export type LongTailFamily = 'pixtral' | 'internvl' | 'qwen3vl_merger';
export const LONG_TAIL_FAMILIES: readonly LongTailFamily[] = [
  'pixtral',
  'internvl',
  'qwen3vl_merger',
];

export interface TinyLongTailMmprojOptions {
  family: LongTailFamily;
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Default 8. */
  patchSize?: number;
  /**
   * `clip.vision.image_size`: internvl's tile side (default 64: 16 tokens a tile after the 2x2 pixel
   * shuffle); qwen3vl_merger's learned position grid (image_size / patchSize per side, default 64);
   * pixtral's nominal size (dynamic resolution; default 64).
   */
  imageSize?: number;
  /** Width of the ViT. Default 32. */
  nEmbd?: number;
  /** Default 2 (head dimension 16: a multiple of 4 for the 2-D rotations). */
  nHead?: number;
  /** Default 48. */
  nFf?: number;
  /** Default 2. */
  nLayers?: number;
  /** The projector's output width: the text model's n_embd. Default 64. */
  projectionDim?: number;
  /** internvl: the pixel-shuffle factor (`clip.vision.projector.scale_factor`). Default 2. */
  scaleFactor?: number;
  /** internvl: the most tiles a picture is cut into (`clip.vision.preproc_max_tiles`). Default 4. */
  maxTiles?: number;
  /** qwen3vl_merger: the ViT blocks with a deepstack merger. Default [0]. */
  deepstackLayers?: readonly number[];
  /** Type of the matrices and the patch kernels; norms, biases and embeddings stay F32. Default F32. */
  weightType?: 'F32' | 'F16';
  name?: string;
}

export type ResolvedTinyLongTailMmprojOptions = Required<TinyLongTailMmprojOptions>;

function checkFamily(family: unknown): LongTailFamily {
  if (!LONG_TAIL_FAMILIES.includes(family as LongTailFamily)) {
    throw new MmInvalidArgumentError(
      'family',
      `'${String(family)}' is not one of ${LONG_TAIL_FAMILIES.join(', ')}`,
    );
  }
  return family as LongTailFamily;
}

export function resolveTinyLongTailMmprojOptions(
  options: TinyLongTailMmprojOptions,
): ResolvedTinyLongTailMmprojOptions {
  const family = checkFamily(options.family);
  const r: ResolvedTinyLongTailMmprojOptions = {
    family,
    ...resolveVit(options, {
      imageSize: 64,
      patchSize: 8,
      weightType: 'F32',
      name: (seed) => `tiny-mmproj-${family.replace('_', '-')}-s${seed}`,
    }),
    projectionDim: positiveInt('projectionDim', options.projectionDim ?? 64),
    scaleFactor: positiveInt('scaleFactor', options.scaleFactor ?? 2),
    maxTiles: positiveInt('maxTiles', options.maxTiles ?? 4),
    deepstackLayers: [...(options.deepstackLayers ?? (family === 'qwen3vl_merger' ? [0] : []))],
  };
  if (r.nEmbd % r.nHead !== 0 || (r.nEmbd / r.nHead) % 4 !== 0) {
    throw new MmInvalidArgumentError(
      'nHead',
      `nEmbd / nHead must be a multiple of 4 (2-D rotations), got ${r.nEmbd} / ${r.nHead}`,
    );
  }
  if (r.imageSize % r.patchSize !== 0) {
    throw new MmInvalidArgumentError('imageSize', 'must be a multiple of patchSize');
  }
  const side = r.imageSize / r.patchSize;
  if (family === 'internvl' && side % r.scaleFactor !== 0) {
    throw new MmInvalidArgumentError('scaleFactor', `must divide the ${side} patches per side`);
  }
  if (family === 'qwen3vl_merger' && side % 2 !== 0) {
    throw new MmInvalidArgumentError('imageSize', 'must hold an even number of patches per side');
  }
  for (const l of r.deepstackLayers) {
    if (family !== 'qwen3vl_merger' || !Number.isInteger(l) || l < 0 || l >= r.nLayers) {
      throw new MmInvalidArgumentError(
        'deepstackLayers',
        `qwen3vl_merger only, each in [0, ${r.nLayers})`,
      );
    }
  }
  return r;
}

/** The metadata and tensors of a tiny long-tail mmproj, deterministic in the options. */
export function tinyLongTailMmprojSpec(options: TinyLongTailMmprojOptions): GgufWriteSpec {
  const o = resolveTinyLongTailMmprojOptions(options);
  const E = o.nEmbd;
  const D = o.projectionDim;
  const w = o.weightType;
  const pixtral = o.family === 'pixtral';
  const metadata = vitMetadata(o, {
    projectorType: o.family,
    projectionDim: D,
    eps: 1e-5,
    mean: pixtral ? CLIP_IMAGE_MEAN : HALF_IMAGE_NORM,
    std: pixtral ? CLIP_IMAGE_STD : HALF_IMAGE_NORM,
  });
  const b = new TensorBuilder(o.seed);
  const side = o.imageSize / o.patchSize;
  if (o.family === 'pixtral') {
    // Pixtral-12B: RMSNorms, SwiGLU, no biases; 2-D RoPE in the blocks (no position table).
    metadata.set('clip.use_silu', gv.bool(true));
    patchKernel(b, 'v.patch_embd.weight', o);
    b.norm('v.pre_ln', E, false);
    vitBlocks(b, o, { normBias: false, linearBias: false, gate: true });
    b.linear('mm.1', w, E, D);
    b.linear('mm.2', w, D, D);
    b.vector('v.token_embd.img_break', D, 1);
  } else if (o.family === 'internvl') {
    // InternViT-300M: LayerNorms, GELU, class token, learned positions, layer scales.
    metadata.set('clip.use_gelu', gv.bool(true));
    metadata.set('clip.vision.projector.scale_factor', gv.uint32(o.scaleFactor));
    metadata.set('clip.vision.preproc_min_tiles', gv.uint32(1));
    metadata.set('clip.vision.preproc_max_tiles', gv.uint32(o.maxTiles));
    patchKernel(b, 'v.patch_embd.weight', o);
    b.vector('v.patch_embd.bias', E, 0.02);
    b.vector('v.class_embd', E, 0.5);
    b.add('v.position_embd.weight', 'F32', [E, side * side + 1], 0.5);
    vitBlocks(b, o, { layerScale: true });
    const W = E * o.scaleFactor * o.scaleFactor;
    b.norm('mm.model.mlp.0', W, true);
    b.linear('mm.model.mlp.1', w, W, D);
    b.linear('mm.model.mlp.3', w, D, D);
  } else {
    // Qwen3-VL: LayerNorms, GELU, fused q/k/v, patch bias, a learned position grid, 2x2 merger and
    // deepstack mergers on some blocks.
    metadata.set('clip.use_gelu', gv.bool(true));
    metadata.set('clip.vision.spatial_merge_size', gv.uint32(2));
    patchKernel(b, 'v.patch_embd.weight', o);
    patchKernel(b, 'v.patch_embd.weight.1', o);
    b.vector('v.patch_embd.bias', E, 0.02);
    b.add('v.position_embd.weight', 'F32', [E, side * side], 0.5);
    vitBlocks(b, o, { fusedQkv: true });
    b.norm('v.post_ln', E, true);
    b.linear('mm.0', w, 4 * E, 4 * E);
    b.linear('mm.2', w, 4 * E, D);
    for (const il of o.deepstackLayers) {
      const p = `v.deepstack.${il}`;
      b.norm(`${p}.norm`, 4 * E, true);
      b.linear(`${p}.fc1`, w, 4 * E, 4 * E);
      b.linear(`${p}.fc2`, w, 4 * E, D);
    }
  }
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyLongTailMmprojBuffer(options: TinyLongTailMmprojOptions): Uint8Array {
  return ggufToBuffer(tinyLongTailMmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyLongTailMmproj(
  path: string,
  options: TinyLongTailMmprojOptions,
): Promise<void> {
  await writeGguf(path, tinyLongTailMmprojSpec(options));
}

/** File name of a tiny long-tail mmproj fixture: every resolved option is part of it. */
export function tinyLongTailMmprojFixtureName(options: TinyLongTailMmprojOptions): string {
  const o = resolveTinyLongTailMmprojOptions(options);
  return (
    `mmproj-${o.family.replace('_', '-')}-s${o.seed}-p${o.patchSize}-i${o.imageSize}-e${o.nEmbd}` +
    `-h${o.nHead}-ff${o.nFf}-l${o.nLayers}-d${o.projectionDim}-sf${o.scaleFactor}-t${o.maxTiles}` +
    `-ds${o.deepstackLayers.join('_')}-${o.weightType.toLowerCase()}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny long-tail mmproj with these options. */
export function tinyLongTailMmprojFixture(options: TinyLongTailMmprojOptions): Promise<string> {
  return fixturePath(tinyLongTailMmprojFixtureName(options), (p) =>
    writeTinyLongTailMmproj(p, options),
  );
}

// ---- text models ---------------------------------------------------------------------------

/** Mistral's special tokens the tiny pixtral text model carries (tekken-style BPE). */
export const PIXTRAL_SPECIAL_TOKENS = [
  '<unk>',
  '<s>',
  '</s>',
  '[INST]',
  '[/INST]',
  '[IMG]',
  '[IMG_BREAK]',
  '[IMG_END]',
  '[SYSTEM_PROMPT]',
  '[/SYSTEM_PROMPT]',
] as const;

/** A Mistral chat template (llama.cpp renders it as its built-in `mistral-v7`). */
export const PIXTRAL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]{% elif message['role'] == 'user' %}[INST]{{ message['content'] }}[/INST]{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

/** InternVL's added tokens (after Qwen2's), in its order. */
export const INTERNVL_SPECIAL_TOKENS = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<img>',
  '</img>',
  '<IMG_CONTEXT>',
] as const;

/** All F32 (the fixture names leave the weight type out). */
export interface TinyLongTailTextOptions extends Omit<TinyTextModelOptions, 'weightType'> {
  /** Default 2 (more than the mmproj's deepstack layers, as llama.cpp requires). */
  nLayers?: number;
  /** qwen3vl text models: `n_deepstack_layers` (the mmproj's deepstack mergers). Default 1. */
  deepstackLayers?: number;
}

export type ResolvedTinyLongTailTextOptions = Required<TinyLongTailTextOptions>;

/** The text-model architecture a long-tail family pairs with. */
export function longTailTextArch(family: LongTailFamily): 'llama' | 'qwen2' | 'qwen3vl' {
  return family === 'pixtral' ? 'llama' : family === 'internvl' ? 'qwen2' : 'qwen3vl';
}

export function resolveTinyLongTailTextOptions(
  family: LongTailFamily,
  opts: TinyLongTailTextOptions = {},
): ResolvedTinyLongTailTextOptions {
  checkFamily(family);
  const r: ResolvedTinyLongTailTextOptions = {
    ...resolveTextModel(opts, {
      nHeadKv: 2,
      name: (seed) => `tiny-${longTailTextArch(family)}-for-${family.replace('_', '-')}-s${seed}`,
    }),
    deepstackLayers: family === 'qwen3vl_merger' ? (opts.deepstackLayers ?? 1) : 0,
  };
  const headDim = r.nEmbd / r.nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', 'must divide nEmbd into an even head dimension');
  }
  checkTextModel(r);
  if (!Number.isInteger(r.deepstackLayers) || r.deepstackLayers < 0) {
    throw new MmInvalidArgumentError('deepstackLayers', 'must be an integer >= 0');
  }
  if (r.deepstackLayers >= r.nLayers) {
    throw new MmInvalidArgumentError('nLayers', 'must exceed deepstackLayers (llama.cpp asserts)');
  }
  return r;
}

function textVocab(family: LongTailFamily): TextVocab {
  return bpeVocab(
    family === 'pixtral'
      ? PIXTRAL_SPECIAL_TOKENS
      : family === 'internvl'
        ? INTERNVL_SPECIAL_TOKENS
        : QWEN2VL_SPECIAL_TOKENS,
  );
}

/**
 * The metadata and tensors of the tiny text model a long-tail family pairs with, deterministic in
 * the options. Logits of control tokens and non-text bytes are near zero, so greedy generation
 * prints text and runs to the token limit.
 */
export function tinyLongTailTextSpec(
  family: LongTailFamily,
  options: TinyLongTailTextOptions = {},
): GgufWriteSpec {
  const o = { ...resolveTinyLongTailTextOptions(family, options), weightType: 'F32' as const };
  const a = longTailTextArch(family);
  const vocab = textVocab(family);
  const id = (t: string) => vocab.tokens.indexOf(t);
  const headDim = o.nEmbd / o.nHead;
  const metadata = textModelMetadata(a, o, `${a} text model`, vocab.tokens.length, [
    [`${a}.rope.freq_base`, gv.float32(1e6)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(1e-6)],
    ...bpeTokenizerKeys(a === 'llama' ? 'tekken' : 'qwen2', vocab),
  ]);
  if (a === 'llama') {
    metadata.set(`${a}.rope.dimension_count`, gv.uint32(headDim));
    metadata.set('tokenizer.ggml.bos_token_id', gv.uint32(id('<s>')));
    metadata.set('tokenizer.ggml.eos_token_id', gv.uint32(id('</s>')));
    metadata.set('tokenizer.ggml.unknown_token_id', gv.uint32(id('<unk>')));
    metadata.set('tokenizer.ggml.add_bos_token', gv.bool(true));
    metadata.set('tokenizer.chat_template', gv.string(PIXTRAL_CHAT_TEMPLATE));
  } else {
    for (const [k, v] of qwenChatKeys(
      vocab,
      a === 'qwen3vl' ? QWEN2VL_CHAT_TEMPLATE : CHATML_TEMPLATE,
    )) {
      metadata.set(k, v);
    }
  }
  if (a === 'qwen3vl') {
    metadata.set(
      `${a}.rope.dimension_sections`,
      gv.array('int32', new Int32Array(qwen2vlRopeSections(headDim))),
    );
    metadata.set(`${a}.n_deepstack_layers`, gv.uint32(o.deepstackLayers));
  }
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: 1,
    qkvBias: a === 'qwen2',
    kvDim: headDim * o.nHeadKv,
    qkNorm: a === 'qwen3vl' ? headDim : 0,
  });
  return { metadata, tensors, alignment: 32 };
}

export function tinyLongTailTextBuffer(
  family: LongTailFamily,
  options: TinyLongTailTextOptions = {},
): Uint8Array {
  return ggufToBuffer(tinyLongTailTextSpec(family, options));
}

/** File name of a tiny long-tail text model fixture: every resolved option is part of it. */
export function tinyLongTailTextFixtureName(
  family: LongTailFamily,
  options: TinyLongTailTextOptions = {},
): string {
  const o = resolveTinyLongTailTextOptions(family, options);
  return (
    `tiny-${longTailTextArch(family)}-${family.replace('_', '-')}-s${o.seed}-l${o.nLayers}` +
    `-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}-c${o.nCtx}-ds${o.deepstackLayers}` +
    `-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny text model for a long-tail family. */
export function tinyLongTailTextFixture(
  family: LongTailFamily,
  options: TinyLongTailTextOptions = {},
): Promise<string> {
  return fixturePath(tinyLongTailTextFixtureName(family, options), (p) =>
    writeGguf(p, tinyLongTailTextSpec(family, options)),
  );
}

/**
 * A cached long-tail mmproj and the matching tiny text model (n_embd = projectionDim, deepstack
 * layers as many as the mmproj's). `text` overrides its options.
 */
export async function tinyLongTailPair(
  options: TinyLongTailMmprojOptions,
  text: TinyLongTailTextOptions = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyLongTailMmprojOptions(options);
  const textOptions: TinyLongTailTextOptions = {
    seed: o.seed,
    nEmbd: o.projectionDim,
    deepstackLayers: o.deepstackLayers.length,
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyLongTailMmprojFixture(options),
    tinyLongTailTextFixture(o.family, textOptions),
  ]);
  return { mmproj, llm, nEmbd: o.projectionDim };
}

/**
 * Picture sizes for the long-tail tests, per family, that lay out differently in libmtmd: pixtral's
 * rows of patches with an [IMG_BREAK] after each but the last (64x64: 8 rows of 8; 90x40 resized to
 * its patch grid), internvl's single thumbnail (40x40) and tiles + thumbnail (150x60: a 2x1 grid),
 * qwen3vl's dynamic grids (64x64; 150x90, wider than the learned position grid).
 */
export const LONG_TAIL_TEST_IMAGE_SIZES: Readonly<
  Record<LongTailFamily, readonly (readonly [number, number])[]>
> = {
  pixtral: [
    [64, 64],
    [90, 40],
  ],
  internvl: [
    [40, 40],
    [150, 60],
  ],
  qwen3vl_merger: [
    [64, 64],
    [150, 90],
  ],
};
