import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
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
import {
  CLIP_IMAGE_MEAN,
  CLIP_IMAGE_STD,
  checkFfnWidth,
  patchKernel,
  resolveVit,
  type TinyVitOptions,
  vitBlocks,
  vitMetadata,
} from './vit-spec.js';
import { checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random Qwen2-VL / Qwen2.5-VL fixtures that llama.cpp and libmtmd (pinned 80fb11ac) load: a
 * `qwen2vl`-architecture text model (M-RoPE, Qwen2 attention biases, byte-level BPE vocabulary with
 * ChatML and the vision markers as CONTROL tokens) and mmproj files of projector types
 * `qwen2vl_merger` and `qwen2.5vl_merger`, as llama.cpp's converter writes them.
 */

// ---- text model -----------------------------------------------------------------------------

/** Qwen2-VL-Instruct's chat template, verbatim. */
export const QWEN2VL_CHAT_TEMPLATE =
  "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** Qwen2-VL's added tokens, in its order, after the regular vocabulary. */
export const QWEN2VL_SPECIAL_TOKENS = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|object_ref_start|>',
  '<|object_ref_end|>',
  '<|box_start|>',
  '<|box_end|>',
  '<|quad_start|>',
  '<|quad_end|>',
  '<|vision_start|>',
  '<|vision_end|>',
  '<|vision_pad|>',
  '<|image_pad|>',
  '<|video_pad|>',
] as const;

/** The byte-level BPE vocabulary of the tiny Qwen models (`gpt2` tokenizer, `qwen2` pre-tokenizer). */
export function tinyQwen2vlVocab(): TextVocab {
  return bpeVocab(QWEN2VL_SPECIAL_TOKENS);
}

export interface TinyQwen2vlOptions extends TinyTextModelOptions {
  /** Default 1e6 (Qwen2-VL's). */
  ropeFreqBase?: number;
  /** Default 1e-6. */
  rmsEps?: number;
  /**
   * `qwen2vl.rope.dimension_sections`: 4 ints (temporal, height, width, unused) that sum to half
   * the head dimension. Default: Qwen2-VL's split of [16, 24, 24, 0] of 64, scaled.
   */
  ropeSections?: readonly [number, number, number, number];
  /** No `output.weight`: the logits use token_embd (Qwen2-VL-2B, Qwen2.5-VL-3B). Default false. */
  tiedEmbeddings?: boolean;
  /** general.name. Default `tiny-qwen2vl-s<seed>`. */
  name?: string;
}

export type ResolvedTinyQwen2vlOptions = Required<TinyQwen2vlOptions>;

/** Qwen2-VL's M-RoPE split (1/4, 3/8, 3/8 of the rotated pairs) for a head dimension. */
export function qwen2vlRopeSections(headDim: number): [number, number, number, number] {
  const half = Math.floor(headDim / 2);
  const t = Math.floor(half / 4);
  const h = Math.floor((half - t) / 2);
  return [t, h, half - t - h, 0];
}

export function resolveTinyQwen2vlOptions(
  opts: TinyQwen2vlOptions = {},
): ResolvedTinyQwen2vlOptions {
  const base = resolveTextModel(opts, { name: (seed) => `tiny-qwen2vl-s${seed}` });
  if (base.nEmbd % base.nHead !== 0) {
    throw new MmInvalidArgumentError('nHead', `${base.nHead} does not divide nEmbd ${base.nEmbd}`);
  }
  const headDim = base.nEmbd / base.nHead;
  if (headDim % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', 'the head dimension must be even (RoPE)');
  }
  const r: ResolvedTinyQwen2vlOptions = {
    ...base,
    ropeFreqBase: opts.ropeFreqBase ?? 1e6,
    rmsEps: opts.rmsEps ?? 1e-6,
    ropeSections: opts.ropeSections ?? qwen2vlRopeSections(headDim),
    tiedEmbeddings: opts.tiedEmbeddings ?? false,
    weightType: checkWeightType(opts.weightType ?? 'F32'),
  };
  const s = r.ropeSections;
  if (
    s.length !== 4 ||
    s.some((x) => !Number.isSafeInteger(x) || x < 0) ||
    s.reduce((a, b) => a + b, 0) !== headDim / 2
  ) {
    throw new MmInvalidArgumentError(
      'ropeSections',
      `must be 4 non-negative ints summing to headDim / 2 = ${headDim / 2}, got [${s.join(', ')}]`,
    );
  }
  checkTextModel(r, [r.ropeFreqBase, r.rmsEps]);
  return r;
}

/** Token ids of the tiny Qwen vocabulary's specials. */
export function tinyQwen2vlSpecialIds(): Record<(typeof QWEN2VL_SPECIAL_TOKENS)[number], number> {
  const v = tinyQwen2vlVocab();
  return Object.fromEntries(QWEN2VL_SPECIAL_TOKENS.map((t) => [t, v.tokens.indexOf(t)])) as Record<
    (typeof QWEN2VL_SPECIAL_TOKENS)[number],
    number
  >;
}

