import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { loadAddon, type NativeMelParams, runNative } from '@mm/native';
import { checkPath, readFileBounded, toBytes } from './options.js';

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

/** The sample rate of every Whisper-style audio encoder libmtmd knows. */
export const WHISPER_SAMPLE_RATE = 16_000;
/** The default limit on an audio file's size in bytes. */
export const DEFAULT_MAX_AUDIO_FILE_BYTES = 256 * 1024 * 1024;

export interface AudioDecodeOptions {
  /** Sample rate to decode to: the model's (default 16000). */
  sampleRate?: number;
  /** Longest audio accepted, in seconds at `sampleRate` (default 3600): MM_AUDIO_TOO_LONG. */
  maxSeconds?: number;
  signal?: AbortSignal;
}

export interface AudioFileOptions extends AudioDecodeOptions {
  /** Largest file accepted, in bytes (default 256 MiB): MM_AUDIO_TOO_LONG. */
  maxFileBytes?: number;
}

export interface AudioPCMOptions extends AudioDecodeOptions {
  /** Interleaved channels in `samples` (default 1); mixed to mono as miniaudio mixes them. */
  channels?: number;
}

function maxSamplesFor(options: AudioDecodeOptions): { sampleRate: number; maxSamples: number } {
  const sampleRate = checkInt(
    'sampleRate',
    options.sampleRate ?? WHISPER_SAMPLE_RATE,
    1000,
    384_000,
  );
  const maxSeconds = options.maxSeconds ?? DEFAULT_MAX_AUDIO_SECONDS;
  if (typeof maxSeconds !== 'number' || !(maxSeconds > 0)) {
    throw new MmInvalidArgumentError(
      'maxSeconds',
      `must be a number > 0, got ${String(maxSeconds)}`,
    );
  }
  return { sampleRate, maxSamples: Math.max(1, Math.floor(maxSeconds * sampleRate)) };
}

/**
 * Decoded audio: mono f32 PCM at the model's sample rate. Decoding is native and is libmtmd's
 * (mtmd-helper.cpp: the vendored miniaudio, one ma_decoder to mono f32 at the target rate), so the
 * samples are the ones libmtmd feeds its preprocessor: stereo is mixed as (L + R) / 2, resampling
 * is miniaudio's linear resampler after its 4th-order low-pass, MP3 keeps the encoder delay.
 * WAV, MP3 and FLAC are read; anything else, corrupt data or audio without a sample is
 * MM_AUDIO_DECODE (a WAV cut short decodes to the samples present, as in libmtmd); audio over
 * `maxSeconds` is MM_AUDIO_TOO_LONG, checked on the announced length before decoding.
 */
export class Audio {
  readonly sampleRate: number;
  /** Mono f32 samples. */
  readonly samples: Float32Array;

  private constructor(sampleRate: number, samples: Float32Array) {
    this.sampleRate = sampleRate;
    this.samples = samples;
  }

  /** Length in seconds. */
  get duration(): number {
    return this.samples.length / this.sampleRate;
  }

  /** Reads and decodes a WAV, MP3 or FLAC file. */
  static async fromFile(path: string, options: AudioFileOptions = {}): Promise<Audio> {
    checkPath(path);
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    maxSamplesFor(options);
    const maxBytes = options.maxFileBytes ?? DEFAULT_MAX_AUDIO_FILE_BYTES;
    if (typeof maxBytes !== 'number' || !(maxBytes >= 1)) {
      throw new MmInvalidArgumentError(
        'maxFileBytes',
        `must be a number >= 1, got ${String(maxBytes)}`,
      );
    }
    const bytes = await readFileBounded(
      path,
      maxBytes,
      (size) =>
        new MmError(
          ErrorCode.MM_AUDIO_TOO_LONG,
          `'${path}' is ${size} bytes, more than the limit of ${maxBytes}`,
          { details: { size, maxFileBytes: maxBytes } },
        ),
    );
    return Audio.fromBuffer(bytes, options);
  }

  /** Decodes a WAV, MP3 or FLAC file held in memory. */
  static async fromBuffer(
    buffer: Uint8Array | ArrayBuffer | ArrayBufferView,
    options: AudioDecodeOptions = {},
  ): Promise<Audio> {
    const bytes = toBytes(buffer);
    const { sampleRate, maxSamples } = maxSamplesFor(options);
    const signal = checkSignal(options.signal);
    const out = await runNative(
      () => loadAddon().decodeAudio(bytes, sampleRate, maxSamples),
      signal,
    );
    if (signal?.aborted) throw signal.reason;
    return new Audio(out.sampleRate, out.samples);
  }

  /**
   * Raw f32 PCM at `sampleRate` (interleaved when `channels` > 1), mixed to mono and resampled to
   * `options.sampleRate` (default 16000) through the same decoder: the result equals what libmtmd
   * decodes from an IEEE-float WAV holding these samples (a copy when nothing needs converting).
   */
  static async fromPCM(
    samples: Float32Array,
    sampleRate: number,
    options: AudioPCMOptions = {},
  ): Promise<Audio> {
    if (!(samples instanceof Float32Array)) {
      throw new MmInvalidArgumentError('samples', 'must be a Float32Array');
    }
    const rate = checkInt('sampleRate', sampleRate, 1000, 384_000);
    const channels = checkInt('channels', options.channels ?? 1, 1, 8);
    if (samples.length === 0 || samples.length % channels !== 0) {
      throw new MmInvalidArgumentError(
        'samples',
        `must hold a whole, non-zero number of ${channels}-channel frames, got ${samples.length} values`,
      );
    }
    const { sampleRate: target, maxSamples } = maxSamplesFor(options);
    // the output length is about frames * target / rate: refuse before converting
    if ((samples.length / channels) * (target / rate) > maxSamples + 1) {
      throw new MmError(
        ErrorCode.MM_AUDIO_TOO_LONG,
        `${(samples.length / channels / rate).toFixed(1)} s of audio is over the limit (maxSeconds)`,
        { details: { seconds: samples.length / channels / rate } },
      );
    }
    const signal = checkSignal(options.signal);
    const out = await runNative(
      () => loadAddon().convertPcm(samples, channels, rate, target, maxSamples),
      signal,
    );
    if (signal?.aborted) throw signal.reason;
    return new Audio(out.sampleRate, out.samples);
  }
}
