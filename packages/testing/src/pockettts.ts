import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufWriteSpec, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath } from './fixtures.js';
import { Prng } from './prng.js';
import { TokenType } from './tiny-llama.js';
import { checkSeed, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * A tiny random Pocket TTS pair, written the way llama.cpp's converter (conversion/pockettts.py)
 * writes the real one and libllama / libmtmd (pinned) load it:
 *
 * - the backbone (`general.architecture = pockettts`): a LayerNorm transformer (norms with biases,
 *   q/k/v/out without, GELU FFN up/down without biases), `output_norm` with a bias and no output
 *   head; a unigram SentencePiece vocabulary (`tokenizer.ggml.model = t5`, llama.cpp's UGM) whose
 *   last rows are `<|pad|>`, `<|bos_before_voice|>` (optional) and `<|audio_bos|>`, CONTROL tokens
 *   whose embedding rows are learned vectors (the audio BOS row is `input_linear · bos_emb`, as the
 *   converter folds it).
 * - the mmproj: `clip.audio.projector_type = pockettts_spkenc` (the voice encoder: the Mimi SEANet
 *   encoder, its transformer `a.blk.*`, the stride-16 downsample, `a.speaker_proj`) and
 *   `clip.gen.audio.projector_type = pockettts_gen` (the flow-matching head `a.gen.flow.*` with its
 *   two time embedders and AdaLN blocks, the end-of-speech head `a.gen.out_eos`, `a.gen.input_linear`,
 *   the latent statistics, and the Mimi decoder: `a.gen.wav.quant_out`, the depthwise stride-16
 *   upsample, the decoder transformer `a.gen.wav.tfm.blk.*`, the SEANet decoder
 *   `a.gen.wav.seanet.*`). SEANet kernels and the up/downsample are F16, as the converter forces.
 *
 * libmtmd hard-codes the SEANet ratios (4, 5, 6 in encoder order), the stride-16 resampling, the
 * 250-frame transformer window, 24 kHz and one flow step: the shapes here follow them, with widths
 * cut down (SEANet filters 4, so the Mimi width is 32). One latent frame is 1920 samples (80 ms);
 * the decoder transformer's window spans 250 / 16 = 15.6 frames, so two 8-frame windows already
 * push frames out of it.
 */

/** 24 kHz, hard-coded by libmtmd for Pocket TTS. */
export const POCKETTTS_SAMPLE_RATE = 24000;
/** SEANet strides in encoder order (libmtmd's `seanet_ratios`); the decoder walks them backwards. */
export const POCKETTTS_SEANET_RATIOS = [4, 5, 6] as const;
/** Encoder frames per latent frame (`mimi_downsample`). */
export const POCKETTTS_DOWNSAMPLE = 16;
/** PCM samples per latent frame: 4 * 5 * 6 * 16. */
export const POCKETTTS_SAMPLES_PER_FRAME = 1920;
/** The window of the Mimi transformers, in encoder frames (`mimi_tfm_context`). */
export const POCKETTTS_TFM_CONTEXT = 250;
/** The variants (pack names) mtmd-helper-gen.cpp has tuned settings for. */
export const POCKETTTS_VARIANTS = [
  'english',
  'english_2026-01',
  'english_2026-04',
  'french_24l',
] as const;

export interface TinyPocketTtsOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Backbone width (the mmproj's projection width). Default 32. */
  nEmbd?: number;
  /** Backbone heads. Default 2 (head width 16). */
  nHead?: number;
  /** Backbone blocks. Default 2. */
  nLayers?: number;
  /** Backbone FFN width. Default 64. */
  nFf?: number;
  /** Backbone context_length. Default 512. */
  nCtx?: number;
  /** Width of the latents (the real model's 32). Default 8. */
  latentDim?: number;
  /** Width of the flow net (its model_channels). Default 16. */
  flowDim?: number;
  /** AdaLN residual blocks of the flow net. Default 3. */
  flowBlocks?: number;
  /** Frequencies of each time embedder (its input is cos and sin of them). Default 8. */
  flowFreqs?: number;
  /** SEANet filters of the first stage; the Mimi width is 8x this. Default 4. */
  seanetFilters?: number;
  /** Heads of the Mimi transformers. Default 2. */
  mimiHeads?: number;
  /** FFN width of the Mimi transformers. Default 64. */
  mimiFf?: number;
  /** Blocks of each Mimi transformer. Default 2. */
  mimiLayers?: number;
  /**
   * Bias of the end-of-speech head (libmtmd's threshold is -4): the default -4 fires on some
   * unit-scale hidden states and not on others; lower values let chunks run to their frame budget.
   */
  eosBias?: number;
  /** Whether the pack inserts `<|bos_before_voice|>` before the voice rows. Default true. */
  bosBeforeVoice?: boolean;
  /** `clip.gen.audio.model_variant` (the pack name). Default 'english'. */
  variant?: string;
  /** general.name of both files. Default `tiny-pockettts-s<seed>`. */
  name?: string;
}

export type ResolvedTinyPocketTtsOptions = Required<TinyPocketTtsOptions>;

export function resolveTinyPocketTtsOptions(
  opts: TinyPocketTtsOptions = {},
): ResolvedTinyPocketTtsOptions {
  const seed = checkSeed(opts.seed ?? 0);
  const r: ResolvedTinyPocketTtsOptions = {
    seed,
    nEmbd: positiveInt('nEmbd', opts.nEmbd ?? 32),
    nHead: positiveInt('nHead', opts.nHead ?? 2),
    nLayers: positiveInt('nLayers', opts.nLayers ?? 2),
    nFf: positiveInt('nFf', opts.nFf ?? 64),
    nCtx: positiveInt('nCtx', opts.nCtx ?? 512),
    latentDim: positiveInt('latentDim', opts.latentDim ?? 8),
    flowDim: positiveInt('flowDim', opts.flowDim ?? 16),
    flowBlocks: positiveInt('flowBlocks', opts.flowBlocks ?? 3),
    flowFreqs: positiveInt('flowFreqs', opts.flowFreqs ?? 8),
    seanetFilters: positiveInt('seanetFilters', opts.seanetFilters ?? 4),
    mimiHeads: positiveInt('mimiHeads', opts.mimiHeads ?? 2),
    mimiFf: positiveInt('mimiFf', opts.mimiFf ?? 64),
    mimiLayers: positiveInt('mimiLayers', opts.mimiLayers ?? 2),
    eosBias: opts.eosBias ?? -4,
    bosBeforeVoice: opts.bosBeforeVoice ?? true,
    variant: opts.variant ?? 'english',
    name: opts.name ?? `tiny-pockettts-s${seed}`,
  };
  const headDim = r.nEmbd / r.nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', 'must divide nEmbd into an even head width (RoPE)');
  }
  const mimi = 8 * r.seanetFilters;
  const mimiHead = mimi / r.mimiHeads;
  if (!Number.isInteger(mimiHead) || mimiHead % 2 !== 0) {
    throw new MmInvalidArgumentError(
      'mimiHeads',
      `must divide the Mimi width ${mimi} into an even head width (RoPE)`,
    );
  }
  if (r.seanetFilters % 2 !== 0) {
    // the last decoder stage's residual unit halves its width (filters / 2)
    throw new MmInvalidArgumentError('seanetFilters', 'must be even');
  }
  if (!Number.isFinite(r.eosBias)) {
    throw new MmInvalidArgumentError('eosBias', `must be a finite number, got ${r.eosBias}`);
  }
  if (typeof r.variant !== 'string') {
    throw new MmInvalidArgumentError('variant', 'must be a string');
  }
  return r;
}

/** Ids of the tokens mtmd-helper-gen.cpp looks up by text, and the vocabulary size. */
export interface PocketTtsSpecialIds {
  pad: number;
  /** -1 when the pack has no `<|bos_before_voice|>`. */
  bosBeforeVoice: number;
  audioBos: number;
  nVocab: number;
}

/** Words whose every `▁`-prefixed prefix is a piece (the text tests speak). */
const WORDS = [
  'the',
  'a',
  'and',
  'to',
  'of',
  'is',
  'it',
  'in',
  'on',
  'hello',
  'world',
  'this',
  'that',
  'small',
  'voice',
  'speak',
  'say',
  'test',
  'one',
  'two',
  'three',
  'cat',
  'sat',
  'mat',
  'sun',
  'rain',
  'good',
  'morning',
] as const;

const SUBWORDS = ['he', 'in', 'er', 'an', 're', 'on', 'at', 'en', 'ing', 'ed', 'es'] as const;

/**
 * The unigram vocabulary: `<unk>` `<s>` `</s>`, `▁`, the printable ASCII characters, subwords and
 * every `▁`-prefixed prefix of WORDS (scores: longer pieces score higher per character, so words
 * come out whole), then the extra CONTROL rows the converter appends.
 */
export function pocketTtsVocab(bosBeforeVoice: boolean): {
  tokens: string[];
  scores: Float32Array;
  tokenTypes: Int32Array;
  ids: PocketTtsSpecialIds;
} {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  const scores: number[] = [0, 0, 0];
  const seen = new Set<string>();
  const piece = (p: string, score: number) => {
    if (seen.has(p)) return;
    seen.add(p);
    tokens.push(p);
    types.push(TokenType.NORMAL);
    scores.push(score);
  };
  piece('▁', -3);
  for (let c = 0x21; c <= 0x7e; c++) piece(String.fromCharCode(c), -4 - (c - 0x21) / 1000);
  for (const s of SUBWORDS) piece(s, -5);
  for (const w of WORDS) {
    for (let k = 1; k <= w.length; k++) piece(`▁${w.slice(0, k)}`, -5 - 0.01 * k);
  }
  const extra = ['<|pad|>', ...(bosBeforeVoice ? ['<|bos_before_voice|>'] : []), '<|audio_bos|>'];
  for (const e of extra) {
    tokens.push(e);
    types.push(TokenType.CONTROL);
    scores.push(-1000);
  }
  const id = (t: string) => tokens.indexOf(t);
  return {
    tokens,
    scores: new Float32Array(scores),
    tokenTypes: new Int32Array(types),
    ids: {
      pad: id('<|pad|>'),
      bosBeforeVoice: bosBeforeVoice ? id('<|bos_before_voice|>') : -1,
      audioBos: id('<|audio_bos|>'),
      nVocab: tokens.length,
    },
  };
}

export interface TinyPocketTtsSpecs {
  model: GgufWriteSpec;
  mmproj: GgufWriteSpec;
  ids: PocketTtsSpecialIds;
}

/**
 * The backbone and mmproj of a tiny Pocket TTS, deterministic in the options (the backbone's audio
 * BOS row depends on the mmproj's `input_linear`, so both come from one function).
 */
export function tinyPocketTtsSpecs(options: TinyPocketTtsOptions = {}): TinyPocketTtsSpecs {
  const o = resolveTinyPocketTtsOptions(options);
  const E = o.nEmbd;
  const L = o.latentDim;
  const M = o.flowDim;
  const nf = o.seanetFilters;
  const D = 8 * nf;
  const description = (what: string) =>
    gv.string(`tiny random Pocket TTS ${what} (@mm/testing v${FIXTURE_GENERATOR_VERSION})`);

  // ---- mmproj -------------------------------------------------------------------------------
  const mm: GgufMetadata = new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    ['general.description', description('mmproj (voice encoder + flow head + Mimi decoder)')],
    ['general.file_type', gv.uint32(1)],
    ['clip.has_audio_encoder', gv.bool(true)],
    ['clip.audio.projector_type', gv.string('pockettts_spkenc')],
    ['clip.audio.projection_dim', gv.uint32(E)],
    ['clip.audio.block_count', gv.uint32(o.mimiLayers)],
    ['clip.audio.embedding_length', gv.uint32(D)],
    ['clip.audio.feed_forward_length', gv.uint32(o.mimiFf)],
    ['clip.audio.attention.head_count', gv.uint32(o.mimiHeads)],
    ['clip.audio.attention.layer_norm_epsilon', gv.float32(1e-5)],
    ['clip.audio.num_mel_bins', gv.uint32(1)],
    ['clip.has_gen_audio_encoder', gv.bool(true)],
    ['clip.gen.audio.projector_type', gv.string('pockettts_gen')],
    ['clip.gen.audio.projection_dim', gv.uint32(E)],
    ['clip.gen.audio.embedding_length', gv.uint32(D)],
    ['clip.gen.audio.feed_forward_length', gv.uint32(o.mimiFf)],
    ['clip.gen.audio.block_count', gv.uint32(o.mimiLayers)],
    ['clip.gen.audio.attention.head_count', gv.uint32(o.mimiHeads)],
    ['clip.gen.audio.attention.layer_norm_epsilon', gv.float32(1e-5)],
    ['clip.gen.audio.model_variant', gv.string(o.variant)],
  ]);

  const b = new TensorBuilder(o.seed);
  /** A conv kernel of ggml shape [K, IC, OC] (F16), fan-in K * IC, scaled by `gain`. */
  const conv = (name: string, k: number, ic: number, oc: number, gain = 1) =>
    b.add(`${name}.weight`, 'F16', [k, ic, oc], gain / Math.sqrt(k * ic));
  const bias = (name: string, n: number) => b.vector(`${name}.bias`, n, 0.02);
  /** A transposed conv kernel of ggml shape [K, OC, IC]: each output sums IC * K / stride terms. */
  const convTr = (name: string, k: number, oc: number, ic: number, stride: number) =>
    b.add(`${name}.weight`, 'F16', [k, oc, ic], 1 / Math.sqrt((ic * k) / stride));
  /** A Mimi transformer block (pre-norm LayerNorms, layer scales, GELU FFN, no biases). */
  const mimiBlock = (p: string) => {
    b.norm(`${p}.ln1`, D, true);
    b.matrix(`${p}.attn_q.weight`, 'F32', D, D);
    b.matrix(`${p}.attn_k.weight`, 'F32', D, D);
    b.matrix(`${p}.attn_v.weight`, 'F32', D, D);
    b.matrix(`${p}.attn_out.weight`, 'F32', D, D);
    b.vector(`${p}.ls1.weight`, D, 0.05, 0.3);
    b.norm(`${p}.ln2`, D, true);
    b.matrix(`${p}.ffn_up.weight`, 'F32', D, o.mimiFf);
    b.matrix(`${p}.ffn_down.weight`, 'F32', o.mimiFf, D);
    b.vector(`${p}.ls2.weight`, D, 0.05, 0.3);
  };

  // voice encoder: SEANet encoder (conv_in, 3 x [residual unit, stride conv], conv_out)
  conv('a.seanet.conv_in', 7, 1, nf, 3);
  bias('a.seanet.conv_in', nf);
  for (let i = 0, c = nf; i < 3; i++, c *= 2) {
    const p = `a.seanet.blk.${i}`;
    const r = POCKETTTS_SEANET_RATIOS[i] as number;
    conv(`${p}.res_conv1`, 3, c, c / 2);
    bias(`${p}.res_conv1`, c / 2);
    conv(`${p}.res_conv2`, 1, c / 2, c);
    bias(`${p}.res_conv2`, c);
    conv(`${p}.scale_conv`, 2 * r, c, 2 * c);
    bias(`${p}.scale_conv`, 2 * c);
  }
  conv('a.seanet.conv_out', 3, D, D);
  bias('a.seanet.conv_out', D);
  for (let il = 0; il < o.mimiLayers; il++) mimiBlock(`a.blk.${il}`);
  conv('a.downsample.conv', 2 * POCKETTTS_DOWNSAMPLE, D, D);
  b.matrix('a.speaker_proj.weight', 'F32', D, E);

  // flow head: input_proj, cond_embd, two time embedders, AdaLN blocks, final layer
  b.linear('a.gen.flow.input_proj', 'F32', L, M);
  b.linear('a.gen.flow.cond_embd', 'F32', E, M);
  for (let i = 0; i < 2; i++) {
    const p = `a.gen.flow.time.${i}`;
    // TimestepEmbedder's frequencies: exp(-ln(10000) * j / n)
    const freqs = new Float32Array(o.flowFreqs);
    for (let j = 0; j < o.flowFreqs; j++) {
      freqs[j] = Math.exp((-Math.log(10000) * j) / o.flowFreqs);
    }
    b.tensors.push({ name: `${p}.freqs`, type: 'F32', shape: [o.flowFreqs], data: freqs });
    b.linear(`${p}.up`, 'F32', 2 * o.flowFreqs, M);
    b.linear(`${p}.down`, 'F32', M, M);
    b.vector(`${p}.norm`, M, 0.1, 1);
  }
  for (let il = 0; il < o.flowBlocks; il++) {
    const p = `a.gen.flow.blk.${il}`;
    b.norm(`${p}.norm`, M, true);
    b.linear(`${p}.up`, 'F32', M, M);
    b.linear(`${p}.down`, 'F32', M, M);
    b.add(`${p}.ada.weight`, 'F32', [M, 3 * M], 0.5 / Math.sqrt(M));
    b.vector(`${p}.ada.bias`, 3 * M, 0.1);
  }
  b.add('a.gen.flow.final.ada.weight', 'F32', [M, 2 * M], 0.5 / Math.sqrt(M));
  b.vector('a.gen.flow.final.ada.bias', 2 * M, 0.1);
  b.linear('a.gen.flow.final.proj', 'F32', M, L);
  // end of speech: scores around the bias (libmtmd's threshold is -4) for hidden states of unit scale
  b.add('a.gen.out_eos.weight', 'F32', [E, 1], 2 / Math.sqrt(E));
  b.vector('a.gen.out_eos.bias', 1, 0.1, o.eosBias);
  b.matrix('a.gen.input_linear.weight', 'F32', L, E);
  b.tensors.push({
    name: 'a.gen.emb_mean',
    type: 'F32',
    shape: [L],
    data: b.values(L, 0.1),
  });
  b.tensors.push({
    name: 'a.gen.emb_std',
    type: 'F32',
    shape: [L],
    data: b.values(L, 0.2, 1),
  });

  // Mimi decoder: quantizer output projection, depthwise upsample, transformer, SEANet decoder
  b.matrix('a.gen.wav.quant_out.weight', 'F32', L, D);
  b.add('a.gen.wav.upsample.weight', 'F16', [2 * POCKETTTS_DOWNSAMPLE, 1, D], 0.5);
  for (let il = 0; il < o.mimiLayers; il++) mimiBlock(`a.gen.wav.tfm.blk.${il}`);
  conv('a.gen.wav.seanet.conv_in', 7, D, D);
  bias('a.gen.wav.seanet.conv_in', D);
  for (let i = 0, c = D; i < 3; i++, c /= 2) {
    const p = `a.gen.wav.seanet.blk.${i}`;
    const r = POCKETTTS_SEANET_RATIOS[2 - i] as number;
    convTr(`${p}.scale_conv`, 2 * r, c / 2, c, r);
    bias(`${p}.scale_conv`, c / 2);
    conv(`${p}.res_conv1`, 3, c / 2, c / 4);
    bias(`${p}.res_conv1`, c / 4);
    conv(`${p}.res_conv2`, 1, c / 4, c / 2);
    bias(`${p}.res_conv2`, c / 2);
  }
  // the output conv keeps PCM well inside [-1, 1] (libmtmd clamps it)
  conv('a.gen.wav.seanet.conv_out', 3, nf, 1, 0.35);
  bias('a.gen.wav.seanet.conv_out', 1);

  // ---- backbone -----------------------------------------------------------------------------
  const vocab = pocketTtsVocab(o.bosBeforeVoice);
  const nVocab = vocab.ids.nVocab;
  const model: GgufMetadata = new Map([
    ['general.architecture', gv.string('pockettts')],
    ['general.name', gv.string(o.name)],
    ['general.description', description('backbone')],
    ['general.file_type', gv.uint32(0)],
    ['general.alignment', gv.uint32(32)],
    ['pockettts.vocab_size', gv.uint32(nVocab)],
    ['pockettts.context_length', gv.uint32(o.nCtx)],
    ['pockettts.embedding_length', gv.uint32(E)],
    ['pockettts.feed_forward_length', gv.uint32(o.nFf)],
    ['pockettts.block_count', gv.uint32(o.nLayers)],
    ['pockettts.attention.head_count', gv.uint32(o.nHead)],
    ['pockettts.rope.freq_base', gv.float32(10000)],
    ['pockettts.attention.layer_norm_epsilon', gv.float32(1e-5)],
    ['tokenizer.ggml.model', gv.string('t5')],
    ['tokenizer.ggml.pre', gv.string('default')],
    ['tokenizer.ggml.tokens', gv.array('string', vocab.tokens)],
    ['tokenizer.ggml.scores', gv.array('float32', vocab.scores)],
    ['tokenizer.ggml.token_type', gv.array('int32', vocab.tokenTypes)],
    ['tokenizer.ggml.add_space_prefix', gv.bool(true)],
    ['tokenizer.ggml.remove_extra_whitespaces', gv.bool(true)],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)],
    ['tokenizer.ggml.add_eos_token', gv.bool(false)],
  ]);
  const t = new TensorBuilder((o.seed + 0x5eed) >>> 0);
  // the embedding table: the conditioner's rows, the voice BOS, then input_linear · bos_emb
  const table = t.values(E * nVocab, 1);
  const inputLinear = b.tensors.find((x) => x.name === 'a.gen.input_linear.weight')
    ?.data as Float32Array;
  const bosEmb = new Prng((o.seed + 0xb05) >>> 0).normals(L, 1);
  const row = vocab.ids.audioBos * E;
  for (let e = 0; e < E; e++) {
    let s = 0;
    for (let l = 0; l < L; l++) s += (inputLinear[e * L + l] as number) * (bosEmb[l] as number);
    table[row + e] = s;
  }
  t.tensors.push({ name: 'token_embd.weight', type: 'F32', shape: [E, nVocab], data: table });
  for (let il = 0; il < o.nLayers; il++) {
    const p = `blk.${il}`;
    t.norm(`${p}.attn_norm`, E, true);
    t.matrix(`${p}.attn_q.weight`, 'F32', E, E);
    t.matrix(`${p}.attn_k.weight`, 'F32', E, E);
    t.matrix(`${p}.attn_v.weight`, 'F32', E, E);
    t.matrix(`${p}.attn_output.weight`, 'F32', E, E);
    t.norm(`${p}.ffn_norm`, E, true);
    t.matrix(`${p}.ffn_up.weight`, 'F32', E, o.nFf);
    t.matrix(`${p}.ffn_down.weight`, 'F32', o.nFf, E);
  }
  t.norm('output_norm', E, true);

  return {
    model: { metadata: model, tensors: t.tensors, alignment: 32 },
    mmproj: { metadata: mm, tensors: b.tensors, alignment: 32 },
    ids: vocab.ids,
  };
}