/**
 * The metadata and tensors of a tiny `qwen2vl` text model, deterministic in the options. Logits of
 * control tokens and non-text bytes are near zero, so greedy generation prints text and runs to the
 * token limit.
 */
export function tinyQwen2vlSpec(options: TinyQwen2vlOptions = {}): GgufWriteSpec {
  const o = resolveTinyQwen2vlOptions(options);
  const vocab = tinyQwen2vlVocab();
  const a = 'qwen2vl';
  const metadata = textModelMetadata(a, o, 'qwen2vl text model', vocab.tokens.length, [
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    [`${a}.rope.dimension_sections`, gv.array('int32', new Int32Array(o.ropeSections))],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    ...bpeTokenizerKeys('qwen2', vocab),
    ...qwenChatKeys(vocab, QWEN2VL_CHAT_TEMPLATE),
  ]);
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: 1,
    tied: o.tiedEmbeddings,
    qkvBias: true,
    kvDim: (o.nEmbd / o.nHead) * o.nHeadKv,
  });
  return { metadata, tensors, alignment: 32 };
}

export function tinyQwen2vlBuffer(options: TinyQwen2vlOptions = {}): Uint8Array {
  return ggufToBuffer(tinyQwen2vlSpec(options));
}

/** Writes the tiny text model to `path`. Same options → byte-identical file. */
export async function writeTinyQwen2vl(
  path: string,
  options: TinyQwen2vlOptions = {},
): Promise<void> {
  await writeGguf(path, tinyQwen2vlSpec(options));
}

