import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
import {
  checkTextModel,
  decoderTensors,
  resolveTextModel,
  type TinyTextModelOptions,
  textModelMetadata,
} from './text-spec.js';
import { spmVocab, type TextVocab } from './text-vocab.js';
import { TokenType } from './tiny-llama.js';
import {
  checkVitShape,
  resolveVit,
  siglipTower,
  type TinyVitOptions,
  vitMetadata,
} from './vit-spec.js';
import { checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random Gemma 3 fixtures that llama.cpp and libmtmd (pinned 80fb11ac) load: a
 * `gemma3`-architecture text model (QK-norm, pre and post norms around attention and FFN, sliding
 * window layers, GELU FFN, SentencePiece vocabulary with the turn and image markers) and mmproj files
 * of projector type `gemma3` (SigLIP ViT, average pooling, soft-embedding RMSNorm, input projection).
 */

// ---- text model -----------------------------------------------------------------------------

/** Gemma 3 instruct's chat template (system prompt folded into the first user turn). */
export const GEMMA3_CHAT_TEMPLATE =
  "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n";

/** Gemma's leading specials (ids 0..3 as in Gemma), then the turn and image markers. */
export const GEMMA3_SPECIAL_TOKENS = [
  ['<pad>', TokenType.CONTROL],
  ['<eos>', TokenType.CONTROL],
  ['<bos>', TokenType.CONTROL],
  ['<unk>', TokenType.UNKNOWN],
  ['<start_of_turn>', TokenType.CONTROL],
  ['<end_of_turn>', TokenType.CONTROL],
  ['<start_of_image>', TokenType.CONTROL],
  ['<end_of_image>', TokenType.CONTROL],
] as const;

export const GEMMA3_SPECIAL_IDS = {
  pad: 0,
  eos: 1,
  bos: 2,
  unk: 3,
  startOfTurn: 4,
  endOfTurn: 5,
  startOfImage: 6,
  endOfImage: 7,
} as const;

/** The SentencePiece vocabulary of the tiny Gemma models (`llama` tokenizer, no space prefix). */
export function tinyGemma3Vocab(): TextVocab {
  return spmVocab(GEMMA3_SPECIAL_TOKENS);
}

export interface TinyGemma3Options extends TinyTextModelOptions {
  /**
   * `attention.key_length` = `value_length`. Default 32: like real Gemma 3, nHead * headDim (128)
   * differs from nEmbd (64).
   */
  headDim?: number;
  /** `attention.sliding_window`; 0 leaves the key out (no sliding-window layers). Default 64. */
  slidingWindow?: number;
  /**
   * `attention.sliding_window_pattern`: every n-th layer is global, the others slide. llama.cpp
   * defaults to Gemma 3's 6 without the key; default 2 here, so the 2 tiny layers have one of each.
   */
  slidingWindowPattern?: number;
  /** Default 1e6 (global layers). */
  ropeFreqBase?: number;
  /** `rope.freq_base_swa` of the sliding layers. Default 1e4. */
  ropeFreqBaseSwa?: number;
  /** Default 1e-6. */
  rmsEps?: number;
  /**
   * No `output.weight`: the logits use token_embd, as in real Gemma 3. Default false: a tied random
   * model mostly echoes the tokens it reads, an untied one prints varied text.
   */
  tiedEmbeddings?: boolean;
  /** general.name. Default `tiny-gemma3-s<seed>`. */
  name?: string;
}

export type ResolvedTinyGemma3Options = Required<TinyGemma3Options>;

export function resolveTinyGemma3Options(opts: TinyGemma3Options = {}): ResolvedTinyGemma3Options {
  const r: ResolvedTinyGemma3Options = {
    ...resolveTextModel(opts, { name: (seed) => `tiny-gemma3-s${seed}` }),
    headDim: positiveInt('headDim', opts.headDim ?? 32),
    slidingWindow: opts.slidingWindow ?? 64,
    slidingWindowPattern: positiveInt('slidingWindowPattern', opts.slidingWindowPattern ?? 2),
    ropeFreqBase: opts.ropeFreqBase ?? 1e6,
    ropeFreqBaseSwa: opts.ropeFreqBaseSwa ?? 1e4,
    rmsEps: opts.rmsEps ?? 1e-6,
    tiedEmbeddings: opts.tiedEmbeddings ?? false,
    weightType: checkWeightType(opts.weightType ?? 'F32'),
  };
  if (r.headDim % 2 !== 0) {
    throw new MmInvalidArgumentError('headDim', 'must be even (RoPE)');
  }
  if (!Number.isSafeInteger(r.slidingWindow) || r.slidingWindow < 0) {
    throw new MmInvalidArgumentError(
      'slidingWindow',
      `must be an integer >= 0, got ${r.slidingWindow}`,
    );
  }
  checkTextModel(r, [r.ropeFreqBase, r.ropeFreqBaseSwa, r.rmsEps]);
  return r;
}

/**
 * The metadata and tensors of a tiny `gemma3` text model, deterministic in the options. Logits of
 * control tokens and non-text bytes are near zero, so greedy generation prints text and runs to the
 * token limit.
 */
export function tinyGemma3Spec(options: TinyGemma3Options = {}): GgufWriteSpec {
  const o = resolveTinyGemma3Options(options);
  const vocab = tinyGemma3Vocab();
  const a = 'gemma3';
  const metadata = textModelMetadata(a, o, 'gemma3 text model', vocab.tokens.length, [
    [`${a}.attention.key_length`, gv.uint32(o.headDim)],
    [`${a}.attention.value_length`, gv.uint32(o.headDim)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    ['tokenizer.ggml.model', gv.string('llama')],
    ['tokenizer.ggml.pre', gv.string('default')],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.scores', gv.array('float32', vocab.scores ?? new Float32Array(0))],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.bos_token_id', gv.uint32(GEMMA3_SPECIAL_IDS.bos)],
    ['tokenizer.ggml.eos_token_id', gv.uint32(GEMMA3_SPECIAL_IDS.eos)],
    ['tokenizer.ggml.eot_token_id', gv.uint32(GEMMA3_SPECIAL_IDS.endOfTurn)],
    ['tokenizer.ggml.unknown_token_id', gv.uint32(GEMMA3_SPECIAL_IDS.unk)],
    ['tokenizer.ggml.padding_token_id', gv.uint32(GEMMA3_SPECIAL_IDS.pad)],
    ['tokenizer.ggml.add_bos_token', gv.bool(true)],
    ['tokenizer.ggml.add_eos_token', gv.bool(false)],
    ['tokenizer.ggml.add_space_prefix', gv.bool(false)],
    ['tokenizer.chat_template', gv.string(GEMMA3_CHAT_TEMPLATE)],
  ]);
  if (o.slidingWindow > 0) {
    metadata.set(`${a}.attention.sliding_window`, gv.uint32(o.slidingWindow));
    metadata.set(`${a}.attention.sliding_window_pattern`, gv.uint32(o.slidingWindowPattern));
    metadata.set(`${a}.rope.freq_base_swa`, gv.float32(o.ropeFreqBaseSwa));
  }
  // Gemma scales token embeddings by sqrt(nEmbd): rows of RMS 1 after scaling. Tied, the same rows
  // make the logits: twice that, for logits of a few units.
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: (o.tiedEmbeddings ? 2 : 1) / Math.sqrt(o.nEmbd),
    tied: o.tiedEmbeddings,
    qDim: o.nHead * o.headDim,
    kvDim: o.nHeadKv * o.headDim,
    qkNorm: o.headDim,
    postNorms: true,
  });
  return { metadata, tensors, alignment: 32 };
}

