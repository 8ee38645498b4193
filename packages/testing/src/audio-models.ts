import { writeFile } from 'node:fs/promises';
import { MmInvalidArgumentError } from '@mm/errors';
import {
  type GgufMetadata,
  type GgufTensorInput,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
  writeGguf,
} from '@mm/gguf';
import { encodeWav, synthAudio } from './audio.js';
import { inBenchDir } from './bench-models.js';
import { FIXTURE_GENERATOR_VERSION, fixturePath } from './fixtures.js';
import { PIXTRAL_CHAT_TEMPLATE } from './long-tail.js';
import { LLAMA3_CHAT_TEMPLATE } from './minicpmv.js';
import type { TinyMmprojPair } from './mmproj.js';
import {
  QWEN2VL_CHAT_TEMPLATE,
  QWEN2VL_SPECIAL_TOKENS,
  qwen2vlRopeSections,
  resolveTinyQwenVlMmprojOptions,
  type TinyQwenVlMmprojOptions,
  tinyQwenVlMmprojSpec,
} from './qwen2vl.js';
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
import { checkSeed, checkWeightType, fileSafe, positiveInt, TensorBuilder } from './weights.js';

/**
 * Tiny random mmproj files with a Whisper-style audio encoder, exactly as llama.cpp's converters
 * write them and libmtmd (pinned) loads them, and a tiny text model to pair with each:
 *
 * - the encoder (`a.*`): two 1-D convolutions (`a.conv1d.1` [3, n_mel, E], `a.conv1d.2` [3, E, E],
 *   stride 2; F16 kernels as the converter forces, biases [1, E]), a learned position table
 *   (`a.position_embd.weight` [E, 1500], F32), pre-norm blocks (`ln1`/`ln2` LayerNorms with biases,
 *   q/v/out with biases, k without, an up/down FFN with biases; libmtmd runs erf-GELU), `a.post_ln`;
 *   keys `clip.has_audio_encoder`, `clip.audio.*`.
 * - `ultravox` (Ultravox): frames stacked by `stack_factor`, RMSNorm (`mm.a.norm_pre`), `mm.a.mlp.1`
 *   (no bias), SwiGLU, RMSNorm (`mm.a.norm_mid`), `mm.a.mlp.2` (no bias). No audio markers.
 * - `qwen2a` (Qwen2-Audio): 2x average pooling before `a.post_ln`, then `mm.a.fc` (with bias).
 *   Markers `<|audio_bos|>` / `<|audio_eos|>`.
 * - `voxtral` (Voxtral): pooling as qwen2a, frames stacked by 4, `mm.a.mlp.1` -> erf-GELU ->
 *   `mm.a.mlp.2` (no biases). Marker `[BEGIN_AUDIO]` before the audio.
 * - `qwen2.5o` (Qwen2.5-Omni): one file with a Qwen2.5-VL vision tower (`v.*`, `mm.0`, `mm.2`, as
 *   tinyQwenVlMmprojSpec writes it) and a qwen2a audio encoder (`a.*`, `mm.a.fc`). With the shared
 *   `clip.projector_type = qwen2.5o`, libmtmd loads the vision part as `qwen2.5vl_merger` and the
 *   audio part as `qwen2a`; both project to the same width.
 *
 * libmtmd cuts audio into 30 s chunks of 3000 mel frames (1500 rows after the stride-2 conv) and
 * encodes each chunk alone; the tokens of one chunk are `audioTokensPerChunk`.
 */

export type AudioProjector = 'ultravox' | 'qwen2a' | 'voxtral' | 'qwen2.5o';
export const AUDIO_PROJECTORS: readonly AudioProjector[] = [
  'ultravox',
  'qwen2a',
  'voxtral',
  'qwen2.5o',
];

/** libmtmd's audio constants (Whisper): 16 kHz, hop 160, window 400, 30 s chunks of 3000 frames. */
export const WHISPER_SAMPLE_RATE = 16000;
export const WHISPER_HOP = 160;
export const WHISPER_CHUNK_FRAMES = 3000;
/** Rows of the position table Whisper has (and libmtmd needs): 3000 frames / 2. */
export const WHISPER_POSITIONS = 1500;

