import { MmInvalidArgumentError } from '@mm/errors';
import { type GgufMetadata, type GgufWriteSpec, ggufToBuffer, gv, writeGguf } from '@mm/gguf';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath } from './fixtures.js';
import { qwen2vlRopeSections } from './qwen2vl.js';
import { bpeTokenizerKeys } from './text-spec.js';
import { bpeVocab, type TextVocab } from './text-vocab.js';
import { TokenType } from './tiny-llama.js';
import { checkSeed, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * A tiny random Qwen3-TTS pair as llama.cpp's converter (conversion/qwen3tts.py) writes it and the
 * pinned libllama / libmtmd load it:
 *
 * - the talker, arch `qwen3tts` (libllama runs it as qwen3vl: interleaved M-RoPE, q/k norms, no
 *   biases): a byte-level BPE text vocabulary with Qwen's specials and the TTS markers, then the
 *   3072 codec tokens (`<|codec_i|>`, with the named ones of Qwen3-TTS's talker_config:
 *   `<|codec_bos|>`, `<|codec_eos_token|>`, `<|codec_pad|>`, `<|codec_think|>`, ...,
 *   `<|codec_language_english|>`), `output.weight` of 3072 rows (libllama pads the logits of the
 *   text ids with -inf), `tokenizer.ggml.suppress_tokens` = the last 1024 codec ids but EOS;
 * - the mmproj: `clip.has_audio_encoder` with the ECAPA-TDNN speaker encoder (`qwen3tts_spkenc`:
 *   stem TDNN, 3 SE-Res2Net blocks, MFA, attentive statistics pooling, `mm.a.fc`) and
 *   `clip.has_gen_audio_encoder` with `qwen3tts_gen`: the code predictor (`a.gen.code.*`: proj_in,
 *   15 codebook embeddings and heads, `out_embd` = the talker's codec embedding, GQA layers with q/k
 *   norms) and code2wav (`a.gen.wav.*`: split RVQ decode, causal pre-conv, the 8-layer
 *   sliding-window pre-transformer with layer scales, 2 upsample blocks (ConvTranspose1d x2 +
 *   ConvNeXt), the DAC decoder (4 blocks of SnakeBeta, ConvTranspose1d, 3 dilated residual units),
 *   SnakeBeta + post conv). Conv kernels are F16 where the converter forces F16, the transposed
 *   ones F32.
 *
 * libmtmd hard-codes code2wav's 8 layers, 16 heads and 72-frame window, 2 upsample blocks and 4 DAC
 * blocks of 3 residual units (dilations 1, 3, 9): the tiny file has exactly those counts with small
 * widths. Weights are scaled so that activations stay near unit size and the PCM stays inside ±1
 * (libmtmd clamps it).
 */

/** libmtmd's fixed code2wav shape (clip.cpp load_hparams, qwen3tts-gen.cpp). */
export const QWEN3TTS_WAV_LAYERS = 8;
export const QWEN3TTS_WAV_HEADS = 16;
export const QWEN3TTS_WINDOW_FRAMES = 72;
export const QWEN3TTS_CODEBOOKS = 16;
/** The codec vocabulary the talker's output head has (libllama hard-codes 3072 for qwen3tts). */
export const QWEN3TTS_CODEC_VOCAB = 3072;
export const QWEN3TTS_SAMPLE_RATE = 24000;
export const QWEN3TTS_SPEAKER_MELS = 128;

/** The text specials of the talker's vocabulary (added tokens, after the regular ones). */
export const QWEN3TTS_TEXT_SPECIALS = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<tts_pad>',
  '<tts_text_bos>',
  '<tts_text_eod>',
  '<tts_text_bos_single>',
] as const;

/** Named codec rows, as Qwen3-TTS's talker_config `*_id` fields put them. */
export const QWEN3TTS_CODEC_IDS: Readonly<Record<string, number>> = {
  codec_pad: 2148,
  codec_bos: 2149,
  codec_eos_token: 2150,
  codec_think: 2154,
  codec_nothink: 2155,
  codec_think_bos: 2156,
  codec_think_eos: 2157,
  codec_language_chinese: 2055,
  codec_language_english: 2050,
  codec_language_german: 2053,
  codec_language_spanish: 2054,
  codec_language_japanese: 2058,
  codec_language_french: 2061,
  codec_language_korean: 2064,
  codec_language_russian: 2069,
  codec_language_italian: 2070,
  codec_language_portuguese: 2071,
};

