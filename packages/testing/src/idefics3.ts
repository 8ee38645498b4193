import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
import { bpeVocab, byteLevelChars, type TextVocab } from './text-vocab.js';
import { checkSeed, checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

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

export interface TinySmolLmOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Default 2. */
  nLayers?: number;
  /** Default 64: the width of the tiny mmproj's output. */
  nEmbd?: number;
  /** Default 4 (head dimension 16). */
  nHead?: number;
  /** Default 2. Must divide nHead. */
  nHeadKv?: number;
  /** Default 160. */
  nFf?: number;
  /** Default 4096. */
  nCtx?: number;
  /** Default 1e5 (SmolLM2's). */
  ropeFreqBase?: number;
  /** Default 1e-5. */
  rmsEps?: number;
  /** No `output.weight`: the logits use token_embd, as in SmolLM. Default false (varied text). */
  tiedEmbeddings?: boolean;
  /** Type of the 2-D weights; norms stay F32. Default F32. */
  weightType?: 'F32' | 'F16';
  /** general.name. Default `tiny-smollm-s<seed>`. */
  name?: string;
}

export type ResolvedTinySmolLmOptions = Required<TinySmolLmOptions>;

export function resolveTinySmolLmOptions(opts: TinySmolLmOptions = {}): ResolvedTinySmolLmOptions {
  const seed = checkSeed(opts.seed ?? 0);
  const nEmbd = positiveInt('nEmbd', opts.nEmbd ?? 64);
  const nHead = positiveInt('nHead', opts.nHead ?? 4);
  if (nEmbd % nHead !== 0 || (nEmbd / nHead) % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', `must divide nEmbd ${nEmbd} into even-sized heads`);
  }
  const r: ResolvedTinySmolLmOptions = {
    seed,
    nLayers: positiveInt('nLayers', opts.nLayers ?? 2),
    nEmbd,
    nHead,
    nHeadKv: positiveInt('nHeadKv', opts.nHeadKv ?? Math.min(2, nHead)),
    nFf: positiveInt('nFf', opts.nFf ?? 160),
    nCtx: positiveInt('nCtx', opts.nCtx ?? 4096),
    ropeFreqBase: opts.ropeFreqBase ?? 1e5,
    rmsEps: opts.rmsEps ?? 1e-5,
    tiedEmbeddings: opts.tiedEmbeddings ?? false,
    weightType: checkWeightType(opts.weightType ?? 'F32'),
    name: opts.name ?? `tiny-smollm-s${seed}`,
  };
  if (r.nHead % r.nHeadKv !== 0) {
    throw new MmInvalidArgumentError('nHeadKv', `${r.nHeadKv} does not divide nHead ${r.nHead}`);
  }
  if (!(r.ropeFreqBase > 0) || !(r.rmsEps > 0)) {
    throw new MmInvalidArgumentError('ropeFreqBase/rmsEps', 'must be > 0');
  }
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
  const nVocab = vocab.tokens.length;
  const ids = tinySmolLmSpecialIds();
  const headDim = o.nEmbd / o.nHead;
  const nEmbdKv = headDim * o.nHeadKv;
  const a = 'llama';
  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string(a)],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random SmolLM-style text model (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(o.weightType === 'F16' ? 1 : 0)],
    ['general.alignment', gv.uint32(32)],
    [`${a}.vocab_size`, gv.uint32(nVocab)],
    [`${a}.context_length`, gv.uint32(o.nCtx)],
    [`${a}.embedding_length`, gv.uint32(o.nEmbd)],
    [`${a}.block_count`, gv.uint32(o.nLayers)],
    [`${a}.feed_forward_length`, gv.uint32(o.nFf)],
    [`${a}.attention.head_count`, gv.uint32(o.nHead)],
    [`${a}.attention.head_count_kv`, gv.uint32(o.nHeadKv)],
    [`${a}.rope.dimension_count`, gv.uint32(headDim)],
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    ['tokenizer.ggml.model', gv.string('gpt2')],
    ['tokenizer.ggml.pre', gv.string('smollm')],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.merges', gv.array('string', vocab.merges ?? [])],
    ['tokenizer.ggml.bos_token_id', gv.uint32(ids['<|im_start|>'] as number)],
    ['tokenizer.ggml.eos_token_id', gv.uint32(ids['<end_of_utterance>'] as number)],
    ['tokenizer.ggml.unknown_token_id', gv.uint32(ids['<|endoftext|>'] as number)],
    ['tokenizer.ggml.padding_token_id', gv.uint32(ids['<|im_end|>'] as number)],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)],
    ['tokenizer.chat_template', gv.string(SMOLVLM_CHAT_TEMPLATE)],
  ]);

  const w = o.weightType;
  const b = new TensorBuilder(o.seed);
  b.add('token_embd.weight', w, [o.nEmbd, nVocab], o.tiedEmbeddings ? 2 / Math.sqrt(o.nEmbd) : 1);
  for (let l = 0; l < o.nLayers; l++) {
    const p = `blk.${l}`;
    b.norm(`${p}.attn_norm`, o.nEmbd, false);
    b.matrix(`${p}.attn_q.weight`, w, o.nEmbd, o.nEmbd);
    b.matrix(`${p}.attn_k.weight`, w, o.nEmbd, nEmbdKv);
    b.matrix(`${p}.attn_v.weight`, w, o.nEmbd, nEmbdKv);
    b.matrix(`${p}.attn_output.weight`, w, o.nEmbd, o.nEmbd);
    b.norm(`${p}.ffn_norm`, o.nEmbd, false);
    b.matrix(`${p}.ffn_gate.weight`, w, o.nEmbd, o.nFf);
    b.matrix(`${p}.ffn_up.weight`, w, o.nEmbd, o.nFf);
    b.matrix(`${p}.ffn_down.weight`, w, o.nFf, o.nEmbd);
  }
  b.norm('output_norm', o.nEmbd, false);
  // Logits with a spread of a few units: greedy decoding is neither uniform nor stuck.
  if (!o.tiedEmbeddings) b.matrix('output.weight', w, o.nEmbd, nVocab, 2);
  b.scaleRows(o.tiedEmbeddings ? 'token_embd.weight' : 'output.weight', vocab.quiet, 0.01);
  return { metadata, tensors: b.tensors, alignment: 32 };
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