/** The markers libmtmd puts around each audio (mtmd.cpp init_audio): begin, end ('' = none). */
export const AUDIO_MARKERS: Readonly<Record<AudioProjector, readonly [string, string]>> = {
  ultravox: ['', ''],
  qwen2a: ['<|audio_bos|>', '<|audio_eos|>'],
  voxtral: ['[BEGIN_AUDIO]', ''],
  'qwen2.5o': ['<|audio_bos|>', '<|audio_eos|>'],
};

function checkProjector(p: unknown): AudioProjector {
  if (!AUDIO_PROJECTORS.includes(p as AudioProjector)) {
    throw new MmInvalidArgumentError(
      'projector',
      `'${String(p)}' is not one of ${AUDIO_PROJECTORS.join(', ')}`,
    );
  }
  return p as AudioProjector;
}

/** The projector type the audio part of a file runs as in libmtmd (qwen2.5o's audio is qwen2a). */
function audioType(p: AudioProjector): 'ultravox' | 'qwen2a' | 'voxtral' {
  return p === 'qwen2.5o' ? 'qwen2a' : p;
}

/** The default `clip.audio.projector.stack_factor`: Ultravox's 8, Voxtral's 4, none for Qwen. */
function defaultStack(p: AudioProjector): number {
  return p === 'ultravox' ? 8 : p === 'voxtral' ? 4 : 0;
}

// ---- token counts ---------------------------------------------------------------------------

/**
 * The number of 3000-frame chunks libmtmd's Whisper preprocessor makes of `nSamples` samples at
 * 16 kHz (mtmd-audio.cpp): the signal is padded with 30 s of zeros and 200 reflected samples at each
 * end (at least n_fft/2 + 1 samples first), framed at hop 160 / window 400, and cut into chunks of
 * 3000 frames; the last, incomplete chunk is dropped. So every signal gets at least one chunk, and a
 * signal of exactly 30 s gets two (the second nearly silent).
 */
export function mtmdAudioChunks(nSamples: number): number {
  if (!Number.isSafeInteger(nSamples) || nSamples < 0) {
    throw new MmInvalidArgumentError('nSamples', `must be an integer >= 0, got ${nSamples}`);
  }
  const n = Math.max(nSamples, 201) + 30 * WHISPER_SAMPLE_RATE + 400;
  const frames = Math.floor((n - 400) / WHISPER_HOP) + 1;
  return Math.floor(frames / WHISPER_CHUNK_FRAMES);
}

/**
 * The tokens libmtmd expects of one 3000-frame chunk (clip.cpp clip_n_output_tokens): the frames,
 * rounded up to a multiple of the stack factor and divided by it (stacking projectors), halved by
 * the stride-2 conv, and halved again by the average pooling (qwen2a, voxtral). Ultravox (stack 8)
 * and Voxtral (stack 4): 187; qwen2a / qwen2.5o: 750.
 */
export function audioTokensPerChunk(projector: AudioProjector, stackFactor?: number): number {
  const p = checkProjector(projector);
  const type = audioType(p);
  let n = WHISPER_CHUNK_FRAMES;
  if (type !== 'qwen2a') {
    const s = stackFactor ?? defaultStack(p);
    n = Math.ceil(n / s);
  }
  n = Math.floor(n / 2);
  if (type !== 'ultravox') n = Math.floor(n / 2);
  return n;
}

/**
 * The rows libmtmd's graph (models/whisper-enc.cpp) gives for one chunk: 1500 after the conv stem,
 * 750 after pooling (qwen2a, voxtral), then for stacking projectors `GGML_PAD(rows * E, E * stack)
 * / (E * stack)`. GGML_PAD is a bit mask, exact only for power-of-two strides: libmtmd aborts
 * ("Invalid number of output tokens") unless this equals audioTokensPerChunk, so a stacking
 * projector needs a width whose stride the mask rounds down (E = 80, 160, 640, 1280 with stack 8
 * or 4 do; 64 or 128 do not).
 */
export function audioGraphRowsPerChunk(
  projector: AudioProjector,
  nEmbd: number,
  stackFactor?: number,
): number {
  const p = checkProjector(projector);
  const type = audioType(p);
  let rows = WHISPER_CHUNK_FRAMES / 2;
  if (type !== 'ultravox') rows /= 2;
  if (type === 'qwen2a') return rows;
  const s = stackFactor ?? defaultStack(p);
  if (s <= 1) return rows;
  const total = BigInt(rows) * BigInt(nEmbd);
  const stride = BigInt(nEmbd) * BigInt(s);
  const padded = (total + stride - 1n) & ~(stride - 1n);
  return Number(padded / stride);
}

