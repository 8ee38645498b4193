import { checkSignal, MmInvalidArgumentError } from '@mm/errors';
import { loadAddon, type NativeMelParams, runNative } from '@mm/native';

/**
 * The STFT of a Whisper-style log-mel. The defaults are what libmtmd (clip.cpp) hard-codes for
 * every Whisper-style audio projector (ultravox, qwen2a, voxtral, ...): 16 kHz, n_fft 400,
 * window 400, hop 160, 30 s chunks of 3000 frames; `nMel` comes from the mmproj
 * (`clip.audio.num_mel_bins`: 80 for Whisper up to large-v2, 128 for large-v3).
 */
export interface MelOptions {
  /** Mel bands (default 80). */
  nMel?: number;
  /** FFT size, even (default 400). */
  nFft?: number;
  /** Hann window length, <= nFft, centred in the frame (default 400). */
  windowLen?: number;
  /** Hop between frames, in samples (default 160). */
  hopLen?: number;
  /** Frames per chunk (default 3000, 30 s at hop 160). */
  framesPerChunk?: number;
  /** Longest input accepted, in seconds (default 3600). */
  maxSeconds?: number;
  signal?: AbortSignal;
}

/** A log-mel spectrogram split into equal chunks, as libmtmd feeds them to the encoder. */
export interface MelSpectrogram {
  nMel: number;
  /** Frames per chunk. */
  nFrames: number;
  /** One `[nMel][nFrames]` row-major matrix per chunk, in time order. */
  chunks: Float32Array[];
}

/** The default longest input of `logMelSpectrogram`, in seconds. */
export const DEFAULT_MAX_AUDIO_SECONDS = 3600;

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new MmInvalidArgumentError(
      name,
      `must be an integer in [${min}, ${max}], got ${String(v)}`,
    );
  }
  return v;
}

/**
 * libmtmd's Whisper log-mel (`mtmd_audio_preprocessor_whisper`) of mono PCM at `sampleRate`
 * (16000 for every Whisper-style model: resample first): reflection padding at the start, 30 s of
 * zeros at the end, periodic Hann window, power spectrum, Slaney mel filters computed (not read
 * from the mmproj), log10, clamp at (max − 8) over the whole signal, (x + 4) / 4, then chunks of
 * `framesPerChunk` frames; the last incomplete chunk is dropped, so n samples give
 * ⌊(⌊n / 160⌋ + 3001) / 3000⌋ chunks with the defaults: one up to 29.98 s, two from 29.99 s
 * (libmtmd's count). Runs off the JS thread.
 */
export async function logMelSpectrogram(
  pcm: Float32Array,
  sampleRate: number,
  options: MelOptions = {},
): Promise<MelSpectrogram> {
  if (!(pcm instanceof Float32Array)) {
    throw new MmInvalidArgumentError('pcm', 'must be a Float32Array');
  }
  if (pcm.length === 0) throw new MmInvalidArgumentError('pcm', 'is empty');
  const signal = checkSignal(options.signal);
  const params: NativeMelParams = {
    sampleRate: checkInt('sampleRate', sampleRate, 1000, 384_000),
    nMel: checkInt('nMel', options.nMel ?? 80, 1, 1024),
    nFft: checkInt('nFft', options.nFft ?? 400, 2, 16_384),
    windowLen: 0,
    hopLen: 0,
    framesPerChunk: 0,
  };
  if (params.nFft % 2 !== 0) throw new MmInvalidArgumentError('nFft', 'must be even');
  params.windowLen = checkInt('windowLen', options.windowLen ?? params.nFft, 1, params.nFft);
  params.hopLen = checkInt('hopLen', options.hopLen ?? 160, 1, params.nFft);
  params.framesPerChunk = checkInt('framesPerChunk', options.framesPerChunk ?? 3000, 1, 1 << 20);
  const maxSeconds = options.maxSeconds ?? DEFAULT_MAX_AUDIO_SECONDS;
  if (typeof maxSeconds !== 'number' || !(maxSeconds > 0)) {
    throw new MmInvalidArgumentError(
      'maxSeconds',
      `must be a number > 0, got ${String(maxSeconds)}`,
    );
  }
  if (pcm.length > maxSeconds * sampleRate) {
    throw new MmInvalidArgumentError(
      'pcm',
      `${(pcm.length / sampleRate).toFixed(1)} s of audio is over the limit of ${maxSeconds} s (maxSeconds)`,
    );
  }
  const out = await runNative(() => loadAddon().logMelSpectrogram(pcm, params), signal);
  if (signal?.aborted) throw signal.reason;
  return { nMel: out.nMel, nFrames: out.nFrames, chunks: out.chunks };
}