export interface TinyQwen3TtsOptions {
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /** Talker width (= the gen mmproj's projection width). Default 64. */
  nEmbd?: number;
  /** Talker layers. Default 2. */
  nLayers?: number;
  /** Code predictor width; equal to nEmbd means no `proj_in`. Default 32. */
  predictorEmbd?: number;
  /** Code predictor layers. Default 2. */
  predictorLayers?: number;
  /** Code predictor heads (4) and KV heads (2): GQA. */
  predictorHeads?: number;
  predictorHeadsKv?: number;
  /** Codebook size of the 15 acoustic codebooks (predictor vocabulary). Default 64. */
  codeVocab?: number;
  /** Codebook size of the semantic codebook (code 0). Default 2048, as the talker samples. */
  semanticVocab?: number;
  /** Strides of the 4 DAC blocks (kernel = 2 x stride). Default [2, 3, 2, 2]: 96 samples per frame. */
  dacStrides?: readonly [number, number, number, number];
  /** Code predictor FFN width. Default 2 x predictorEmbd. */
  predictorFf?: number;
  /** code2wav widths (benchmarks: the real model's). Default QWEN3TTS_TINY_WAV. */
  wav?: Qwen3TtsWavWidths;
  /** Speaker encoder (ECAPA-TDNN) widths. Default QWEN3TTS_TINY_SPEAKER. */
  speaker?: Qwen3TtsSpeakerWidths;
  /** `clip.gen.audio.model_variant`. Default 'tiny'. */
  variant?: string;
  /** general.name. Default `tiny-qwen3tts-s<seed>`. */
  name?: string;
}

/** Widths of code2wav (libmtmd fixes only the counts: 8 layers, 16 heads, 2 + 4 blocks). */
export interface Qwen3TtsWavWidths {
  /** RVQ codebook width (real: 256). */
  codeDim: number;
  /** Quantizer output (real: 512). */
  latent: number;
  /** Pre-conv output (real: 1024). */
  preConv: number;
  /** Pre-transformer width (real: 512) and head width (real: 64, x 16 heads). */
  tfm: number;
  tfmHeadDim: number;
  /** Pre-transformer FFN width (real: 1024). */
  tfmFf: number;
  /** ConvNeXt pointwise width (real: 4 x 1024). */
  upFf: number;
  /** DAC entry output, then each of the 4 blocks' outputs (real: 1536, 768, 384, 192, 96). */
  dac: readonly [number, number, number, number, number];
}

/** ECAPA-TDNN widths: channels (real 512; the MFA width is 3x), SE, attention, Res2Net scale. */
export interface Qwen3TtsSpeakerWidths {
  channels: number;
  se: number;
  attn: number;
  scale: number;
}

/** The tiny fixture's code2wav widths (the default). */
export const QWEN3TTS_TINY_WAV: Readonly<Qwen3TtsWavWidths> = {
  codeDim: 8,
  latent: 16,
  preConv: 32,
  tfm: 16,
  tfmHeadDim: 4,
  tfmFf: 32,
  upFf: 64,
  dac: [48, 24, 16, 8, 4],
};
export const QWEN3TTS_TINY_SPEAKER: Readonly<Qwen3TtsSpeakerWidths> = {
  channels: 32,
  se: 8,
  attn: 16,
  scale: 8,
};

/**
 * Qwen3-TTS-12Hz-0.6B's shapes for the mmproj parts (benchmarks; random F32 weights): code
 * predictor 1024 wide, 5 layers, 16 heads / 8 KV heads, FFN 3072, 2048-code codebooks; code2wav
 * with the speech tokenizer's decoder widths and strides 8, 5, 4, 3 (1920 samples per frame, 12.5
 * frames/s); the ECAPA-TDNN speaker encoder at 512 channels. The talker is 1024 wide with `nLayers`
 * layers (the talker runs in libllama on both sides of a comparison).
 */
