import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
import {
  bpeTokenizerKeys,
  checkTextModel,
  decoderTensors,
  resolveTextModel,
  type TinyTextModelOptions,
  textModelMetadata,
} from './text-spec.js';
import { bpeVocab, byteLevelChars, type TextVocab } from './text-vocab.js';
import {
  checkVitShape,
  resolveVit,
  siglipTower,
  type TinyVitOptions,
  vitMetadata,
} from './vit-spec.js';
import { checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random SmolVLM / Idefics3 fixtures that llama.cpp and libmtmd (pinned 80fb11ac) load: a
 * SmolLM-style `llama`-architecture text model (byte-level BPE vocabulary, `smollm` pre-tokenizer,
 * SmolVLM's image markers `<fake_token_around_image>`, `<global-img>` and `<row_R_col_C>` as CONTROL
 * tokens, "\n" and "\n\n" as single tokens, SmolVLM's chat template) and mmproj files of projector
 * type `idefics3` (SigLIP ViT, pixel shuffle, `mm.model.fc`), as llama.cpp's converter writes them.
 */

// ---- text model -----------------------------------------------------------------------------

/**
 * SmolVLM-Instruct's chat template, verbatim. llama.cpp's built-in templates recognise it (it has
 * `<|im_start|>` and `<end_of_utterance>`): `<|im_start|>User: ...<end_of_utterance>\nAssistant:`.
 */
export const SMOLVLM_CHAT_TEMPLATE =
  "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/** Tile rows and columns with a `<row_R_col_C>` token (SmolVLM has 1..6). */
export const SMOLVLM_MAX_TILE_MARKER = 6;

/** SmolLM's specials, then SmolVLM's added tokens (the tile markers for rows/columns 1..6). */
export const SMOLVLM_SPECIAL_TOKENS: readonly string[] = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<fake_token_around_image>',
  '<image>',
  '<end_of_utterance>',
  '<global-img>',
  ...Array.from({ length: SMOLVLM_MAX_TILE_MARKER ** 2 }, (_, i) => {
    const r = Math.floor(i / SMOLVLM_MAX_TILE_MARKER) + 1;
    const c = (i % SMOLVLM_MAX_TILE_MARKER) + 1;
    return `<row_${r}_col_${c}>`;
  }),
];

/**
 * The byte-level BPE vocabulary of the tiny SmolLM (`gpt2` tokenizer): bpeVocab's bytes, pieces
 * and specials, then "\n\n" as one token (the merge of two "\n" bytes), which libmtmd looks up
 * before the global image.
 */
export function tinySmolLmVocab(): TextVocab {
  const v = bpeVocab(SMOLVLM_SPECIAL_TOKENS);
  const nl = byteLevelChars()[0x0a] as string;
  v.tokens.push(nl + nl);
  v.tokenTypes = Int32Array.from([...v.tokenTypes, 1]);
  v.merges?.push(`${nl} ${nl}`);
  return v;
}

/** Token ids of the tiny SmolLM's specials. */
export function tinySmolLmSpecialIds(): Record<string, number> {
  const v = tinySmolLmVocab();
  return Object.fromEntries(SMOLVLM_SPECIAL_TOKENS.map((t) => [t, v.tokens.indexOf(t)]));
}

export interface TinySmolLmOptions extends TinyTextModelOptions {
  /** Default 1e5 (SmolLM2's). */
  ropeFreqBase?: number;
  /** Default 1e-5. */
  rmsEps?: number;
  /** No `output.weight`: the logits use token_embd, as in SmolLM. Default false (varied text). */
  tiedEmbeddings?: boolean;
  /** general.name. Default `tiny-smollm-s<seed>`. */
  name?: string;
}

export type ResolvedTinySmolLmOptions = Required<TinySmolLmOptions>;

export function resolveTinySmolLmOptions(opts: TinySmolLmOptions = {}): ResolvedTinySmolLmOptions {
  const r: ResolvedTinySmolLmOptions = {
    ...resolveTextModel(opts, { name: (seed) => `tiny-smollm-s${seed}` }),
    ropeFreqBase: opts.ropeFreqBase ?? 1e5,
    rmsEps: opts.rmsEps ?? 1e-5,
    tiedEmbeddings: opts.tiedEmbeddings ?? false,
    weightType: checkWeightType(opts.weightType ?? 'F32'),
  };
  if (r.nEmbd % r.nHead !== 0 || (r.nEmbd / r.nHead) % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', `must divide nEmbd ${r.nEmbd} into even-sized heads`);
  }
  checkTextModel(r, [r.ropeFreqBase, r.rmsEps]);
  return r;
}

/**
 * The metadata and tensors of a tiny SmolLM-style text model, deterministic in the options.
 * Logits of control tokens and non-text bytes are near zero, so greedy generation prints text and
 * runs to the token limit.
 */
export function tinySmolLmSpec(options: TinySmolLmOptions = {}): GgufWriteSpec {
  const o = resolveTinySmolLmOptions(options);
  const vocab = tinySmolLmVocab();
  const ids = tinySmolLmSpecialIds();
  const headDim = o.nEmbd / o.nHead;
  const a = 'llama';
  const metadata = textModelMetadata(a, o, 'SmolLM-style text model', vocab.tokens.length, [
    [`${a}.rope.dimension_count`, gv.uint32(headDim)],
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    ...bpeTokenizerKeys('smollm', vocab),
    ['tokenizer.ggml.bos_token_id', gv.uint32(ids['<|im_start|>'] as number)],
    ['tokenizer.ggml.eos_token_id', gv.uint32(ids['<end_of_utterance>'] as number)],
    ['tokenizer.ggml.unknown_token_id', gv.uint32(ids['<|endoftext|>'] as number)],
    ['tokenizer.ggml.padding_token_id', gv.uint32(ids['<|im_end|>'] as number)],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)],
    ['tokenizer.chat_template', gv.string(SMOLVLM_CHAT_TEMPLATE)],
  ]);
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: o.tiedEmbeddings ? 2 / Math.sqrt(o.nEmbd) : 1,
    tied: o.tiedEmbeddings,
    kvDim: headDim * o.nHeadKv,
  });
  return { metadata, tensors, alignment: 32 };
}