// ---- mmproj -----------------------------------------------------------------------------------

/** Options of the qwen2.5o file's vision tower (the Qwen2.5-VL one of tinyQwenVlMmprojSpec). */
export type TinyAudioVisionOptions = Omit<
  TinyQwenVlMmprojOptions,
  'family' | 'projectionDim' | 'seed' | 'name'
>;

export interface TinyAudioMmprojOptions {
  projector: AudioProjector;
  /** PRNG seed of the weights. Default 0. */
  seed?: number;
  /**
   * Width of the encoder. Default 80 (not 64: libmtmd's frame stacking aborts at power-of-two
   * strides, see audioGraphRowsPerChunk).
   */
  nEmbd?: number;
  /**
   * Default 5 (head dimension 16: libmtmd's CPU flash attention, on by default, is several times
   * slower at head sizes that are not multiples of 16). Must divide nEmbd.
   */
  nHead?: number;
  /** FFN width. Default 4 * nEmbd (Whisper's). */
  nFf?: number;
  /** Default 2. */
  nLayers?: number;
  /** `clip.audio.num_mel_bins`. Default 80 (Whisper before large-v3; 128 after). */
  nMel?: number;
  /** Rows of `a.position_embd.weight` (at least 1500). Default 1500. */
  nPos?: number;
  /** The projector's output width: the text model's n_embd. Default 64. */
  projectionDim?: number;
  /** `clip.audio.projector.stack_factor` (ultravox, voxtral). Default 8 / 4. */
  stackFactor?: number;
  /** ultravox: width of `mm.a.mlp.1`'s output (the SwiGLU halves it). Default 2 * projectionDim. */
  projectorHidden?: number;
  /** `clip.audio.attention.layer_norm_epsilon`. Default 1e-5. */
  eps?: number;
  /** Type of the matrices (attention, FFN, projector); norms, biases, positions stay F32. Default F32. */
  weightType?: 'F32' | 'F16';
  /**
   * Type of the two conv kernels. Default F16, as the converter forces (libmtmd's im2col rounds the
   * kernel to F16 either way).
   */
  convWeightType?: 'F32' | 'F16';
  /**
   * Where the projector type is: 'common' = `clip.projector_type` (what the converters write;
   * qwen2.5o), 'modality' = `clip.audio.projector_type` (and `clip.vision.projector_type =
   * qwen2.5vl_merger` for qwen2.5o), the keys of files with mixed modalities. Default 'common'.
   */
  projectorTypeKey?: 'common' | 'modality';
  /** qwen2.5o: the vision tower (Qwen2.5-VL; default tinyQwenVlMmprojSpec's sizes, F32). */
  vision?: TinyAudioVisionOptions;
  /** Uniform weights, one PRNG draw each (large benchmark shapes). Default false. */
  fastWeights?: boolean;
  /** general.name. Default `tiny-mmproj-<projector>-s<seed>`. */
  name?: string;
}

export interface ResolvedTinyAudioMmprojOptions
  extends Required<Omit<TinyAudioMmprojOptions, 'vision'>> {
  /** The vision tower of a qwen2.5o file (null for the others). */
  vision: TinyAudioVisionOptions | null;
}

/**
 * A Whisper-large-shaped encoder (width 1280, 20 heads, FFN 5120, 128 mel bins, 1500 positions),
 * random F16 weights, projecting to 2048 (Llama-3.2-1B's width, as Ultravox v0.5 1B). Whisper-large
 * has 32 blocks; 4 here so that one file stays about 250 MB: pass `nLayers: 32` for the full depth.
 */
export const REALISTIC_WHISPER_LARGE: Omit<TinyAudioMmprojOptions, 'projector'> = {
  nEmbd: 1280,
  nHead: 20,
  nFf: 5120,
  nLayers: 4,
  nMel: 128,
  nPos: 1500,
  projectionDim: 2048,
  weightType: 'F16',
  fastWeights: true,
  name: 'whisper-large-random',
};