export const REALISTIC_QWEN3TTS: TinyQwen3TtsOptions = {
  seed: 7,
  nEmbd: 1024,
  nLayers: 2,
  predictorEmbd: 1024,
  predictorLayers: 5,
  predictorHeads: 16,
  predictorHeadsKv: 8,
  predictorFf: 3072,
  codeVocab: 2048,
  semanticVocab: 2048,
  dacStrides: [8, 5, 4, 3],
  wav: {
    codeDim: 256,
    latent: 512,
    preConv: 1024,
    tfm: 512,
    tfmHeadDim: 64,
    tfmFf: 1024,
    upFf: 4096,
    dac: [1536, 768, 384, 192, 96],
  },
  speaker: { channels: 512, se: 128, attn: 128, scale: 8 },
  variant: 'bench',
  name: 'bench-qwen3tts-0.6b',
};

export type ResolvedTinyQwen3TtsOptions = Required<TinyQwen3TtsOptions>;

export function resolveTinyQwen3TtsOptions(
  o: TinyQwen3TtsOptions = {},
): ResolvedTinyQwen3TtsOptions {
  const seed = checkSeed(o.seed ?? 0);
  const r: ResolvedTinyQwen3TtsOptions = {
    seed,
    nEmbd: positiveInt('nEmbd', o.nEmbd ?? 64),
    nLayers: positiveInt('nLayers', o.nLayers ?? 2),
    predictorEmbd: positiveInt('predictorEmbd', o.predictorEmbd ?? 32),
    predictorLayers: positiveInt('predictorLayers', o.predictorLayers ?? 2),
    predictorHeads: positiveInt('predictorHeads', o.predictorHeads ?? 4),
    predictorHeadsKv: positiveInt('predictorHeadsKv', o.predictorHeadsKv ?? 2),
    codeVocab: positiveInt('codeVocab', o.codeVocab ?? 64),
    semanticVocab: positiveInt('semanticVocab', o.semanticVocab ?? 2048),
    dacStrides: o.dacStrides ?? [2, 3, 2, 2],
    predictorFf: positiveInt('predictorFf', o.predictorFf ?? 2 * (o.predictorEmbd ?? 32)),
    wav: o.wav ?? QWEN3TTS_TINY_WAV,
    speaker: o.speaker ?? QWEN3TTS_TINY_SPEAKER,
    variant: o.variant ?? 'tiny',
    name: o.name ?? `tiny-qwen3tts-s${seed}`,
  };
  if (r.dacStrides.length !== 4) {
    throw new MmInvalidArgumentError('dacStrides', 'libmtmd runs exactly 4 DAC blocks');
  }
  for (const s of r.dacStrides) positiveInt('dacStrides', s);
  for (const [k, v] of Object.entries(r.wav)) {
    for (const x of Array.isArray(v) ? v : [v]) positiveInt(`wav.${k}`, x);
  }
  if (r.wav.dac.length !== 5) {
    throw new MmInvalidArgumentError('wav.dac', 'the entry width then 4 block widths');
  }
  for (const [k, v] of Object.entries(r.speaker)) positiveInt(`speaker.${k}`, v);
  if (r.speaker.channels % r.speaker.scale !== 0) {
    throw new MmInvalidArgumentError('speaker.scale', 'must divide speaker.channels');
  }
  if (r.nEmbd % 4 !== 0 || (r.nEmbd / 4) % 2 !== 0) {
    throw new MmInvalidArgumentError('nEmbd', 'must be a multiple of 8 (4 heads of even width)');
  }
  if (r.predictorEmbd % r.predictorHeads !== 0 || r.predictorHeads % r.predictorHeadsKv !== 0) {
    throw new MmInvalidArgumentError(
      'predictorHeads',
      'heads must divide the width, KV heads the heads',
    );
  }
  if (r.semanticVocab > QWEN3TTS_CODEC_VOCAB) {
    throw new MmInvalidArgumentError('semanticVocab', `at most ${QWEN3TTS_CODEC_VOCAB}`);
  }
  return r;
}