export interface TinyIdefics3MmprojOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
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
  /** Width of the ViT. Default 32. */
  nEmbd?: number;
  /** Default 2. */
  nHead?: number;
  /** Default 48 (must differ from nEmbd: libmtmd swaps ffn_up/ffn_down when ffn_down.ne[0] == nEmbd). */
  nFf?: number;
  /** Default 2. */
  nLayers?: number;
  /** The text model's n_embd (the rows of mm.model.fc). Default 64. */
  projectionDim?: number;
  /** Type of the matrices and the patch kernel. Default F16; norms, biases, positions stay F32. */
  weightType?: 'F32' | 'F16';
  /** Uniform weights, one PRNG draw each (large benchmark shapes). Default false. */
  fastWeights?: boolean;
  name?: string;
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
  const seed = checkSeed(options.seed ?? 0);
  const r: ResolvedTinyIdefics3MmprojOptions = {
    seed,
    imageSize: positiveInt('imageSize', options.imageSize ?? 32),
    patchSize: positiveInt('patchSize', options.patchSize ?? 4),
    scaleFactor: positiveInt('scaleFactor', options.scaleFactor ?? 2),
    longestEdge: options.longestEdge ?? 96,
    nEmbd: positiveInt('nEmbd', options.nEmbd ?? 32),
    nHead: positiveInt('nHead', options.nHead ?? 2),
    nFf: positiveInt('nFf', options.nFf ?? 48),
    nLayers: positiveInt('nLayers', options.nLayers ?? 2),
    projectionDim: positiveInt('projectionDim', options.projectionDim ?? 64),
    weightType: checkWeightType(options.weightType ?? 'F16'),
    fastWeights: options.fastWeights ?? false,
    name: options.name ?? `tiny-mmproj-idefics3-s${seed}`,
  };
  if (!Number.isSafeInteger(r.longestEdge) || r.longestEdge < 0) {
    throw new MmInvalidArgumentError(
      'longestEdge',
      `must be an integer >= 0, got ${r.longestEdge}`,
    );
  }
  if (r.imageSize % r.patchSize !== 0) {
    throw new MmInvalidArgumentError('patchSize', `must divide imageSize ${r.imageSize}`);
  }
  if (r.nEmbd % r.nHead !== 0) {
    throw new MmInvalidArgumentError('nHead', `${r.nHead} does not divide nEmbd ${r.nEmbd}`);
  }
  if (r.nFf === r.nEmbd) {
    throw new MmInvalidArgumentError('nFf', 'must differ from nEmbd (libmtmd would swap the FFN)');
  }
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
  const E = o.nEmbd;
  const w = o.weightType;
  const grid = o.imageSize / o.patchSize;
  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random idefics3 mmproj (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(w === 'F16' ? 1 : 0)],
    ['clip.has_vision_encoder', gv.bool(true)],
    ['clip.projector_type', gv.string('idefics3')],
    ['clip.vision.image_size', gv.uint32(o.imageSize)],
    ['clip.vision.patch_size', gv.uint32(o.patchSize)],
    ['clip.vision.embedding_length', gv.uint32(E)],
    ['clip.vision.feed_forward_length', gv.uint32(o.nFf)],
    ['clip.vision.projection_dim', gv.uint32(o.projectionDim)],
    ['clip.vision.attention.head_count', gv.uint32(o.nHead)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(1e-6)],
    ['clip.vision.block_count', gv.uint32(o.nLayers)],
    ['clip.vision.image_mean', gv.array('float32', new Float32Array([0.5, 0.5, 0.5]))],
    ['clip.vision.image_std', gv.array('float32', new Float32Array([0.5, 0.5, 0.5]))],
    ['clip.vision.projector.scale_factor', gv.uint32(o.scaleFactor)],
    ['clip.use_gelu', gv.bool(true)],
  ]);
  if (o.longestEdge > 0) {
    metadata.set('clip.vision.preproc_image_size', gv.uint32(o.longestEdge));
  }

  const b = new TensorBuilder(o.seed, o.fastWeights);
  b.add(
    'v.patch_embd.weight',
    w,
    [o.patchSize, o.patchSize, 3, E],
    1 / Math.sqrt(3 * o.patchSize ** 2),
  );
  b.vector('v.patch_embd.bias', E, 0.02);
  // F32 whatever weightType: siglip adds the table straight to the F32 patch rows
  b.add('v.position_embd.weight', 'F32', [E, grid * grid], 0.1);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `v.blk.${il}`;
    b.norm(`${p}.ln1`, E, true);
    for (const part of ['attn_q', 'attn_k', 'attn_v', 'attn_out'])
      b.linear(`${p}.${part}`, w, E, E);
    b.norm(`${p}.ln2`, E, true);
    b.linear(`${p}.ffn_up`, w, E, o.nFf);
    b.linear(`${p}.ffn_down`, w, o.nFf, E);
  }
  b.norm('v.post_ln', E, true);
  b.matrix('mm.model.fc.weight', w, E * o.scaleFactor ** 2, o.projectionDim);
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