export function tinySmolLmBuffer(options: TinySmolLmOptions = {}): Uint8Array {
  return ggufToBuffer(tinySmolLmSpec(options));
}

/** Writes the tiny text model to `path`. Same options → byte-identical file. */
export async function writeTinySmolLm(
  path: string,
  options: TinySmolLmOptions = {},
): Promise<void> {
  await writeGguf(path, tinySmolLmSpec(options));
}

/** File name of a tiny SmolLM fixture: every resolved option is part of it. */
export function tinySmolLmFixtureName(options: TinySmolLmOptions = {}): string {
  const o = resolveTinySmolLmOptions(options);
  return (
    `tiny-smollm-s${o.seed}-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}` +
    `-c${o.nCtx}-r${o.ropeFreqBase}-eps${o.rmsEps}${o.tiedEmbeddings ? '-tied' : ''}` +
    `-${o.weightType.toLowerCase()}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny SmolLM text model with these options. */
export function tinySmolLmFixture(options: TinySmolLmOptions = {}): Promise<string> {
  return fixturePath(tinySmolLmFixtureName(options), (p) => writeTinySmolLm(p, options));
}

// ---- mmproj -----------------------------------------------------------------------------------

export interface TinyIdefics3MmprojOptions extends TinyVitOptions {
  /** Tile side (`clip.vision.image_size`): every tile and the global image are this square. Default 32. */
  imageSize?: number;
  /** Default 4 (an 8x8 patch grid per tile at 32 px). */
  patchSize?: number;
  /**
   * Pixel-shuffle factor (`clip.vision.projector.scale_factor`, required): each tile gives
   * (imageSize / patchSize / scaleFactor)^2 tokens. Default 2 (16 tokens). Written as given, so
   * hostile tests can ask for 1.
   */
  scaleFactor?: number;
  /**
   * `clip.vision.preproc_image_size`: the long side of a picture before it is cut into tiles, so
   * tiles per picture follow the aspect ratio (default 96: 3 tiles along the long side). 0 leaves
   * the key out, as in older files: the sides are then rounded to whole tiles.
   */
  longestEdge?: number;
  /** The text model's n_embd (the rows of mm.model.fc). Default 64. */
  projectionDim?: number;
  /** Type of the matrices and the patch kernel. Default F16; norms, biases, positions stay F32. */
  weightType?: 'F32' | 'F16';
}

export type ResolvedTinyIdefics3MmprojOptions = Required<TinyIdefics3MmprojOptions>;

/**
 * A SmolVLM-256M/500M-shaped SigLIP (512 px tiles, patch 16: 32x32 patches, width 768, 12 heads,
 * FFN 3072, scale factor 4 to 64 tokens per tile, longest edge 2048, projection to 960), random f16
 * weights. 12 blocks in the real model; 2 here.
 */
export const REALISTIC_SMOLVLM_SIGLIP: TinyIdefics3MmprojOptions = {
  imageSize: 512,
  patchSize: 16,
  scaleFactor: 4,
  longestEdge: 2048,
  nEmbd: 768,
  nHead: 12,
  nFf: 3072,
  nLayers: 2,
  projectionDim: 960,
  weightType: 'F16',
  fastWeights: true,
  name: 'smolvlm-siglip-512-random',
};

export function resolveTinyIdefics3MmprojOptions(
  options: TinyIdefics3MmprojOptions = {},
): ResolvedTinyIdefics3MmprojOptions {
  const r: ResolvedTinyIdefics3MmprojOptions = {
    ...resolveVit(options, {
      imageSize: 32,
      patchSize: 4,
      weightType: 'F16',
      name: (seed) => `tiny-mmproj-idefics3-s${seed}`,
    }),
    scaleFactor: positiveInt('scaleFactor', options.scaleFactor ?? 2),
    longestEdge: options.longestEdge ?? 96,
    projectionDim: positiveInt('projectionDim', options.projectionDim ?? 64),
    fastWeights: options.fastWeights ?? false,
  };
  if (!Number.isSafeInteger(r.longestEdge) || r.longestEdge < 0) {
    throw new MmInvalidArgumentError(
      'longestEdge',
      `must be an integer >= 0, got ${r.longestEdge}`,
    );
  }
  checkVitShape(r);
  return r;
}

/** Tokens of each chunk (tile or global image): (imageSize / patchSize / scaleFactor)^2. */
export function idefics3TileTokens(options: TinyIdefics3MmprojOptions = {}): number {
  const o = resolveTinyIdefics3MmprojOptions(options);
  return Math.floor(o.imageSize / o.patchSize / o.scaleFactor) ** 2;
}

/**
 * The metadata and tensors of a tiny `idefics3` mmproj, deterministic in the options: a SigLIP ViT
 * (patch kernel with bias, learned position table of (imageSize / patchSize)^2 rows, LayerNorms,
 * q/k/v/out/FFN with biases, tanh-GELU via `clip.use_gelu`, `v.post_ln`), then the pixel shuffle's
 * projection `mm.model.fc.weight`, ggml [nEmbd * scaleFactor^2, projectionDim], no bias.
 */
export function tinyIdefics3MmprojSpec(options: TinyIdefics3MmprojOptions = {}): GgufWriteSpec {
  const o = resolveTinyIdefics3MmprojOptions(options);
  const metadata = vitMetadata(o, { projectorType: 'idefics3', projectionDim: o.projectionDim });
  metadata.set('clip.vision.projector.scale_factor', gv.uint32(o.scaleFactor));
  metadata.set('clip.use_gelu', gv.bool(true));
  if (o.longestEdge > 0) {
    metadata.set('clip.vision.preproc_image_size', gv.uint32(o.longestEdge));
  }

  const b = new TensorBuilder(o.seed, o.fastWeights);
  const grid = o.imageSize / o.patchSize;
  siglipTower(b, o, grid * grid);
  b.matrix('mm.model.fc.weight', o.weightType, o.nEmbd * o.scaleFactor ** 2, o.projectionDim);
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyIdefics3MmprojBuffer(options: TinyIdefics3MmprojOptions = {}): Uint8Array {
  return ggufToBuffer(tinyIdefics3MmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyIdefics3Mmproj(
  path: string,
  options: TinyIdefics3MmprojOptions = {},
): Promise<void> {
  await writeGguf(path, tinyIdefics3MmprojSpec(options));
}

/** File name of a tiny idefics3 mmproj fixture: every resolved option is part of it. */
export function tinyIdefics3MmprojFixtureName(options: TinyIdefics3MmprojOptions = {}): string {
  const o = resolveTinyIdefics3MmprojOptions(options);
  return (
    `mmproj-idefics3-s${o.seed}-i${o.imageSize}-p${o.patchSize}-sf${o.scaleFactor}` +
    `-le${o.longestEdge}-e${o.nEmbd}-h${o.nHead}-ff${o.nFf}-l${o.nLayers}-d${o.projectionDim}` +
    `-${o.weightType.toLowerCase()}${o.fastWeights ? '-fast' : ''}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny idefics3 mmproj with these options. */
export function tinyIdefics3MmprojFixture(
  options: TinyIdefics3MmprojOptions = {},
): Promise<string> {
  return fixturePath(tinyIdefics3MmprojFixtureName(options), (p) =>
    writeTinyIdefics3Mmproj(p, options),
  );
}

/**
 * A cached idefics3 mmproj and a matching tiny SmolLM (n_embd = projectionDim; for wide projections
 * the text model has 8 heads and one layer, F16). `text` overrides its options.
 */
export async function tinyIdefics3Pair(
  options: TinyIdefics3MmprojOptions = {},
  text: TinySmolLmOptions = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyIdefics3MmprojOptions(options);
  const D = o.projectionDim;
  const wide = D > 256;
  const textOptions: TinySmolLmOptions = {
    seed: o.seed,
    nEmbd: D,
    ...(wide ? { nHead: 8, nHeadKv: 4, nLayers: 1, nFf: 256, weightType: 'F16' as const } : {}),
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyIdefics3MmprojFixture(options),
    tinySmolLmFixture(textOptions),
  ]);
  return { mmproj, llm, nEmbd: D };
}

/**
 * Writes (once) a large idefics3 mmproj and its text model, by default REALISTIC_SMOLVLM_SIGLIP,
 * into the benchmark cache outside the repo (`benchDir()`).
 */
export function benchIdefics3Pair(
  options: TinyIdefics3MmprojOptions = REALISTIC_SMOLVLM_SIGLIP,
): Promise<TinyMmprojPair> {
  return inBenchDir(() => tinyIdefics3Pair(options));
}

/** How libmtmd cuts a w x h picture for an idefics3 mmproj: tiles across and down (plus the global image). */
export function idefics3Grid(
  options: TinyIdefics3MmprojOptions,
  w: number,
  h: number,
): { gridX: number; gridY: number } {
  const o = resolveTinyIdefics3MmprojOptions(options);
  const t = o.imageSize;
  if (o.longestEdge > 0) {
    const L = o.longestEdge;
    const aspect = w / h;
    let rw: number;
    let rh: number;
    if (w >= h) {
      rw = L;
      rh = Math.trunc(L / aspect);
      rh += rh % 2;
    } else {
      rh = L;
      rw = Math.trunc(L * aspect);
      rw += rw % 2;
    }
    return { gridX: Math.ceil(rw / t), gridY: Math.ceil(rh / t) };
  }
  const f = Math.fround;
  const side = (x: number) => Math.max(t, Math.round(f(f(x) / f(t))) * t);
  return { gridX: side(w) / t, gridY: side(h) / t };
}

/**
 * Test pictures for the default fixture (longest edge 96, 32-px tiles): a square cut into 3x3
 * tiles, a wide one into 3x1, a tall one into 2x3 (each plus the global image).
 */
export const IDEFICS3_TEST_IMAGE_SIZES: readonly (readonly [number, number])[] = [
  [48, 48],
  [120, 40],
  [40, 60],
];

/**
 * Test pictures for an older file without a longest edge (sides rounded to whole 32-px tiles): one
 * tile, and 3x2 tiles.
 */
export const IDEFICS3_OLD_TEST_IMAGE_SIZES: readonly (readonly [number, number])[] = [
  [40, 40],
  [100, 60],
];