/** Samples per frame of the tiny decoder: 2 x 2 (upsample) x the DAC strides. */
export function qwen3ttsSamplesPerFrame(o: TinyQwen3TtsOptions = {}): number {
  const r = resolveTinyQwen3TtsOptions(o);
  return 4 * r.dacStrides.reduce((a, b) => a * b, 1);
}

// ---- talker -----------------------------------------------------------------------------------

/** The codec token names the converter writes (`_codec_token_names`). */
export function qwen3ttsCodecTokens(): string[] {
  const names = Array.from({ length: QWEN3TTS_CODEC_VOCAB }, (_, i) => `<|codec_${i}|>`);
  for (const [k, id] of Object.entries(QWEN3TTS_CODEC_IDS)) names[id] = `<|${k}|>`;
  return names;
}

/** The talker's vocabulary: text (BPE, specials) then the codec tokens (CONTROL). */
export function tinyQwen3TtsVocab(): TextVocab & { nText: number } {
  const text = bpeVocab(QWEN3TTS_TEXT_SPECIALS);
  const codec = qwen3ttsCodecTokens();
  const types = new Int32Array(text.tokens.length + codec.length);
  types.set(text.tokenTypes);
  types.fill(TokenType.CONTROL, text.tokens.length);
  return {
    ...text,
    tokens: [...text.tokens, ...codec],
    tokenTypes: types,
    nText: text.tokens.length,
  };
}

export function tinyQwen3TtsTalkerSpec(options: TinyQwen3TtsOptions = {}): GgufWriteSpec {
  const o = resolveTinyQwen3TtsOptions(options);
  const vocab = tinyQwen3TtsVocab();
  const a = 'qwen3tts';
  const E = o.nEmbd;
  const nHead = 4;
  const nHeadKv = 2;
  const dh = E / nHead;
  const nFf = 2 * E;
  const nVocab = vocab.tokens.length;
  const eos = vocab.nText + (QWEN3TTS_CODEC_IDS['codec_eos_token'] as number);
  const suppress: number[] = [];
  for (let i = nVocab - 1024; i < nVocab; i++) if (i !== eos) suppress.push(i);
  const metadata: GgufMetadata = new Map([
    ['general.architecture', gv.string(a)],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random qwen3tts talker (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(0)],
    ['general.alignment', gv.uint32(32)],
    [`${a}.vocab_size`, gv.uint32(nVocab)],
    [`${a}.context_length`, gv.uint32(4096)],
    [`${a}.embedding_length`, gv.uint32(E)],
    [`${a}.block_count`, gv.uint32(o.nLayers)],
    [`${a}.feed_forward_length`, gv.uint32(nFf)],
    [`${a}.attention.head_count`, gv.uint32(nHead)],
    [`${a}.attention.head_count_kv`, gv.uint32(nHeadKv)],
    [`${a}.attention.key_length`, gv.uint32(dh)],
    [`${a}.attention.value_length`, gv.uint32(dh)],
    [`${a}.rope.freq_base`, gv.float32(1e6)],
    [`${a}.rope.dimension_sections`, gv.array('int32', new Int32Array(qwen2vlRopeSections(dh)))],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(1e-6)],
    ...bpeTokenizerKeys('qwen2', vocab),
    ['tokenizer.ggml.eos_token_id', gv.uint32(eos)],
    ['tokenizer.ggml.padding_token_id', gv.uint32(vocab.tokens.indexOf('<|endoftext|>'))],
    ['tokenizer.ggml.add_bos_token', gv.bool(false)],
    ['tokenizer.ggml.add_eos_token', gv.bool(false)],
    ['tokenizer.ggml.suppress_tokens', gv.array('int32', new Int32Array(suppress))],
  ]);
  const b = new TensorBuilder(o.seed);
  b.add('token_embd.weight', 'F32', [E, nVocab], 0.5);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `blk.${il}`;
    b.norm(`${p}.attn_norm`, E, false);
    b.matrix(`${p}.attn_q.weight`, 'F32', E, nHead * dh);
    b.matrix(`${p}.attn_k.weight`, 'F32', E, nHeadKv * dh);
    b.matrix(`${p}.attn_v.weight`, 'F32', E, nHeadKv * dh);
    b.norm(`${p}.attn_q_norm`, dh, false);
    b.norm(`${p}.attn_k_norm`, dh, false);
    b.matrix(`${p}.attn_output.weight`, 'F32', nHead * dh, E);
    b.norm(`${p}.ffn_norm`, E, false);
    b.matrix(`${p}.ffn_gate.weight`, 'F32', E, nFf);
    b.matrix(`${p}.ffn_up.weight`, 'F32', E, nFf);
    b.matrix(`${p}.ffn_down.weight`, 'F32', nFf, E);
  }
  b.norm('output_norm', E, false);
  b.matrix('output.weight', 'F32', E, QWEN3TTS_CODEC_VOCAB, 2);
  return { metadata, tensors: b.tensors, alignment: 32 };
}