export function resolveTinyAudioMmprojOptions(
  options: TinyAudioMmprojOptions,
): ResolvedTinyAudioMmprojOptions {
  const projector = checkProjector(options.projector);
  const seed = checkSeed(options.seed ?? 0);
  const nEmbd = positiveInt('nEmbd', options.nEmbd ?? 80);
  const projectionDim = positiveInt('projectionDim', options.projectionDim ?? 64);
  const stacking = projector === 'ultravox' || projector === 'voxtral';
  const r: ResolvedTinyAudioMmprojOptions = {
    projector,
    seed,
    nEmbd,
    nHead: positiveInt('nHead', options.nHead ?? 5),
    nFf: positiveInt('nFf', options.nFf ?? 4 * nEmbd),
    nLayers: positiveInt('nLayers', options.nLayers ?? 2),
    nMel: positiveInt('nMel', options.nMel ?? 80),
    nPos: positiveInt('nPos', options.nPos ?? WHISPER_POSITIONS),
    projectionDim,
    stackFactor: stacking
      ? positiveInt('stackFactor', options.stackFactor ?? defaultStack(projector))
      : 0,
    projectorHidden:
      projector === 'ultravox'
        ? positiveInt('projectorHidden', options.projectorHidden ?? 2 * projectionDim)
        : 0,
    eps: options.eps ?? 1e-5,
    weightType: checkWeightType(options.weightType ?? 'F32'),
    convWeightType: checkWeightType(options.convWeightType ?? 'F16'),
    projectorTypeKey: options.projectorTypeKey ?? 'common',
    vision: projector === 'qwen2.5o' ? { ...(options.vision ?? {}) } : null,
    fastWeights: options.fastWeights ?? false,
    name: options.name ?? `tiny-mmproj-${projector.replace('.', '')}-s${seed}`,
  };
  if (options.stackFactor !== undefined && !stacking) {
    throw new MmInvalidArgumentError('stackFactor', 'ultravox and voxtral only');
  }
  if (options.projectorHidden !== undefined && projector !== 'ultravox') {
    throw new MmInvalidArgumentError('projectorHidden', 'ultravox only');
  }
  if (options.vision !== undefined && projector !== 'qwen2.5o') {
    throw new MmInvalidArgumentError('vision', 'qwen2.5o only');
  }
  if (r.nEmbd % r.nHead !== 0) {
    throw new MmInvalidArgumentError('nHead', `${r.nHead} does not divide nEmbd ${r.nEmbd}`);
  }
  if (r.nMel > 256) {
    throw new MmInvalidArgumentError('nMel', `libmtmd takes at most 256 mel bins, got ${r.nMel}`);
  }
  if (r.nPos < WHISPER_POSITIONS) {
    throw new MmInvalidArgumentError('nPos', `libmtmd needs at least 1500 rows, got ${r.nPos}`);
  }
  if (r.projectorHidden % 2 !== 0) {
    throw new MmInvalidArgumentError('projectorHidden', 'must be even (the SwiGLU halves it)');
  }
  if (!(r.eps > 0)) throw new MmInvalidArgumentError('eps', 'must be > 0');
  if (r.projectorTypeKey !== 'common' && r.projectorTypeKey !== 'modality') {
    throw new MmInvalidArgumentError('projectorTypeKey', "must be 'common' or 'modality'");
  }
  if (stacking) {
    const rows = audioGraphRowsPerChunk(projector, r.nEmbd, r.stackFactor);
    const want = audioTokensPerChunk(projector, r.stackFactor);
    if (rows !== want) {
      throw new MmInvalidArgumentError(
        'nEmbd',
        `libmtmd's frame stacking gives ${rows} rows per chunk at nEmbd ${r.nEmbd} and stack ` +
          `${r.stackFactor} but expects ${want} (it would abort); pick another width (e.g. 80)`,
      );
    }
  }
  if (r.vision !== null) visionOptions(r);
  return r;
}

/** The Qwen2.5-VL tower of a qwen2.5o file: same seed and projection width as the audio part. */
function visionOptions(r: ResolvedTinyAudioMmprojOptions): TinyQwenVlMmprojOptions {
  const v: TinyQwenVlMmprojOptions = {
    weightType: r.weightType,
    fastWeights: r.fastWeights,
    ...(r.vision ?? {}),
    family: 'qwen2.5vl_merger',
    projectionDim: r.projectionDim,
    seed: r.seed,
    name: r.name,
  };
  resolveTinyQwenVlMmprojOptions(v);
  return v;
}

/**
 * The metadata and tensors of a tiny audio mmproj, deterministic in the options (a qwen2.5o file:
 * the Qwen2.5-VL vision tower's keys and tensors first, then the audio ones).
 */