export function tinyGemma3Buffer(options: TinyGemma3Options = {}): Uint8Array {
  return ggufToBuffer(tinyGemma3Spec(options));
}

/** Writes the tiny text model to `path`. Same options → byte-identical file. */
export async function writeTinyGemma3(
  path: string,
  options: TinyGemma3Options = {},
): Promise<void> {
  await writeGguf(path, tinyGemma3Spec(options));
}

/** File name of a tiny gemma3 text model fixture: every resolved option is part of it. */
export function tinyGemma3FixtureName(options: TinyGemma3Options = {}): string {
  const o = resolveTinyGemma3Options(options);
  return (
    `tiny-gemma3-s${o.seed}-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-hd${o.headDim}` +
    `-ff${o.nFf}-c${o.nCtx}-sw${o.slidingWindow}x${o.slidingWindowPattern}-r${o.ropeFreqBase}` +
    `_${o.ropeFreqBaseSwa}-eps${o.rmsEps}${o.tiedEmbeddings ? '-tied' : ''}` +
    `-${o.weightType.toLowerCase()}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny gemma3 text model with these options. */
export function tinyGemma3Fixture(options: TinyGemma3Options = {}): Promise<string> {
  return fixturePath(tinyGemma3FixtureName(options), (p) => writeTinyGemma3(p, options));
}

// ---- mmproj -----------------------------------------------------------------------------------

export interface TinyGemma3MmprojOptions extends TinyVitOptions {
  /** Square input side: libmtmd resizes every image to it (bilinear). Default 32. */
  imageSize?: number;
  /** Default 4 (an 8x8 patch grid at 32 px). */
  patchSize?: number;
  /**
   * Average-pooling kernel over the patch grid (`clip.vision.projector.scale_factor`): the image
   * gives (imageSize / patchSize / poolSize)^2 tokens. The key is written unless it is 4, the value
   * libmtmd assumes without it (real Gemma 3 files have no key). Default 2.
   */
  poolSize?: number;
  /** The text model's n_embd (width of mm.input_projection). Default 64. */
  projectionDim?: number;
  /**
   * Type of the matrices and the patch kernel. Default F16. Norms, biases and the position table
   * stay F32 (ggml's CPU add aborts on an F16 position table).
   */
  weightType?: 'F32' | 'F16';
}

export type ResolvedTinyGemma3MmprojOptions = Required<TinyGemma3MmprojOptions>;

/**
 * A Gemma-3-4B-shaped SigLIP (896 px, patch 14: 64x64 patches, width 1152, 16 heads, FFN 4304,
 * 4x4 pooling to 256 tokens, projection to 2560), random f16 weights. 27 blocks in the real model;
 * 2 here so one encode (4096 patches) takes about 6 s in libmtmd on two cores: pass `nLayers: 27`
 * for the full depth.
 */
export const REALISTIC_GEMMA3_SIGLIP: TinyGemma3MmprojOptions = {
  imageSize: 896,
  patchSize: 14,
  poolSize: 4,
  nEmbd: 1152,
  nHead: 16,
  nFf: 4304,
  nLayers: 2,
  projectionDim: 2560,
  weightType: 'F16',
  fastWeights: true,
  name: 'gemma3-siglip-896-random',
};

export function resolveTinyGemma3MmprojOptions(
  options: TinyGemma3MmprojOptions = {},
): ResolvedTinyGemma3MmprojOptions {
  const r: ResolvedTinyGemma3MmprojOptions = {
    ...resolveVit(options, {
      imageSize: 32,
      patchSize: 4,
      weightType: 'F16',
      name: (seed) => `tiny-mmproj-gemma3-s${seed}`,
    }),
    poolSize: positiveInt('poolSize', options.poolSize ?? 2),
    projectionDim: positiveInt('projectionDim', options.projectionDim ?? 64),
    fastWeights: options.fastWeights ?? false,
  };
  checkVitShape(r);
  if ((r.imageSize / r.patchSize) % r.poolSize !== 0) {
    throw new MmInvalidArgumentError(
      'poolSize',
      `must divide the patch grid side ${r.imageSize / r.patchSize}`,
    );
  }
  return r;
}

/** Image tokens of a gemma3 mmproj: (imageSize / patchSize / poolSize)^2, whatever the input size. */
export function gemma3ImageTokens(options: TinyGemma3MmprojOptions = {}): number {
  const o = resolveTinyGemma3MmprojOptions(options);
  return (o.imageSize / o.patchSize / o.poolSize) ** 2;
}

/**
 * The metadata and tensors of a tiny `gemma3` mmproj, deterministic in the options: a SigLIP ViT
 * (patch kernel with bias, learned position table of (imageSize / patchSize)^2 rows, LayerNorms and
 * q/k/v/out/FFN with biases, tanh-GELU via `clip.use_gelu`, `v.post_ln`), then average pooling,
 * `mm.soft_emb_norm.weight` (RMSNorm) and `mm.input_projection.weight`, stored transposed as ggml
 * [projectionDim, nEmbd] (libmtmd reads the output width from ne[0]).
 */
export function tinyGemma3MmprojSpec(options: TinyGemma3MmprojOptions = {}): GgufWriteSpec {
  const o = resolveTinyGemma3MmprojOptions(options);
  const E = o.nEmbd;
  const metadata = vitMetadata(o, { projectorType: 'gemma3', projectionDim: o.projectionDim });
  metadata.set('clip.use_gelu', gv.bool(true));
  if (o.poolSize !== 4) {
    metadata.set('clip.vision.projector.scale_factor', gv.uint32(o.poolSize));
  }

  const b = new TensorBuilder(o.seed, o.fastWeights);
  const grid = o.imageSize / o.patchSize;
  siglipTower(b, o, grid * grid);
  b.vector('mm.soft_emb_norm.weight', E, 0.1, 1);
  // Gemma's mm_input_projection_weight is a [vision, text] parameter, stored as is.
  b.add('mm.input_projection.weight', o.weightType, [o.projectionDim, E], 1 / Math.sqrt(E));
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyGemma3MmprojBuffer(options: TinyGemma3MmprojOptions = {}): Uint8Array {
  return ggufToBuffer(tinyGemma3MmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyGemma3Mmproj(
  path: string,
  options: TinyGemma3MmprojOptions = {},
): Promise<void> {
  await writeGguf(path, tinyGemma3MmprojSpec(options));
}

/** File name of a tiny gemma3 mmproj fixture: every resolved option is part of it. */
export function tinyGemma3MmprojFixtureName(options: TinyGemma3MmprojOptions = {}): string {
  const o = resolveTinyGemma3MmprojOptions(options);
  return (
    `mmproj-gemma3-s${o.seed}-i${o.imageSize}-p${o.patchSize}-pool${o.poolSize}-e${o.nEmbd}` +
    `-h${o.nHead}-ff${o.nFf}-l${o.nLayers}-d${o.projectionDim}-${o.weightType.toLowerCase()}` +
    `${o.fastWeights ? '-fast' : ''}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny gemma3 mmproj with these options. */
export function tinyGemma3MmprojFixture(options: TinyGemma3MmprojOptions = {}): Promise<string> {
  return fixturePath(tinyGemma3MmprojFixtureName(options), (p) =>
    writeTinyGemma3Mmproj(p, options),
  );
}

/**
 * A cached gemma3 mmproj and a matching tiny gemma3 text model (n_embd = projectionDim; for wide
 * projections the text model has 8 heads of 256 and one layer, F16). `text` overrides its options.
 */
export async function tinyGemma3Pair(
  options: TinyGemma3MmprojOptions = {},
  text: TinyGemma3Options = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyGemma3MmprojOptions(options);
  const D = o.projectionDim;
  const wide = D > 256;
  const textOptions: TinyGemma3Options = {
    seed: o.seed,
    nEmbd: D,
    ...(wide
      ? { nHead: 8, nHeadKv: 4, headDim: 256, nLayers: 1, nFf: 256, weightType: 'F16' as const }
      : {}),
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyGemma3MmprojFixture(options),
    tinyGemma3Fixture(textOptions),
  ]);
  return { mmproj, llm, nEmbd: D };
}

/**
 * Writes (once) a large gemma3 mmproj and its text model, by default REALISTIC_GEMMA3_SIGLIP, into
 * the benchmark cache outside the repo (`benchDir()`).
 */
export async function benchGemma3Pair(
  options: TinyGemma3MmprojOptions = REALISTIC_GEMMA3_SIGLIP,
): Promise<TinyMmprojPair> {
  return inBenchDir(() => tinyGemma3Pair(options));
}

/** Test image sizes for gemma3 (all resized to imageSize): square, wide and tall. */
export const GEMMA3_TEST_IMAGE_SIZES: readonly (readonly [number, number])[] = [
  [48, 48],
  [120, 40],
  [30, 90],
];