// ---- gen mmproj -------------------------------------------------------------------------------

export function tinyQwen3TtsMmprojSpec(options: TinyQwen3TtsOptions = {}): GgufWriteSpec {
  const o = resolveTinyQwen3TtsOptions(options);
  const E = o.nEmbd;
  const P = o.predictorEmbd;
  const ph = o.predictorHeads;
  const phkv = o.predictorHeadsKv;
  const pdh = P / ph;
  const pFf = o.predictorFf;
  const SPK = o.speaker;
  const C = SPK.channels;
  const Cs = C / SPK.scale;
  const Cm = 3 * C;
  const m: GgufMetadata = new Map([
    ['general.architecture', gv.string('clip')],
    ['general.name', gv.string(o.name)],
    [
      'general.description',
      gv.string(`tiny random qwen3tts gen mmproj (@mm/testing v${FIXTURE_GENERATOR_VERSION})`),
    ],
    ['general.file_type', gv.uint32(1)],
    ['clip.has_audio_encoder', gv.bool(true)],
    ['clip.audio.projector_type', gv.string('qwen3tts_spkenc')],
    ['clip.audio.projection_dim', gv.uint32(E)],
    ['clip.audio.num_mel_bins', gv.uint32(QWEN3TTS_SPEAKER_MELS)],
    ['clip.audio.block_count', gv.uint32(3)],
    ['clip.audio.embedding_length', gv.uint32(Cm)],
    ['clip.audio.attention.head_count', gv.uint32(1)],
    ['clip.audio.feed_forward_length', gv.uint32(Cm)],
    ['clip.audio.attention.layer_norm_epsilon', gv.float32(1e-5)],
    ['clip.has_gen_audio_encoder', gv.bool(true)],
    ['clip.gen.audio.projector_type', gv.string('qwen3tts_gen')],
    ['clip.gen.audio.model_variant', gv.string(o.variant)],
    ['clip.gen.audio.projection_dim', gv.uint32(E)],
    ['clip.gen.audio.embedding_length', gv.uint32(P)],
    ['clip.gen.audio.feed_forward_length', gv.uint32(pFf)],
    ['clip.gen.audio.block_count', gv.uint32(o.predictorLayers)],
    ['clip.gen.audio.attention.head_count', gv.uint32(ph)],
    ['clip.gen.audio.attention.head_count_kv', gv.uint32(phkv)],
    ['clip.gen.audio.attention.layer_norm_epsilon', gv.float32(1e-6)],
  ]);
  const b = new TensorBuilder(o.seed + 1);
  // conv kernel [K, IC, OC] with N(0, gain^2 / (K * IC))
  const conv = (name: string, type: 'F32' | 'F16', k: number, ic: number, oc: number, gain = 1) =>
    b.add(name, type, [k, ic, oc], gain / Math.sqrt(k * ic));
  const bias = (name: string, n: number) => b.vector(name, n, 0.02);

  // ---- speaker encoder (ECAPA-TDNN)
  conv('a.conv1d.0.weight', 'F16', 5, QWEN3TTS_SPEAKER_MELS, C, 0.5);
  bias('a.conv1d.0.bias', C);
  for (let bid = 1; bid <= 3; bid++) {
    conv(`a.blk.${bid}.conv_pw1.weight`, 'F16', 1, C, C, 1.4);
    bias(`a.blk.${bid}.conv_pw1.bias`, C);
    for (let x = 0; x < SPK.scale - 1; x++) {
      conv(`a.blk.${bid}.res2.${x}.weight`, 'F16', 3, Cs, Cs, 1.4);
      bias(`a.blk.${bid}.res2.${x}.bias`, Cs);
    }
    conv(`a.blk.${bid}.conv_pw2.weight`, 'F16', 1, C, C, 1.4);
    bias(`a.blk.${bid}.conv_pw2.bias`, C);
    conv(`a.blk.${bid}.se_conv1.weight`, 'F16', 1, C, SPK.se);
    bias(`a.blk.${bid}.se_conv1.bias`, SPK.se);
    conv(`a.blk.${bid}.se_conv2.weight`, 'F16', 1, SPK.se, C);
    bias(`a.blk.${bid}.se_conv2.bias`, C);
  }
  conv('a.conv_out.weight', 'F16', 1, Cm, Cm, 1.4);
  bias('a.conv_out.bias', Cm);
  conv('a.asp_tdnn.weight', 'F16', 1, 3 * Cm, SPK.attn, 1.4);
  bias('a.asp_tdnn.bias', SPK.attn);
  conv('a.asp_attn.weight', 'F16', 1, SPK.attn, Cm);
  bias('a.asp_attn.bias', Cm);
  conv('mm.a.fc.weight', 'F16', 1, 2 * Cm, E);
  bias('mm.a.fc.bias', E);

  // ---- code predictor
  const V = o.codeVocab;
  if (P !== E) b.linear('a.gen.code.proj_in', 'F32', E, P);
  b.add('a.gen.code.embd.weight', 'F32', [E, V, QWEN3TTS_CODEBOOKS - 1], 0.25);
  b.add('a.gen.code.head.weight', 'F32', [P, V, QWEN3TTS_CODEBOOKS - 1], 3 / Math.sqrt(P));
  b.add('a.gen.code.out_embd.weight', 'F32', [E, QWEN3TTS_CODEC_VOCAB], 0.25);
  b.vector('a.gen.code.output_norm.weight', P, 0.1, 1);
  for (let il = 0; il < o.predictorLayers; il++) {
    const p = `a.gen.code.blk.${il}`;
    b.vector(`${p}.ln1.weight`, P, 0.1, 1);
    b.matrix(`${p}.attn_q.weight`, 'F32', P, ph * pdh);
    b.matrix(`${p}.attn_k.weight`, 'F32', P, phkv * pdh);
    b.matrix(`${p}.attn_v.weight`, 'F32', P, phkv * pdh);
    b.vector(`${p}.attn_q_norm.weight`, pdh, 0.1, 1);
    b.vector(`${p}.attn_k_norm.weight`, pdh, 0.1, 1);
    b.matrix(`${p}.attn_out.weight`, 'F32', ph * pdh, P);
    b.vector(`${p}.ln2.weight`, P, 0.1, 1);
    b.matrix(`${p}.ffn_gate.weight`, 'F32', P, pFf);
    b.matrix(`${p}.ffn_up.weight`, 'F32', P, pFf);
    b.matrix(`${p}.ffn_down.weight`, 'F32', pFf, P);
  }

  // ---- code2wav
  const W = o.wav;
  b.matrix('a.gen.wav.quant.first.in_proj.weight', 'F32', W.latent, W.codeDim);
  b.matrix('a.gen.wav.quant.first.out_proj.weight', 'F32', W.codeDim, W.latent);
  b.add('a.gen.wav.quant.first.codebook.weight', 'F32', [W.codeDim, o.semanticVocab], 1);
  b.matrix('a.gen.wav.quant.rest.in_proj.weight', 'F32', W.latent, W.codeDim);
  b.matrix('a.gen.wav.quant.rest.out_proj.weight', 'F32', W.codeDim, W.latent, 0.3);
  b.add('a.gen.wav.quant.rest.codebook.weight', 'F32', [W.codeDim, V, QWEN3TTS_CODEBOOKS - 1], 1);
  conv('a.gen.wav.pre_conv.weight', 'F16', 3, W.latent, W.preConv);
  bias('a.gen.wav.pre_conv.bias', W.preConv);
  b.linear('a.gen.wav.tfm.in_proj', 'F32', W.preConv, W.tfm);
  const q = QWEN3TTS_WAV_HEADS * W.tfmHeadDim;
  for (let il = 0; il < QWEN3TTS_WAV_LAYERS; il++) {
    const p = `a.gen.wav.tfm.blk.${il}`;
    b.vector(`${p}.ln1.weight`, W.tfm, 0.1, 1);
    b.matrix(`${p}.attn_q.weight`, 'F32', W.tfm, q);
    b.matrix(`${p}.attn_k.weight`, 'F32', W.tfm, q);
    b.matrix(`${p}.attn_v.weight`, 'F32', W.tfm, q);
    b.matrix(`${p}.attn_out.weight`, 'F32', q, W.tfm);
    b.vector(`${p}.ls1.weight`, W.tfm, 0.05, 0.3);
    b.vector(`${p}.ln2.weight`, W.tfm, 0.1, 1);
    b.matrix(`${p}.ffn_gate.weight`, 'F32', W.tfm, W.tfmFf);
    b.matrix(`${p}.ffn_up.weight`, 'F32', W.tfm, W.tfmFf);
    b.matrix(`${p}.ffn_down.weight`, 'F32', W.tfmFf, W.tfm);
    b.vector(`${p}.ls2.weight`, W.tfm, 0.05, 0.3);
  }
  b.vector('a.gen.wav.tfm.output_norm.weight', W.tfm, 0.1, 1);
  b.linear('a.gen.wav.tfm.out_proj', 'F32', W.tfm, W.preConv);
  for (let il = 0; il < 2; il++) {
    const p = `a.gen.wav.up.blk.${il}`;
    const c = W.preConv;
    b.add(`${p}.conv.weight`, 'F32', [2, c, c], 1 / Math.sqrt(c));
    bias(`${p}.conv.bias`, c);
    b.add(`${p}.dwconv.weight`, 'F16', [7, 1, c], 1 / Math.sqrt(7));
    bias(`${p}.dwconv.bias`, c);
    b.norm(`${p}.norm`, c, true);
    b.linear(`${p}.pw1`, 'F32', c, W.upFf);
    b.linear(`${p}.pw2`, 'F32', W.upFf, c);
    b.vector(`${p}.gamma`, c, 0.05, 0.3);
  }
  conv('a.gen.wav.dac.entry.weight', 'F16', 7, W.preConv, W.dac[0]);
  bias('a.gen.wav.dac.entry.bias', W.dac[0]);
  // SnakeBeta folded as the converter writes it: alpha = exp(a), beta = 1 / (exp(b) + 1e-9)
  const snake = (prefix: string, n: number) => {
    b.vector(`${prefix}.alpha`, n, 0.2, 1);
    b.vector(`${prefix}.beta`, n, 0.05, 0.3);
  };
  for (let il = 0; il < 4; il++) {
    const p = `a.gen.wav.dac.blk.${il}`;
    const ic = W.dac[il] as number;
    const oc = W.dac[il + 1] as number;
    const s = o.dacStrides[il] as number;
    snake(`${p}.snake`, ic);
    b.add(`${p}.conv.weight`, 'F32', [2 * s, oc, ic], 1 / Math.sqrt(ic * 2));
    bias(`${p}.conv.bias`, oc);
    for (let ir = 0; ir < 3; ir++) {
      const r = `${p}.res.${ir}`;
      snake(`${r}.act1`, oc);
      conv(`${r}.conv1.weight`, 'F16', 7, oc, oc, 0.5);
      bias(`${r}.conv1.bias`, oc);
      snake(`${r}.act2`, oc);
      conv(`${r}.conv2.weight`, 'F16', 1, oc, oc, 0.5);
      bias(`${r}.conv2.bias`, oc);
    }
  }
  snake('a.gen.wav.dac.post_snake', W.dac[4]);
  conv('a.gen.wav.dac.post_conv.weight', 'F16', 7, W.dac[4], 1, 0.05);
  bias('a.gen.wav.dac.post_conv.bias', 1);
  return { metadata: m, tensors: b.tensors, alignment: 32 };
}