/** File name of a tiny qwen2vl text model fixture: every resolved option is part of it. */
export function tinyQwen2vlFixtureName(options: TinyQwen2vlOptions = {}): string {
  const o = resolveTinyQwen2vlOptions(options);
  return (
    `tiny-qwen2vl-s${o.seed}-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}` +
    `-c${o.nCtx}-r${o.ropeFreqBase}-eps${o.rmsEps}-rs${o.ropeSections.join('_')}` +
    `${o.tiedEmbeddings ? '-tied' : ''}-${o.weightType.toLowerCase()}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny qwen2vl text model with these options. */
export function tinyQwen2vlFixture(options: TinyQwen2vlOptions = {}): Promise<string> {
  return fixturePath(tinyQwen2vlFixtureName(options), (p) => writeTinyQwen2vl(p, options));
}

// ---- mmproj -----------------------------------------------------------------------------------

export type QwenVlMmprojFamily = 'qwen2vl_merger' | 'qwen2.5vl_merger';
export const QWEN_VL_MMPROJ_FAMILIES: readonly QwenVlMmprojFamily[] = [
  'qwen2vl_merger',
  'qwen2.5vl_merger',
];

export interface TinyQwenVlMmprojOptions extends TinyVitOptions {
  family: QwenVlMmprojFamily;
  /** Default 8: with the 2x2 merger, 16x16 pixels per image token. */
  patchSize?: number;
  /**
   * `clip.vision.image_size`. Dynamic resolution does not use it (libmtmd resizes each image to a
   * multiple of 2 * patchSize between 8 and 4096 tokens); default 40 * patchSize (560 at 14).
   */
  imageSize?: number;
  /** Default 2. The head dimension must be a multiple of 4 (2-D M-RoPE). */
  nHead?: number;
  /**
   * `clip.vision.n_wa_pattern` (qwen2.5vl_merger only, required there): every n-th block attends
   * over the whole image, the others inside 112-pixel windows; 0 = every block full. Default 2.
   */
  nWaPattern?: number;
  /** The merger's output width: the text model's n_embd. Default 64. */
  projectionDim?: number;
  /**
   * Type of the matrices and the two patch kernels; norms and biases stay F32. Default F16 for
   * qwen2vl_merger, F32 for qwen2.5vl_merger (both kernel types run in libmtmd's conv).
   */
  weightType?: 'F32' | 'F16';
}

export type ResolvedTinyQwenVlMmprojOptions = Required<TinyQwenVlMmprojOptions>;

/**
 * A Qwen2.5-VL-3B-shaped ViT (width 1280, 16 heads, SwiGLU 3420, patch 14, window attention with
 * every 8th block full, merger to 2048), random f16 weights. 32 blocks in the real model; 8 here
 * (7 windowed, 1 full) so one 448x448 encode (1024 patches, 256 tokens) takes about 5 s in libmtmd
 * on two cores: pass `nLayers: 32` for the full depth.
 */
export const REALISTIC_QWEN25VL_3B: TinyQwenVlMmprojOptions = {
  family: 'qwen2.5vl_merger',
  patchSize: 14,
  imageSize: 560,
  nEmbd: 1280,
  nHead: 16,
  nFf: 3420,
  nLayers: 8,
  nWaPattern: 8,
  projectionDim: 2048,
  weightType: 'F16',
  fastWeights: true,
  name: 'qwen2.5vl-3b-vit-random',
};

export function resolveTinyQwenVlMmprojOptions(
  options: TinyQwenVlMmprojOptions,
): ResolvedTinyQwenVlMmprojOptions {
  const family = options.family;
  if (!QWEN_VL_MMPROJ_FAMILIES.includes(family)) {
    throw new MmInvalidArgumentError(
      'family',
      `'${String(family)}' is not one of ${QWEN_VL_MMPROJ_FAMILIES.join(', ')}`,
    );
  }
  const is25 = family === 'qwen2.5vl_merger';
  const patchSize = positiveInt('patchSize', options.patchSize ?? 8);
  const r: ResolvedTinyQwenVlMmprojOptions = {
    family,
    ...resolveVit(options, {
      imageSize: 40 * patchSize,
      patchSize,
      weightType: is25 ? 'F32' : 'F16',
      name: (seed) => `tiny-mmproj-${family.replace('.', '')}-s${seed}`,
    }),
    nWaPattern: options.nWaPattern ?? (is25 ? 2 : 0),
    projectionDim: positiveInt('projectionDim', options.projectionDim ?? 64),
    fastWeights: options.fastWeights ?? false,
  };
  if (r.nEmbd % r.nHead !== 0 || (r.nEmbd / r.nHead) % 4 !== 0) {
    throw new MmInvalidArgumentError(
      'nHead',
      `nEmbd / nHead must be a multiple of 4 (2-D M-RoPE), got ${r.nEmbd} / ${r.nHead}`,
    );
  }
  checkFfnWidth(r);
  if (!Number.isSafeInteger(r.nWaPattern) || r.nWaPattern < 0) {
    throw new MmInvalidArgumentError('nWaPattern', `must be an integer >= 0, got ${r.nWaPattern}`);
  }
  if (!is25 && r.nWaPattern !== 0) {
    throw new MmInvalidArgumentError('nWaPattern', 'window attention is qwen2.5vl_merger only');
  }
  return r;
}

/**
 * The metadata and tensors of a tiny Qwen2-VL / Qwen2.5-VL mmproj, deterministic in the options.
 *
 * Both: two patch kernels (`v.patch_embd.weight` and `.weight.1`, the two frames of the temporal
 * conv; libmtmd adds them for a still image), no patch bias, no position table (2-D M-RoPE), q/k/v/out
 * with biases, `v.post_ln` (the merger's ln_q), then the merger `mm.0` [4E -> 4E], GELU, `mm.2`
 * [4E -> projectionDim] over 2x2 groups of patches.
 * qwen2vl_merger: LayerNorms with biases, fc1/fc2 FFN (`ffn_up`/`ffn_down`) with gelu_quick.
 * qwen2.5vl_merger: RMSNorms (weights only), SwiGLU FFN (`ffn_gate`, `ffn_up`, `ffn_down`, biases)
 * with `clip.use_silu`, and `clip.vision.n_wa_pattern`.
 */
export function tinyQwenVlMmprojSpec(options: TinyQwenVlMmprojOptions): GgufWriteSpec {
  const o = resolveTinyQwenVlMmprojOptions(options);
  const is25 = o.family === 'qwen2.5vl_merger';
  const E = o.nEmbd;
  const metadata = vitMetadata(o, {
    projectorType: o.family,
    projectionDim: o.projectionDim,
    mean: CLIP_IMAGE_MEAN,
    std: CLIP_IMAGE_STD,
  });
  if (is25) {
    metadata.set('clip.use_silu', gv.bool(true));
    metadata.set('clip.vision.n_wa_pattern', gv.uint32(o.nWaPattern));
  }

  const b = new TensorBuilder(o.seed, o.fastWeights);
  patchKernel(b, 'v.patch_embd.weight', o, 2);
  patchKernel(b, 'v.patch_embd.weight.1', o, 2);
  vitBlocks(b, o, { normBias: !is25, gate: is25 });
  b.norm('v.post_ln', E, !is25);
  b.linear('mm.0', o.weightType, 4 * E, 4 * E);
  b.linear('mm.2', o.weightType, 4 * E, o.projectionDim);
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyQwenVlMmprojBuffer(options: TinyQwenVlMmprojOptions): Uint8Array {
  return ggufToBuffer(tinyQwenVlMmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyQwenVlMmproj(
  path: string,
  options: TinyQwenVlMmprojOptions,
): Promise<void> {
  await writeGguf(path, tinyQwenVlMmprojSpec(options));
}

/** File name of a tiny Qwen-VL mmproj fixture: every resolved option is part of it. */
export function tinyQwenVlMmprojFixtureName(options: TinyQwenVlMmprojOptions): string {
  const o = resolveTinyQwenVlMmprojOptions(options);
  return (
    `mmproj-${o.family.replace('.', '')}-s${o.seed}-p${o.patchSize}-i${o.imageSize}-e${o.nEmbd}` +
    `-h${o.nHead}-ff${o.nFf}-l${o.nLayers}-wa${o.nWaPattern}-d${o.projectionDim}` +
    `-${o.weightType.toLowerCase()}${o.fastWeights ? '-fast' : ''}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny Qwen-VL mmproj with these options. */
export function tinyQwenVlMmprojFixture(options: TinyQwenVlMmprojOptions): Promise<string> {
  return fixturePath(tinyQwenVlMmprojFixtureName(options), (p) =>
    writeTinyQwenVlMmproj(p, options),
  );
}

/**
 * A cached Qwen-VL mmproj and a matching tiny qwen2vl text model (n_embd = projectionDim; for wide
 * projections the text model has 16 heads and one layer, F16). `text` overrides its options.
 */
export async function tinyQwenVlPair(
  options: TinyQwenVlMmprojOptions,
  text: TinyQwen2vlOptions = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyQwenVlMmprojOptions(options);
  const D = o.projectionDim;
  const wide = D > 256;
  const textOptions: TinyQwen2vlOptions = {
    seed: o.seed,
    nEmbd: D,
    ...(wide ? { nHead: 16, nHeadKv: 4, nLayers: 1, nFf: 256, weightType: 'F16' as const } : {}),
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyQwenVlMmprojFixture(options),
    tinyQwen2vlFixture(textOptions),
  ]);
  return { mmproj, llm, nEmbd: D };
}

/**
 * Writes (once) a large Qwen-VL mmproj and its text model, by default REALISTIC_QWEN25VL_3B, into
 * the benchmark cache outside the repo (`benchDir()`).
 */
export async function benchQwenVlPair(
  options: TinyQwenVlMmprojOptions = REALISTIC_QWEN25VL_3B,
): Promise<TinyMmprojPair> {
  return inBenchDir(() => tinyQwenVlPair(options));
}

// ---- dynamic resolution ------------------------------------------------------------------------

export interface QwenVlGrid {
  /** The size libmtmd resizes the image to. */
  width: number;
  height: number;
  /** Image tokens per row and per column (2x2 patches each). */
  tokensX: number;
  tokensY: number;
  /** tokensX * tokensY: the rows of the image chunk. */
  tokens: number;
}

/**
 * The size libmtmd's dyn_size preprocessing gives a `width` x `height` image (`calc_size_preserved_ratio`
 * in mtmd-image.cpp, in its float32 arithmetic: round each side to a multiple of 2 * patchSize, then
 * scale down to at most maxTokens or up to at least minTokens, keeping the aspect ratio), and the
 * token grid that follows. Qwen2/2.5-VL limits are 8 and 4096 tokens.
 */
export function qwenVlGrid(
  width: number,
  height: number,
  patchSize: number,
  minTokens = 8,
  maxTokens = 4096,
): QwenVlGrid {
  const f = Math.fround;
  const align = 2 * patchSize;
  const minPixels = minTokens * align * align;
  const maxPixels = maxTokens * align * align;
  const round = (x: number) => Math.round(f(x / align)) * align;
  const ceil = (x: number) => Math.ceil(f(x / align)) * align;
  const floor = (x: number) => Math.floor(f(x / align)) * align;
  let w = Math.max(align, round(width));
  let h = Math.max(align, round(height));
  if (w * h > maxPixels) {
    const beta = f(Math.sqrt(f(f(height) * width) / maxPixels));
    h = Math.max(align, floor(f(height / beta)));
    w = Math.max(align, floor(f(width / beta)));
  } else if (w * h < minPixels) {
    const beta = f(Math.sqrt(f(minPixels / f(f(height) * width))));
    h = ceil(f(height * beta));
    w = ceil(f(width * beta));
  }
  const tokensX = w / align;
  const tokensY = h / align;
  return { width: w, height: h, tokensX, tokensY, tokens: tokensX * tokensY };
}

/**
 * Test image sizes for the tiny Qwen-VL mmproj (patch 8): a square one, a wide one and a tall one
 * that are not multiples of 16 (so libmtmd resizes them) and span two 112-px attention windows, and
 * one so small that libmtmd scales it up to the 8-token minimum.
 */
export const QWEN_VL_TEST_IMAGE_SIZES: readonly (readonly [number, number])[] = [
  [64, 64],
  [150, 90],
  [50, 170],
  [20, 20],
];
