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
import { CHATML_TEMPLATE } from './tiny-llama.js';
import {
  checkVitShape,
  resolveVit,
  siglipTower,
  type TinyVitOptions,
  vitMetadata,
} from './vit-spec.js';
import { checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

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

export interface TinyMinicpmTextOptions extends TinyTextModelOptions {
  /** Default 'qwen2' (MiniCPM-V 2.6). */
  arch?: MinicpmTextArch;
  /** Default 256: the resampler's width (a multiple of its 128-wide heads). */
  nEmbd?: number;
  /** Default 512. */
  nFf?: number;
  /** Default 1e6 (qwen2) / 5e5 (llama). */
  ropeFreqBase?: number;
  /** Default 1e-6 (qwen2) / 1e-5 (llama). */
  rmsEps?: number;
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
  const r: ResolvedTinyMinicpmTextOptions = {
    arch,
    ...resolveTextModel(opts, {
      nEmbd: 256,
      nFf: 512,
      name: (seed) => `tiny-minicpm-${arch}-s${seed}`,
    }),
    ropeFreqBase: opts.ropeFreqBase ?? (arch === 'qwen2' ? 1e6 : 5e5),
    rmsEps: opts.rmsEps ?? (arch === 'qwen2' ? 1e-6 : 1e-5),
    weightType: checkWeightType(opts.weightType ?? 'F32'),
  };
  if (r.nEmbd % r.nHead !== 0 || (r.nEmbd / r.nHead) % 2 !== 0) {
    throw new MmInvalidArgumentError(
      'nHead',
      `${r.nHead} must divide nEmbd ${r.nEmbd} into even heads`,
    );
  }
  checkTextModel(r, [r.ropeFreqBase, r.rmsEps]);
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
  const id = (t: string) => vocab.tokens.indexOf(t);
  const a = o.arch;
  const qwen = a === 'qwen2';
  const metadata = textModelMetadata(a, o, `MiniCPM ${a} text model`, vocab.tokens.length, [
    [`${a}.rope.freq_base`, gv.float32(o.ropeFreqBase)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(o.rmsEps)],
    ...bpeTokenizerKeys(qwen ? 'qwen2' : 'llama-bpe', vocab),
    ...(qwen
      ? qwenChatKeys(vocab, CHATML_TEMPLATE)
      : ([
          ['tokenizer.ggml.bos_token_id', gv.uint32(id('<|begin_of_text|>'))],
          ['tokenizer.ggml.eos_token_id', gv.uint32(id('<|end_of_text|>'))],
          ['tokenizer.ggml.eot_token_id', gv.uint32(id('<|eot_id|>'))],
          ['tokenizer.ggml.add_bos_token', gv.bool(true)],
          ['tokenizer.chat_template', gv.string(LLAMA3_CHAT_TEMPLATE)],
        ] as const)),
  ]);
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: 1,
    qkvBias: qwen,
    kvDim: (o.nEmbd / o.nHead) * o.nHeadKv,
  });
  return { metadata, tensors, alignment: 32 };
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

export interface TinyMinicpmvMmprojOptions extends TinyVitOptions {
  /** `clip.minicpmv_version`. Default 3 (MiniCPM-V 2.6). */
  version?: MinicpmvVersion;
  /** Leave `clip.minicpmv_version` out (libmtmd then takes version 2). Default false. */
  omitVersionKey?: boolean;
  /**
   * `clip.vision.image_size`: the slice size. A picture larger than it on either side is cut into
   * an overview and up to 9 slices of about imageSize^2 pixels. Default 64.
   */
  imageSize?: number;
  /** Default 8 (an 8x8 patch grid per imageSize square). Must divide imageSize. */
  patchSize?: number;
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
  const r: ResolvedTinyMinicpmvMmprojOptions = {
    version,
    omitVersionKey: options.omitVersionKey ?? false,
    ...resolveVit(options, {
      imageSize: 64,
      patchSize: 8,
      weightType: 'F16',
      name: (seed) => `tiny-mmproj-minicpmv${version}-s${seed}`,
    }),
    width: positiveInt('width', options.width ?? 256),
    nQueries: positiveInt(
      'nQueries',
      options.nQueries ?? (options.omitQueryKey ? minicpmvDefaultQueries(version) : 16),
    ),
    omitQueryKey: options.omitQueryKey ?? false,
    fastWeights: options.fastWeights ?? false,
  };
  if (r.omitVersionKey && r.version !== 2) {
    throw new MmInvalidArgumentError('omitVersionKey', 'without the key libmtmd takes version 2');
  }
  checkVitShape(r);
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
  const D = o.width;
  const w = o.weightType;
  const metadata = vitMetadata(o, {
    projectorType: 'resampler',
    kind: 'MiniCPM-V resampler mmproj',
    projectionDim: D,
  });
  metadata.set('clip.use_gelu', gv.bool(true));
  if (!o.omitVersionKey) metadata.set('clip.minicpmv_version', gv.int32(o.version));
  if (!o.omitQueryKey) metadata.set('clip.minicpmv_query_num', gv.uint32(o.nQueries));

  const b = new TensorBuilder(o.seed, o.fastWeights);
  siglipTower(b, o, MINICPMV_POS_TABLE_ROWS);

  // the resampler: queries of about unit RMS after ln_q, like the patch rows after ln_kv
  b.add('resampler.query', 'F32', [D, o.nQueries], 1);
  b.matrix('resampler.kv.weight', w, o.nEmbd, D);
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