export function tinyQwen3TtsTalkerBuffer(options: TinyQwen3TtsOptions = {}): Uint8Array {
  return ggufToBuffer(tinyQwen3TtsTalkerSpec(options));
}

export function tinyQwen3TtsMmprojBuffer(options: TinyQwen3TtsOptions = {}): Uint8Array {
  return ggufToBuffer(tinyQwen3TtsMmprojSpec(options));
}

function fixtureStem(options: TinyQwen3TtsOptions): string {
  const o = resolveTinyQwen3TtsOptions(options);
  // the widths appear only when they are not the defaults (the tiny fixtures keep their names)
  const sizes =
    (o.predictorFf !== 2 * o.predictorEmbd ? `-pf${o.predictorFf}` : '') +
    (o.wav !== QWEN3TTS_TINY_WAV ? `-w${Object.values(o.wav).flat().join('_')}` : '') +
    (o.speaker !== QWEN3TTS_TINY_SPEAKER ? `-sp${Object.values(o.speaker).join('_')}` : '');
  return (
    `s${o.seed}-e${o.nEmbd}-l${o.nLayers}-p${o.predictorEmbd}-pl${o.predictorLayers}` +
    `-ph${o.predictorHeads}_${o.predictorHeadsKv}-v${o.codeVocab}_${o.semanticVocab}` +
    `-d${o.dacStrides.join('_')}${sizes}-${fileSafe(o.variant)}-${fileSafe(o.name)}`
  );
}