export interface TinyPocketTts {
  /** The backbone (arch `pockettts`). */
  model: string;
  /** The mmproj (voice encoder + generator). */
  mmproj: string;
  nEmbd: number;
  latentDim: number;
  ids: PocketTtsSpecialIds;
  options: ResolvedTinyPocketTtsOptions;
}

/** A name holding every resolved option. */
export function tinyPocketTtsFixtureName(options: TinyPocketTtsOptions = {}): string {
  const o = resolveTinyPocketTtsOptions(options);
  return (
    `pockettts-s${o.seed}-e${o.nEmbd}-h${o.nHead}-l${o.nLayers}-ff${o.nFf}-c${o.nCtx}` +
    `-lat${o.latentDim}-fl${o.flowDim}x${o.flowBlocks}f${o.flowFreqs}-sn${o.seanetFilters}` +
    `-mi${o.mimiHeads}_${o.mimiFf}_${o.mimiLayers}-eos${o.eosBias}${o.bosBeforeVoice ? '-bbv' : ''}` +
    `-${fileSafe(o.variant)}-${fileSafe(o.name)}`
  );
}

/** Writes `<dir>/<name>.gguf` (backbone) and `<dir>/mmproj-<name>.gguf`. Same options → same bytes. */
export async function writeTinyPocketTts(
  dir: string,
  options: TinyPocketTtsOptions = {},
): Promise<TinyPocketTts> {
  const o = resolveTinyPocketTtsOptions(options);
  const specs = tinyPocketTtsSpecs(o);
  const name = tinyPocketTtsFixtureName(o);
  await mkdir(dir, { recursive: true });
  const model = join(dir, `${name}.gguf`);
  const mmproj = join(dir, `mmproj-${name}.gguf`);
  await Promise.all([writeGguf(model, specs.model), writeGguf(mmproj, specs.mmproj)]);
  return { model, mmproj, nEmbd: o.nEmbd, latentDim: o.latentDim, ids: specs.ids, options: o };
}