export function tinyAudioMmprojSpec(options: TinyAudioMmprojOptions): GgufWriteSpec {
  const o = resolveTinyAudioMmprojOptions(options);
  const E = o.nEmbd;
  const D = o.projectionDim;
  const w = o.weightType;
  const type = audioType(o.projector);
  const omni = o.projector === 'qwen2.5o';
  const description = gv.string(
    `tiny random ${o.projector} audio mmproj (@mm/testing v${FIXTURE_GENERATOR_VERSION})`,
  );

  let m: GgufMetadata;
  let visionTensors: readonly GgufTensorInput[] = [];
  if (omni) {
    const v = tinyQwenVlMmprojSpec(visionOptions(o));
    m = v.metadata as GgufMetadata;
    visionTensors = v.tensors ?? [];
  } else {
    m = new Map([
      ['general.architecture', gv.string('clip')],
      ['general.name', gv.string(o.name)],
    ]);
  }
  m.set('general.description', description);
  m.set('general.file_type', gv.uint32(w === 'F16' ? 1 : 0));
  if (o.projectorTypeKey === 'common') {
    m.set('clip.projector_type', gv.string(o.projector));
  } else {
    m.delete('clip.projector_type');
    if (omni) m.set('clip.vision.projector_type', gv.string('qwen2.5vl_merger'));
    m.set('clip.audio.projector_type', gv.string(type));
  }
  m.set('clip.has_audio_encoder', gv.bool(true));
  m.set('clip.audio.projection_dim', gv.uint32(D));
  m.set('clip.audio.embedding_length', gv.uint32(E));
  m.set('clip.audio.feed_forward_length', gv.uint32(o.nFf));
  m.set('clip.audio.block_count', gv.uint32(o.nLayers));
  m.set('clip.audio.attention.head_count', gv.uint32(o.nHead));
  m.set('clip.audio.num_mel_bins', gv.uint32(o.nMel));
  m.set('clip.audio.attention.layer_norm_epsilon', gv.float32(o.eps));
  if (o.stackFactor > 0) m.set('clip.audio.projector.stack_factor', gv.uint32(o.stackFactor));

  // the audio weights come from their own stream (seed + 1 for qwen2.5o: the vision tower used seed)
  const b = new TensorBuilder(omni ? (o.seed + 1) >>> 0 : o.seed, o.fastWeights);
  b.add('a.conv1d.1.weight', o.convWeightType, [3, o.nMel, E], 1 / Math.sqrt(3 * o.nMel));
  b.add('a.conv1d.1.bias', 'F32', [1, E], 0.02);
  b.add('a.conv1d.2.weight', o.convWeightType, [3, E, E], 1 / Math.sqrt(3 * E));
  b.add('a.conv1d.2.bias', 'F32', [1, E], 0.02);
  b.add('a.position_embd.weight', 'F32', [E, o.nPos], 0.5);
  for (let il = 0; il < o.nLayers; il++) {
    const p = `a.blk.${il}`;
    b.norm(`${p}.ln1`, E, true);
    b.linear(`${p}.attn_q`, w, E, E);
    b.matrix(`${p}.attn_k.weight`, w, E, E);
    b.linear(`${p}.attn_v`, w, E, E);
    b.linear(`${p}.attn_out`, w, E, E);
    b.norm(`${p}.ln2`, E, true);
    b.linear(`${p}.ffn_up`, w, E, o.nFf);
    b.linear(`${p}.ffn_down`, w, o.nFf, E);
  }
  b.norm('a.post_ln', E, true);
  if (type === 'ultravox') {
    const S = o.stackFactor * E;
    b.vector('mm.a.norm_pre.weight', S, 0.1, 1);
    b.matrix('mm.a.mlp.1.weight', w, S, o.projectorHidden);
    b.vector('mm.a.norm_mid.weight', o.projectorHidden / 2, 0.1, 1);
    b.matrix('mm.a.mlp.2.weight', w, o.projectorHidden / 2, D);
  } else if (type === 'qwen2a') {
    b.linear('mm.a.fc', w, E, D);
  } else {
    b.matrix('mm.a.mlp.1.weight', w, o.stackFactor * E, D);
    b.matrix('mm.a.mlp.2.weight', w, D, D);
  }
  return { metadata: m, tensors: [...visionTensors, ...b.tensors], alignment: 32 };
}