export interface TinyQwen3TtsPair {
  /** The talker (arch qwen3tts). */
  model: string;
  /** The gen mmproj (speaker encoder + code predictor + code2wav). */
  mmproj: string;
  nEmbd: number;
  samplesPerFrame: number;
}

/** Writes both files into `dir` (talker.gguf, mmproj.gguf). Same options → byte-identical files. */
export async function writeTinyQwen3Tts(
  dir: string,
  options: TinyQwen3TtsOptions = {},
): Promise<TinyQwen3TtsPair> {
  const o = resolveTinyQwen3TtsOptions(options);
  const model = `${dir}/talker.gguf`;
  const mmproj = `${dir}/mmproj.gguf`;
  await writeGguf(model, tinyQwen3TtsTalkerSpec(o));
  await writeGguf(mmproj, tinyQwen3TtsMmprojSpec(o));
  return { model, mmproj, nEmbd: o.nEmbd, samplesPerFrame: qwen3ttsSamplesPerFrame(o) };
}

/** The cached tiny Qwen3-TTS pair with these options. */
export async function tinyQwen3TtsPair(
  options: TinyQwen3TtsOptions = {},
): Promise<TinyQwen3TtsPair> {
  const o = resolveTinyQwen3TtsOptions(options);
  const stem = fixtureStem(o);
  const [model, mmproj] = await Promise.all([
    fixturePath(`qwen3tts-talker-${stem}.gguf`, (p) => writeGguf(p, tinyQwen3TtsTalkerSpec(o))),
    fixturePath(`qwen3tts-mmproj-${stem}.gguf`, (p) => writeGguf(p, tinyQwen3TtsMmprojSpec(o))),
  ]);
  return { model, mmproj, nEmbd: o.nEmbd, samplesPerFrame: qwen3ttsSamplesPerFrame(o) };
}

/** The Qwen3-TTS pair at REALISTIC_QWEN3TTS's shapes (unless `options` say otherwise), written once into benchDir(). */
export function benchQwen3TtsPair(
  options: TinyQwen3TtsOptions = REALISTIC_QWEN3TTS,
): Promise<TinyQwen3TtsPair> {
  return inBenchDir(() => tinyQwen3TtsPair(options));
}