/** The cached pair with these options (in the fixtures folder). */
export async function tinyPocketTtsFixture(
  options: TinyPocketTtsOptions = {},
): Promise<TinyPocketTts> {
  const o = resolveTinyPocketTtsOptions(options);
  const name = tinyPocketTtsFixtureName(o);
  let specs: TinyPocketTtsSpecs | undefined;
  const get = () => {
    specs ??= tinyPocketTtsSpecs(o);
    return specs;
  };
  const [model, mmproj] = await Promise.all([
    fixturePath(`${name}.gguf`, (p) => writeGguf(p, get().model)),
    fixturePath(`mmproj-${name}.gguf`, (p) => writeGguf(p, get().mmproj)),
  ]);
  return {
    model,
    mmproj,
    nEmbd: o.nEmbd,
    latentDim: o.latentDim,
    ids: pocketTtsVocab(o.bosBeforeVoice).ids,
    options: o,
  };
}

/**
 * Pocket TTS's shapes (kyutai's pocket-tts, for benchmarks; random F32 weights): backbone 1024 wide,
 * 16 heads, FFN 4096 (2 layers: the talker runs in libllama on both sides of a comparison); latents
 * of 32; the flow head 512 wide with 6 AdaLN blocks and 128 frequencies per time embedder; Mimi
 * 512 wide (SEANet filters 64), 8 heads, FFN 2048, 2 transformer layers each side.
 */
export const REALISTIC_POCKETTTS: TinyPocketTtsOptions = {
  seed: 7,
  nEmbd: 1024,
  nHead: 16,
  nLayers: 2,
  nFf: 4096,
  nCtx: 4096,
  latentDim: 32,
  flowDim: 512,
  flowBlocks: 6,
  flowFreqs: 128,
  seanetFilters: 64,
  mimiHeads: 8,
  mimiFf: 2048,
  mimiLayers: 2,
  eosBias: -40,
  name: 'bench-pockettts',
};

/** The Pocket TTS pair at REALISTIC_POCKETTTS's shapes (unless `options` say otherwise), written once into benchDir(). */
export function benchPocketTtsPair(
  options: TinyPocketTtsOptions = REALISTIC_POCKETTTS,
): Promise<TinyPocketTts> {
  return inBenchDir(() => tinyPocketTtsFixture(options));
}
