import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath } from './fixtures.js';
import type { TinyMmprojPair } from './mmproj.js';
import { bpeVocab, type TextVocab } from './text-vocab.js';
import { CHATML_TEMPLATE } from './tiny-llama.js';
import { checkSeed, checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random MiniCPM-V fixtures that llama.cpp and libmtmd (pinned 80fb11ac) load: mmproj files
 * of projector type `resampler` (a SigLIP-style ViT with MiniCPM-V's bucketed 70x70 position
 * table, then the cross-attention resampler: learned queries, kv projection, LayerNorms, heads of
 * 128, output projection), one per `clip.minicpmv_version`, and text models of the architecture
 * each version's LLM has in llama.cpp: `llama` with a Llama-3 byte-level BPE vocabulary and chat
 * template for MiniCPM-V 2.5 (version 2), `qwen2` with ChatML for 2.6 and later. Both vocabularies
 * hold libmtmd's slice markers `<image>`, `</image>`, `<slice>`, `</slice>` and the newline byte.
 */

// ---- text model -----------------------------------------------------------------------------

/** The versions libmtmd knows (mtmd.cpp): 2 is MiniCPM-V 2.5, 3 is 2.6, 4 MiniCPM-o 2.6, 5 V 4.0, 6 V 4.5, 100045 o 4.5. */
export type MinicpmvVersion = 2 | 3 | 4 | 5 | 6 | 100045;
export const MINICPMV_VERSIONS: readonly MinicpmvVersion[] = [2, 3, 4, 5, 6, 100045];

/** libmtmd's query count when the file has no `clip.minicpmv_query_num`: 96 for 2.5, 64 after. */
export function minicpmvDefaultQueries(version: MinicpmvVersion): number {
  return version === 2 ? 96 : 64;
}

/** The markers libmtmd looks up around MiniCPM-V's overview and slices. */
export const MINICPMV_MARKERS = ['<image>', '</image>', '<slice>', '</slice>'] as const;

/** Llama 3 instruct's chat template (MiniCPM-Llama3-V 2.5 uses it). */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

export type MinicpmTextArch = 'llama' | 'qwen2';

const SPECIALS: Record<MinicpmTextArch, readonly string[]> = {
  llama: [
    '<|begin_of_text|>',
    '<|end_of_text|>',
    '<|start_header_id|>',
    '<|end_header_id|>',
    '<|eot_id|>',
    ...MINICPMV_MARKERS,
  ],
  qwen2: ['<|endoftext|>', '<|im_start|>', '<|im_end|>', ...MINICPMV_MARKERS],
};

/** The byte-level BPE vocabulary of a tiny MiniCPM text model. */
export function tinyMinicpmVocab(arch: MinicpmTextArch): TextVocab {
  return bpeVocab(SPECIALS[arch]);
}

/** The text architecture of a version's LLM in llama.cpp: Llama 3 for 2.5, Qwen2 otherwise. */
export function minicpmvTextArch(version: MinicpmvVersion): MinicpmTextArch {
  return version === 2 ? 'llama' : 'qwen2';
}

export interface TinyMinicpmTextOptions {
  /** Default 'qwen2' (MiniCPM-V 2.6). */
  arch?: MinicpmTextArch;
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Default 2. */
  nLayers?: number;
  /** Default 256: the resampler's width (a multiple of its 128-wide heads). */
  nEmbd?: number;
  /** Default 4. */
  nHead?: number;
  /** Default 2. Must divide nHead. */
  nHeadKv?: number;
  /** Default 512. */
  nFf?: number;
  /** Default 4096. */
  nCtx?: number;
  /** Default 1e6 (qwen2) / 5e5 (llama). */
  ropeFreqBase?: number;
  /** Default 1e-6 (qwen2) / 1e-5 (llama). */
  rmsEps?: number;
  /** Type of the 2-D weights; norms and biases stay F32. Default F32. */
  weightType?: 'F32' | 'F16';
  /** general.name. Default `tiny-minicpm-<arch>-s<seed>`. */
  name?: string;
}

export type ResolvedTinyMinicpmTextOptions = Required<TinyMinicpmTextOptions>;

export function resolveTinyMinicpmTextOptions(
  opts: TinyMinicpmTextOptions = {},
): ResolvedTinyMinicpmTextOptions {
  const arch = opts.arch ?? 'qwen2';
  if (arch !== 'llama' && arch !== 'qwen2') {
    throw new MmInvalidArgumentError('arch', `must be 'llama' or 'qwen2', got ${String(arch)}`);
  }
  const seed = checkSeed(opts.seed ?? 0);
  const nEmbd = positiveInt('nEmbd', opts.nEmbd ?? 256);
  const nHead = positiveInt('nHead', opts.nHead ?? 4);
  if (nEmbd % nHead !== 0 || (nEmbd / nHead) % 2 !== 0) {
    throw new MmInvalidArgumentError(
      'nHead',
      `${nHead} must divide nEmbd ${nEmbd} into even heads`,
    );
  }
  const r: ResolvedTinyMinicpmTextOptions = {
    arch,
    seed,
    nLayers: positiveInt('nLayers', opts.nLayers ?? 2),
    nEmbd,
    nHead,
    nHeadKv: positiveInt('nHeadKv', opts.nHeadKv ?? Math.min(2, nHead)),
    nFf: positiveInt('nFf', opts.nFf ?? 512),
    nCtx: positiveInt('nCtx', opts.nCtx ?? 4096),
    ropeFreqBase: opts.ropeFreqBase ?? (arch === 'qwen2' ? 1e6 : 5e5),
    rmsEps: opts.rmsEps ?? (arch === 'qwen2' ? 1e-6 : 1e-5),
    weightType: checkWeightType(opts.weightType ?? 'F32'),
    name: opts.name ?? `tiny-minicpm-${arch}-s${seed}`,
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
 * The metadata and tensors of a tiny MiniCPM text model, deterministic in the options: `qwen2`
 * (attention biases, ChatML, `<|im_end|>` ends a turn, no BOS) or `llama` (no biases, Llama-3
 * template and specials, `llama-bpe` pre-tokenizer, BOS added). Logits of control tokens and
 * non-text bytes are near zero, so greedy generation prints text and runs to the token limit.
 */
export function tinyMinicpmTextSpec(options: TinyMinicpmTextOptions = {}): GgufWriteSpec {
  const o = resolveTinyMinicpmTextOptions(options);
  const vocab = tinyMinicpmVocab(o.arch);
  const nVocab = vocab.tokens.length;
  const id = (t: string) => vocab.tokens.indexOf(t);
  const headDim = o.nEmbd / o.nHead;
  const nEmbdKv = headDim * o.nHeadKv;
  const a = o.arch;
  const qwen = a === 'qwen2';
  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string(a)],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random MiniCPM ${a} text model (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
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
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    ['tokenizer.ggml.model', gv.string('gpt2')],
    ['tokenizer.ggml.pre', gv.string(qwen ? 'qwen2' : 'llama-bpe')],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.merges', gv.array('string', vocab.merges ?? [])],
  ]);
  if (qwen) {
    metadata.set('tokenizer.ggml.eos_token_id', gv.uint32(id('<|im_end|>')));
    metadata.set('tokenizer.ggml.padding_token_id', gv.uint32(id('<|endoftext|>')));
    metadata.set('tokenizer.ggml.bos_token_id', gv.uint32(id('<|endoftext|>')));
    metadata.set('tokenizer.ggml.add_bos_token', gv.bool(false));
    metadata.set('tokenizer.chat_template', gv.string(CHATML_TEMPLATE));
  } else {
    metadata.set('tokenizer.ggml.bos_token_id', gv.uint32(id('<|begin_of_text|>')));
    metadata.set('tokenizer.ggml.eos_token_id', gv.uint32(id('<|end_of_text|>')));
    metadata.set('tokenizer.ggml.eot_token_id', gv.uint32(id('<|eot_id|>')));
    metadata.set('tokenizer.ggml.add_bos_token', gv.bool(true));
    metadata.set('tokenizer.chat_template', gv.string(LLAMA3_CHAT_TEMPLATE));
  }

  const w = o.weightType;
  const E = o.nEmbd;
  const b = new TensorBuilder(o.seed);
  b.add('token_embd.weight', w, [E, nVocab], 1);
  for (let l = 0; l < o.nLayers; l++) {
    const p = `blk.${l}`;
    b.norm(`${p}.attn_norm`, E, false);
    const proj = (name: string, nOut: number) =>
      qwen ? b.linear(`${p}.${name}`, w, E, nOut) : b.matrix(`${p}.${name}.weight`, w, E, nOut);
    proj('attn_q', E);
    proj('attn_k', nEmbdKv);
    proj('attn_v', nEmbdKv);
    b.matrix(`${p}.attn_output.weight`, w, E, E);
    b.norm(`${p}.ffn_norm`, E, false);
    b.matrix(`${p}.ffn_gate.weight`, w, E, o.nFf);
    b.matrix(`${p}.ffn_up.weight`, w, E, o.nFf);
    b.matrix(`${p}.ffn_down.weight`, w, o.nFf, E);
  }
  b.norm('output_norm', E, false);
  // Logits with a spread of a few units: greedy decoding is neither uniform nor stuck.
  b.matrix('output.weight', w, E, nVocab, 2);
  b.scaleRows('output.weight', vocab.quiet, 0.01);
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyMinicpmTextBuffer(options: TinyMinicpmTextOptions = {}): Uint8Array {
  return ggufToBuffer(tinyMinicpmTextSpec(options));
}

/** Writes the tiny text model to `path`. Same options → byte-identical file. */
export async function writeTinyMinicpmText(
  path: string,
  options: TinyMinicpmTextOptions = {},
): Promise<void> {
  await writeGguf(path, tinyMinicpmTextSpec(options));
}

/** File name of a tiny MiniCPM text model fixture: every resolved option is part of it. */
export function tinyMinicpmTextFixtureName(options: TinyMinicpmTextOptions = {}): string {
  const o = resolveTinyMinicpmTextOptions(options);
  return (
    `tiny-minicpm-${o.arch}-s${o.seed}-l${o.nLayers}-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}` +
    `-ff${o.nFf}-c${o.nCtx}-r${o.ropeFreqBase}-eps${o.rmsEps}-${o.weightType.toLowerCase()}` +
    `-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny MiniCPM text model with these options. */
export function tinyMinicpmTextFixture(options: TinyMinicpmTextOptions = {}): Promise<string> {
  return fixturePath(tinyMinicpmTextFixtureName(options), (p) => writeTinyMinicpmText(p, options));
}

// ---- mmproj -----------------------------------------------------------------------------------

/** MiniCPM-V's position table: 70 x 70 buckets (libmtmd hard-codes the side). */
export const MINICPMV_POS_TABLE_ROWS = 70 * 70;

export interface TinyMinicpmvMmprojOptions {
  /** `clip.minicpmv_version`. Default 3 (MiniCPM-V 2.6). */
  version?: MinicpmvVersion;
  /** Leave `clip.minicpmv_version` out (libmtmd then takes version 2). Default false. */
  omitVersionKey?: boolean;
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /**
   * `clip.vision.image_size`: the slice size. A picture larger than it on either side is cut into
   * an overview and up to 9 slices of about imageSize^2 pixels. Default 64.
   */
  imageSize?: number;
  /** Default 8 (an 8x8 patch grid per imageSize square). Must divide imageSize. */
  patchSize?: number;
  /** Width of the ViT. Default 32. */
  nEmbd?: number;
  /** Default 2. */
  nHead?: number;
  /** Default 48 (must differ from nEmbd: libmtmd swaps ffn_up/ffn_down when ffn_down.ne[0] == nEmbd). */
  nFf?: number;
  /** Default 2. */
  nLayers?: number;
  /** The resampler's width = the text model's n_embd: a multiple of 128 (its head size). Default 256. */
  width?: number;
  /** Learned queries: the tokens of every overview and slice. Default 16. */
  nQueries?: number;
  /**
   * Leave `clip.minicpmv_query_num` out, as older conversions do: libmtmd then takes its version
   * default (minicpmvDefaultQueries), which nQueries must equal. Default false.
   */
  omitQueryKey?: boolean;
  /** Type of the matrices and the patch kernel. Default F16. Norms, biases, queries and the position table stay F32. */
  weightType?: 'F32' | 'F16';
  /** Uniform weights, one PRNG draw each (large benchmark shapes). Default false. */
  fastWeights?: boolean;
  name?: string;
}

export type ResolvedTinyMinicpmvMmprojOptions = Required<TinyMinicpmvMmprojOptions>;

export function resolveTinyMinicpmvMmprojOptions(
  options: TinyMinicpmvMmprojOptions = {},
): ResolvedTinyMinicpmvMmprojOptions {
  const version = options.version ?? 3;
  if (!MINICPMV_VERSIONS.includes(version)) {
    throw new MmInvalidArgumentError(
      'version',
      `must be one of ${MINICPMV_VERSIONS.join(', ')}, got ${String(version)}`,
    );
  }
  const seed = checkSeed(options.seed ?? 0);
  const r: ResolvedTinyMinicpmvMmprojOptions = {
    version,
    omitVersionKey: options.omitVersionKey ?? false,
    seed,
    imageSize: positiveInt('imageSize', options.imageSize ?? 64),
    patchSize: positiveInt('patchSize', options.patchSize ?? 8),
    nEmbd: positiveInt('nEmbd', options.nEmbd ?? 32),
    nHead: positiveInt('nHead', options.nHead ?? 2),
    nFf: positiveInt('nFf', options.nFf ?? 48),
    nLayers: positiveInt('nLayers', options.nLayers ?? 2),
    width: positiveInt('width', options.width ?? 256),
    nQueries: positiveInt(
      'nQueries',
      options.nQueries ?? (options.omitQueryKey ? minicpmvDefaultQueries(version) : 16),
    ),
    omitQueryKey: options.omitQueryKey ?? false,
    weightType: checkWeightType(options.weightType ?? 'F16'),
    fastWeights: options.fastWeights ?? false,
    name: options.name ?? `tiny-mmproj-minicpmv${version}-s${seed}`,
  };
  if (r.omitVersionKey && r.version !== 2) {
    throw new MmInvalidArgumentError('omitVersionKey', 'without the key libmtmd takes version 2');
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
  if (r.width % 128 !== 0) {
    throw new MmInvalidArgumentError('width', `must be a multiple of 128, got ${r.width}`);
  }
  if (r.omitQueryKey && r.nQueries !== minicpmvDefaultQueries(r.version)) {
    throw new MmInvalidArgumentError(
      'nQueries',
      `without clip.minicpmv_query_num libmtmd takes ${minicpmvDefaultQueries(r.version)}`,
    );
  }
  return r;
}

/**
 * The metadata and tensors of a tiny `resampler` mmproj, deterministic in the options: the ViT
 * (patch kernel with bias, a 4900-row F32 position table, LayerNorms and q/k/v/out/FFN with biases,
 * tanh-GELU via `clip.use_gelu`, `v.post_ln`) and the resampler (`resampler.query` [width,
 * nQueries], `resampler.kv.weight` [nEmbd, width], attention q/k/v/out, ln_q/ln_kv/ln_post,
 * `resampler.proj.weight` [width, width], and the `resampler.pos_embed_k` libmtmd requires but
 * does not use).
 */
export function tinyMinicpmvMmprojSpec(options: TinyMinicpmvMmprojOptions = {}): GgufWriteSpec {
  const o = resolveTinyMinicpmvMmprojOptions(options);
  const E = o.nEmbd;
  const D = o.width;
  const w = o.weightType;
  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(
        `tiny random MiniCPM-V resampler mmproj (@mm/testing v${FIXTURE_GENERATOR_VERSION})`,
      ),
    ],
    ['general.file_type', gv.uint32(w === 'F16' ? 1 : 0)],
    ['clip.has_vision_encoder', gv.bool(true)],
    ['clip.projector_type', gv.string('resampler')],
    ['clip.vision.image_size', gv.uint32(o.imageSize)],
    ['clip.vision.patch_size', gv.uint32(o.patchSize)],
    ['clip.vision.embedding_length', gv.uint32(E)],
    ['clip.vision.feed_forward_length', gv.uint32(o.nFf)],
    ['clip.vision.projection_dim', gv.uint32(D)],
    ['clip.vision.attention.head_count', gv.uint32(o.nHead)],
    ['clip.vision.attention.layer_norm_epsilon', gv.float32(1e-6)],
    ['clip.vision.block_count', gv.uint32(o.nLayers)],
    ['clip.vision.image_mean', gv.array('float32', new Float32Array([0.5, 0.5, 0.5]))],
    ['clip.vision.image_std', gv.array('float32', new Float32Array([0.5, 0.5, 0.5]))],
    ['clip.use_gelu', gv.bool(true)],
  ]);
  if (!o.omitVersionKey) metadata.set('clip.minicpmv_version', gv.int32(o.version));
  if (!o.omitQueryKey) metadata.set('clip.minicpmv_query_num', gv.uint32(o.nQueries));

  const b = new TensorBuilder(o.seed, o.fastWeights);
  b.add(
    'v.patch_embd.weight',
    w,
    [o.patchSize, o.patchSize, 3, E],
    1 / Math.sqrt(3 * o.patchSize ** 2),
  );
  b.vector('v.patch_embd.bias', E, 0.02);
  // F32: added straight to the F32 patch rows (ggml's CPU add aborts on an F16 second operand)
  b.add('v.position_embd.weight', 'F32', [E, MINICPMV_POS_TABLE_ROWS], 0.1);
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

  // the resampler: queries of about unit RMS after ln_q, like the patch rows after ln_kv
  b.add('resampler.query', 'F32', [D, o.nQueries], 1);
  b.matrix('resampler.kv.weight', w, E, D);
  for (const part of ['q', 'k', 'v', 'out']) b.linear(`resampler.attn.${part}`, w, D, D);
  for (const part of ['q', 'kv', 'post']) b.norm(`resampler.ln_${part}`, D, true);
  b.matrix('resampler.proj.weight', w, D, D);
  b.add('resampler.pos_embed_k', 'F32', [D, 16], 0.1);
  return { metadata, tensors: b.tensors, alignment: 32 };
}

export function tinyMinicpmvMmprojBuffer(options: TinyMinicpmvMmprojOptions = {}): Uint8Array {
  return ggufToBuffer(tinyMinicpmvMmprojSpec(options));
}

/** Writes the tiny mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyMinicpmvMmproj(
  path: string,
  options: TinyMinicpmvMmprojOptions = {},
): Promise<void> {
  await writeGguf(path, tinyMinicpmvMmprojSpec(options));
}

/** File name of a tiny resampler mmproj fixture: every resolved option is part of it. */
export function tinyMinicpmvMmprojFixtureName(options: TinyMinicpmvMmprojOptions = {}): string {
  const o = resolveTinyMinicpmvMmprojOptions(options);
  return (
    `mmproj-resampler-v${o.version}${o.omitVersionKey ? 'nokey' : ''}-s${o.seed}-i${o.imageSize}` +
    `-p${o.patchSize}-e${o.nEmbd}-h${o.nHead}-ff${o.nFf}-l${o.nLayers}-d${o.width}` +
    `-q${o.nQueries}${o.omitQueryKey ? 'nokey' : ''}-${o.weightType.toLowerCase()}` +
    `${o.fastWeights ? '-fast' : ''}-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny resampler mmproj with these options. */
export function tinyMinicpmvMmprojFixture(
  options: TinyMinicpmvMmprojOptions = {},
): Promise<string> {
  return fixturePath(tinyMinicpmvMmprojFixtureName(options), (p) =>
    writeTinyMinicpmvMmproj(p, options),
  );
}

/**
 * A MiniCPM-V-2.6-shaped mmproj (SigLIP-400M: 448-px slices of 14-px patches, width 1152, 16
 * heads, FFN 4304; a 3584-wide resampler with 64 queries, Qwen2-7B's width), random f16 weights.
 * 27 blocks in the real model; 2 here, as the resampler's 3584-wide attention already costs more
 * than two blocks per slice: pass `nLayers: 27` for the full depth.
 */
export const REALISTIC_MINICPMV26: TinyMinicpmvMmprojOptions = {
  version: 3,
  imageSize: 448,
  patchSize: 14,
  nEmbd: 1152,
  nHead: 16,
  nFf: 4304,
  nLayers: 2,
  width: 3584,
  nQueries: 64,
  weightType: 'F16',
  fastWeights: true,
  name: 'minicpmv26-random',
};

/**
 * A cached resampler mmproj and a matching tiny text model of the version's LLM architecture
 * (n_embd = width; `llama` for version 2, `qwen2` otherwise; for wide resamplers one F16 layer of
 * 128-wide heads). `text` overrides its options.
 */
export async function tinyMinicpmvPair(
  options: TinyMinicpmvMmprojOptions = {},
  text: TinyMinicpmTextOptions = {},
): Promise<TinyMmprojPair> {
  const o = resolveTinyMinicpmvMmprojOptions(options);
  const wide = o.width > 256;
  const textOptions: TinyMinicpmTextOptions = {
    arch: minicpmvTextArch(o.version),
    seed: o.seed,
    nEmbd: o.width,
    ...(wide
      ? { nHead: o.width / 128, nHeadKv: 1, nLayers: 1, nFf: 256, weightType: 'F16' as const }
      : {}),
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyMinicpmvMmprojFixture(options),
    tinyMinicpmTextFixture(textOptions),
  ]);
  return { mmproj, llm, nEmbd: o.width };
}

/**
 * Writes (once) a large resampler mmproj and its text model, by default REALISTIC_MINICPMV26, into
 * the benchmark cache outside the repo (`benchDir()`).
 */
export async function benchMinicpmvPair(
  options: TinyMinicpmvMmprojOptions = REALISTIC_MINICPMV26,
): Promise<TinyMmprojPair> {
  return inBenchDir(() => tinyMinicpmvPair(options));
}

/**
 * Test picture sizes for the default 64-px slices, with libmtmd's cut of each: one that fits a
 * slice (the overview alone), one cut into 2 slices, one into a 3x3 grid and a tall one.
 */
export const MINICPMV_TEST_IMAGE_SIZES: readonly (readonly [number, number])[] = [
  [40, 30],
  [100, 60],
  [200, 150],
  [50, 180],
];