export function tinyAudioMmprojBuffer(options: TinyAudioMmprojOptions): Uint8Array {
  return ggufToBuffer(tinyAudioMmprojSpec(options));
}

/** Writes the tiny audio mmproj to `path`. Same options → byte-identical file. */
export async function writeTinyAudioMmproj(
  path: string,
  options: TinyAudioMmprojOptions,
): Promise<void> {
  await writeGguf(path, tinyAudioMmprojSpec(options));
}

/** File name of a tiny audio mmproj fixture: every resolved option is part of it. */
export function tinyAudioMmprojFixtureName(options: TinyAudioMmprojOptions): string {
  const o = resolveTinyAudioMmprojOptions(options);
  let vision = '';
  if (o.vision !== null) {
    const v = resolveTinyQwenVlMmprojOptions(visionOptions(o));
    vision =
      `-v${v.patchSize}_${v.imageSize}_${v.nEmbd}_${v.nHead}_${v.nFf}_${v.nLayers}_${v.nWaPattern}` +
      `_${v.weightType.toLowerCase()}`;
  }
  return (
    `mmproj-audio-${o.projector.replace('.', '')}-s${o.seed}-e${o.nEmbd}-h${o.nHead}-ff${o.nFf}` +
    `-l${o.nLayers}-mel${o.nMel}-pos${o.nPos}-d${o.projectionDim}-st${o.stackFactor}` +
    `-ph${o.projectorHidden}-eps${o.eps}-${o.weightType.toLowerCase()}-conv${o.convWeightType.toLowerCase()}` +
    `${o.projectorTypeKey === 'modality' ? '-mkeys' : ''}${vision}${o.fastWeights ? '-fast' : ''}` +
    `-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny audio mmproj with these options. */
export function tinyAudioMmprojFixture(options: TinyAudioMmprojOptions): Promise<string> {
  return fixturePath(tinyAudioMmprojFixtureName(options), (p) => writeTinyAudioMmproj(p, options));
}

// ---- text models ---------------------------------------------------------------------------

/** The text-model architecture each projector's real models pair with. */
export function audioTextArch(projector: AudioProjector): 'llama' | 'qwen2' | 'qwen2vl' {
  const p = checkProjector(projector);
  return p === 'qwen2a' ? 'qwen2' : p === 'qwen2.5o' ? 'qwen2vl' : 'llama';
}

/** Added tokens of each pairing's vocabulary (control tokens, after the regular ones). */
export const AUDIO_TEXT_SPECIAL_TOKENS: Readonly<Record<AudioProjector, readonly string[]>> = {
  // Llama 3.2 (Ultravox v0.5)
  ultravox: [
    '<|begin_of_text|>',
    '<|end_of_text|>',
    '<|start_header_id|>',
    '<|end_header_id|>',
    '<|eot_id|>',
  ],
  qwen2a: [
    '<|endoftext|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|AUDIO|>',
    '<|audio_bos|>',
    '<|audio_eos|>',
  ],
  // Mistral tekken (Voxtral)
  voxtral: [
    '<unk>',
    '<s>',
    '</s>',
    '[INST]',
    '[/INST]',
    '[AUDIO]',
    '[BEGIN_AUDIO]',
    '[TRANSCRIBE]',
    '[SYSTEM_PROMPT]',
    '[/SYSTEM_PROMPT]',
  ],
  'qwen2.5o': [...QWEN2VL_SPECIAL_TOKENS, '<|AUDIO|>', '<|audio_bos|>', '<|audio_eos|>'],
};

/** The byte-level BPE vocabulary of the text model paired with `projector`. */
export function tinyAudioTextVocab(projector: AudioProjector): TextVocab {
  return bpeVocab(AUDIO_TEXT_SPECIAL_TOKENS[checkProjector(projector)]);
}

/** All sizes of the tiny text model (n_embd defaults to 64, the tiny mmproj's projection width). */
export type TinyAudioTextOptions = TinyTextModelOptions;

export type ResolvedTinyAudioTextOptions = Required<TinyAudioTextOptions>;

export function resolveTinyAudioTextOptions(
  projector: AudioProjector,
  opts: TinyAudioTextOptions = {},
): ResolvedTinyAudioTextOptions {
  const p = checkProjector(projector);
  const r: ResolvedTinyAudioTextOptions = {
    ...resolveTextModel(opts, {
      name: (seed) => `tiny-${audioTextArch(p)}-for-${p.replace('.', '')}-s${seed}`,
    }),
    weightType: checkWeightType(opts.weightType ?? 'F32'),
  };
  const headDim = r.nEmbd / r.nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new MmInvalidArgumentError('nHead', 'must divide nEmbd into an even head dimension');
  }
  if (p === 'qwen2.5o' && headDim % 4 !== 0) {
    throw new MmInvalidArgumentError(
      'nHead',
      'M-RoPE needs a head dimension that is a multiple of 4',
    );
  }
  checkTextModel(r);
  return r;
}

/**
 * The metadata and tensors of the tiny text model paired with `projector`, deterministic in the
 * options: `llama` with Llama 3's specials and template (ultravox) or Mistral's tekken specials
 * (voxtral, `[BEGIN_AUDIO]`), `qwen2` with ChatML and the Qwen2-Audio markers (qwen2a), `qwen2vl`
 * (M-RoPE) with Qwen2-VL's specials plus the audio markers (qwen2.5o). Logits of control tokens and
 * non-text bytes are near zero, so greedy generation prints text and runs to the token limit.
 */
export function tinyAudioTextSpec(
  projector: AudioProjector,
  options: TinyAudioTextOptions = {},
): GgufWriteSpec {
  const o = resolveTinyAudioTextOptions(projector, options);
  const p = checkProjector(projector);
  const a = audioTextArch(p);
  const vocab = tinyAudioTextVocab(p);
  const id = (t: string) => vocab.tokens.indexOf(t);
  const headDim = o.nEmbd / o.nHead;
  const metadata = textModelMetadata(a, o, `${a} text model for ${p}`, vocab.tokens.length, [
    [`${a}.rope.freq_base`, gv.float32(a === 'llama' ? 5e5 : 1e6)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.float32(a === 'llama' ? 1e-5 : 1e-6)],
    ...bpeTokenizerKeys(p === 'voxtral' ? 'tekken' : a === 'llama' ? 'llama-bpe' : 'qwen2', vocab),
  ]);
  if (p === 'ultravox') {
    metadata.set(`${a}.rope.dimension_count`, gv.uint32(headDim));
    metadata.set('tokenizer.ggml.bos_token_id', gv.uint32(id('<|begin_of_text|>')));
    metadata.set('tokenizer.ggml.eos_token_id', gv.uint32(id('<|end_of_text|>')));
    metadata.set('tokenizer.ggml.eot_token_id', gv.uint32(id('<|eot_id|>')));
    metadata.set('tokenizer.ggml.add_bos_token', gv.bool(true));
    metadata.set('tokenizer.chat_template', gv.string(LLAMA3_CHAT_TEMPLATE));
  } else if (p === 'voxtral') {
    metadata.set(`${a}.rope.dimension_count`, gv.uint32(headDim));
    metadata.set('tokenizer.ggml.bos_token_id', gv.uint32(id('<s>')));
    metadata.set('tokenizer.ggml.eos_token_id', gv.uint32(id('</s>')));
    metadata.set('tokenizer.ggml.unknown_token_id', gv.uint32(id('<unk>')));
    metadata.set('tokenizer.ggml.add_bos_token', gv.bool(true));
    metadata.set('tokenizer.chat_template', gv.string(PIXTRAL_CHAT_TEMPLATE));
  } else {
    const template = p === 'qwen2.5o' ? QWEN2VL_CHAT_TEMPLATE : CHATML_TEMPLATE;
    for (const [k, v] of qwenChatKeys(vocab, template)) metadata.set(k, v);
  }
  if (a === 'qwen2vl') {
    metadata.set(
      `${a}.rope.dimension_sections`,
      gv.array('int32', new Int32Array(qwen2vlRopeSections(headDim))),
    );
  }
  const tensors = decoderTensors(o, vocab, {
    tokenEmbdStd: 1,
    qkvBias: a !== 'llama',
    kvDim: headDim * o.nHeadKv,
  });
  return { metadata, tensors, alignment: 32 };
}

export function tinyAudioTextBuffer(
  projector: AudioProjector,
  options: TinyAudioTextOptions = {},
): Uint8Array {
  return ggufToBuffer(tinyAudioTextSpec(projector, options));
}

/** File name of a tiny audio-pairing text model: every resolved option is part of it. */
export function tinyAudioTextFixtureName(
  projector: AudioProjector,
  options: TinyAudioTextOptions = {},
): string {
  const o = resolveTinyAudioTextOptions(projector, options);
  return (
    `tiny-${audioTextArch(projector)}-for-${projector.replace('.', '')}-s${o.seed}-l${o.nLayers}` +
    `-e${o.nEmbd}-h${o.nHead}-kv${o.nHeadKv}-ff${o.nFf}-c${o.nCtx}-${o.weightType.toLowerCase()}` +
    `-${fileSafe(o.name)}.gguf`
  );
}

/** A cached tiny text model for `projector`. */
export function tinyAudioTextFixture(
  projector: AudioProjector,
  options: TinyAudioTextOptions = {},
): Promise<string> {
  return fixturePath(tinyAudioTextFixtureName(projector, options), (p) =>
    writeGguf(p, tinyAudioTextSpec(projector, options)),
  );
}

// ---- pairs ----------------------------------------------------------------------------------

export interface TinyAudioPair extends TinyMmprojPair {
  /** The text model (the same path as `llm`). */
  model: string;
  projector: AudioProjector;
  /** Tokens of each 30 s chunk (audioTokensPerChunk). */
  tokensPerChunk: number;
  /** The markers libmtmd puts around each audio (AUDIO_MARKERS). */
  markers: readonly [string, string];
}

/**
 * A cached tiny audio mmproj and the matching tiny text model (n_embd = projectionDim; for wide
 * projections the text model has 16 heads and one layer, F16). `text` overrides its options.
 */
export async function tinyAudioPair(
  options: TinyAudioMmprojOptions,
  text: TinyAudioTextOptions = {},
): Promise<TinyAudioPair> {
  const o = resolveTinyAudioMmprojOptions(options);
  const D = o.projectionDim;
  const wide = D > 256;
  const textOptions: TinyAudioTextOptions = {
    seed: o.seed,
    nEmbd: D,
    ...(wide ? { nHead: 16, nHeadKv: 4, nLayers: 1, nFf: 256, weightType: 'F16' as const } : {}),
    ...text,
  };
  const [mmproj, llm] = await Promise.all([
    tinyAudioMmprojFixture(options),
    tinyAudioTextFixture(o.projector, textOptions),
  ]);
  return {
    mmproj,
    llm,
    model: llm,
    nEmbd: D,
    projector: o.projector,
    tokensPerChunk: audioTokensPerChunk(o.projector, o.stackFactor || undefined),
    markers: AUDIO_MARKERS[o.projector],
  };
}

/**
 * Writes (once) a Whisper-large-shaped audio mmproj of `projector` (REALISTIC_WHISPER_LARGE unless
 * `options` say otherwise; qwen2.5o gets the tiny vision tower unless `options.vision` is given) and
 * its text model into the benchmark cache outside the repo (`benchDir()`).
 */
export async function benchAudioPair(
  projector: AudioProjector,
  options: Omit<TinyAudioMmprojOptions, 'projector'> = REALISTIC_WHISPER_LARGE,
): Promise<TinyAudioPair> {
  return inBenchDir(() => tinyAudioPair({ ...options, projector }));
}

// ---- test audio -----------------------------------------------------------------------------

/**
 * A cached 16-bit mono WAV of `seconds` of synthesised audio at `sampleRate` (default 16 kHz): a
 * 440 Hz tone, a 200 Hz -> 4 kHz chirp and a little noise (seeded).
 */
export function synthWavFixture(
  seconds: number,
  options: { sampleRate?: number; seed?: number } = {},
): Promise<string> {
  const rate = positiveInt('sampleRate', options.sampleRate ?? WHISPER_SAMPLE_RATE);
  const seed = checkSeed(options.seed ?? 0);
  if (!(seconds > 0) || !Number.isFinite(seconds)) {
    throw new MmInvalidArgumentError('seconds', `must be a finite number > 0, got ${seconds}`);
  }
  return fixturePath(`synth-audio-${seconds}s-${rate}hz-s${seed}.wav`, async (p) => {
    const samples = synthAudio(seconds, rate, [
      { kind: 'tone', hz: 440, amplitude: 0.3 },
      { kind: 'chirp', fromHz: 200, toHz: 4000, amplitude: 0.3 },
      { kind: 'noise', amplitude: 0.05, seed },
    ]);
    await writeFile(p, encodeWav(samples, { sampleRate: rate }));
  });
}
