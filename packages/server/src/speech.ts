import { type SpeakOptions, SpeechModel } from '@mm/core';
import { MmInvalidArgumentError } from '@mm/errors';
import type { FastifyReply } from 'fastify';
import { SlotPool } from './slots.js';
import {
  DEFAULT_SPEECH_LIMITS,
  type SpeechLimits,
  type SpeechRequest,
  type VoiceTable,
} from './speech-shapes.js';

/** A text-to-speech model served beside the chat model (`POST /v1/audio/speech`). */
export interface SpeechServeOptions {
  /** The talker GGUF (llama.cpp arch `qwen3tts` or `pockettts`). */
  model: string;
  /** Its speech-generation mmproj. */
  mmproj: string;
  /** The id clients send as `model` (default: the talker file's name without `.gguf`). */
  modelId?: string;
  /**
   * Named voices: a reference recording each (a path or the file's bytes), encoded once at start
   * by the model's speaker encoder. Names are 1-64 of [A-Za-z0-9_.-].
   */
  voices?: Readonly<Record<string, string | Uint8Array>>;
  /**
   * The voice a request without `voice`, or with `default` or one of OpenAI's names ('alloy',
   * ...), gets: default the first of `voices`; with no voices, none (the model's own voice).
   */
  defaultVoice?: string;
  /** CPU threads (default: the server's). */
  threads?: number;
  /** KV cache positions of the talker (default: the model's, at most 4096). */
  contextSize?: number;
  limits?: Partial<SpeechLimits>;
}

type Voice = Awaited<ReturnType<SpeechModel['encodeVoice']>>;

const VOICE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The loaded speech model, its encoded voices, and a one-slot queue in front of it: one generation
 * at a time per model, the others wait in a bounded line (429 when it is full).
 */
export class SpeechService {
  readonly modelId: string;
  readonly model: SpeechModel;
  readonly limits: SpeechLimits;
  readonly voices: VoiceTable;
  readonly pool: SlotPool<SpeechModel>;
  readonly #encoded: ReadonlyMap<string, Voice>;

  private constructor(
    modelId: string,
    model: SpeechModel,
    limits: SpeechLimits,
    encoded: Map<string, Voice>,
    defaultVoice: string | undefined,
    maxQueue: number,
  ) {
    this.modelId = modelId;
    this.model = model;
    this.limits = limits;
    this.#encoded = encoded;
    this.voices = { names: [...encoded.keys()], defaultVoice };
    this.pool = new SlotPool([model], maxQueue);
  }

  /** Loads the model and encodes every voice; a bad file or voice fails here, with a typed error. */
  static async load(
    options: SpeechServeOptions,
    defaults: { threads: number; maxQueue: number },
  ): Promise<SpeechService> {
    const limits: SpeechLimits = { ...DEFAULT_SPEECH_LIMITS };
    for (const [key, v] of Object.entries(options.limits ?? {})) {
      if (v !== undefined && Object.hasOwn(limits, key)) limits[key as keyof SpeechLimits] = v;
    }
    for (const [key, v] of Object.entries(limits)) {
      if (!Number.isInteger(v) || v < 1)
        throw new MmInvalidArgumentError(`speech.limits.${key}`, 'must be an integer >= 1');
    }
    const names = Object.keys(options.voices ?? {});
    for (const name of names) {
      if (!VOICE_NAME.test(name))
        throw new MmInvalidArgumentError('speech.voices', `'${name}' is not a voice name`);
    }
    if (options.defaultVoice !== undefined && !names.includes(options.defaultVoice)) {
      throw new MmInvalidArgumentError(
        'speech.defaultVoice',
        `'${options.defaultVoice}' is not one of the voices (${names.join(', ') || 'none'})`,
      );
    }
    const model = await SpeechModel.load({
      model: options.model,
      mmproj: options.mmproj,
      threads: options.threads ?? defaults.threads,
      contextSize: options.contextSize,
    });
    try {
      const encoded = new Map<string, Voice>();
      for (const [name, source] of Object.entries(options.voices ?? {})) {
        encoded.set(name, await model.encodeVoice(source));
      }
      const modelId =
        options.modelId ??
        (options.model.split(/[\\/]/).pop() ?? options.model).replace(/\.gguf$/i, '');
      return new SpeechService(
        modelId,
        model,
        limits,
        encoded,
        options.defaultVoice ?? names[0],
        defaults.maxQueue,
      );
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  get sampleRate(): number {
    return this.model.sampleRate;
  }

  /** What /health says about it. */
  info() {
    return {
      model: this.modelId,
      pipeline: this.model.pipeline,
      sample_rate: this.sampleRate,
      voices: this.voices.names,
      default_voice: this.voices.defaultVoice ?? null,
      in_use: this.pool.inUse,
      queued: this.pool.queued,
    };
  }

  /** speak()'s options for a request. */
  speakOptions(req: SpeechRequest, signal: AbortSignal): SpeakOptions {
    return {
      voice: req.voice === undefined ? undefined : this.#encoded.get(req.voice),
      ...(req.seed !== undefined && { sampling: { seed: req.seed } }),
      ...(req.language !== undefined && { language: req.language }),
      maxFrames: this.limits.maxFrames,
      signal,
    };
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** 16-bit little-endian samples, converted exactly as the WAV writer (and llama-tts) does. */
export function toS16le(pcm: Float32Array, sampleRate: number): Buffer {
  return SpeechModel.toWav(pcm, sampleRate).subarray(44);
}

/**
 * The 44-byte header of a WAV whose length is not known yet: RIFF and data sizes 0xFFFFFFFF (what
 * streaming writers such as ffmpeg's use; players read to the end of the stream).
 */
export function streamingWavHeader(sampleRate: number): Buffer {
  const h = Buffer.from(SpeechModel.toWav(new Float32Array(0), sampleRate));
  h.writeUInt32LE(0xffffffff, 4);
  h.writeUInt32LE(0xffffffff, 40);
  return h;
}

/**
 * Generates the speech of `req` and sends it. Nothing is sent before the first chunk of PCM: an
 * error until then (a bad language, a prompt longer than the context) is still a plain JSON
 * reply. Streamed, each chunk is written as soon as the model yields it; an error after the first
 * byte ends the connection without the last chunk, so the client sees a broken transfer rather
 * than a short file.
 */
export async function sendSpeech(
  service: SpeechService,
  model: SpeechModel,
  req: SpeechRequest,
  reply: FastifyReply,
  signal: AbortSignal,
): Promise<void> {
  const rate = model.sampleRate;
  const options = service.speakOptions(req, signal);
  const headers: Record<string, string> = {
    'content-type': req.format === 'wav' ? 'audio/wav' : 'audio/pcm',
    'cache-control': 'no-cache',
    'x-sample-rate': String(rate),
    'x-audio-channels': '1',
    'x-audio-encoding': 's16le',
  };
  const whole = (pcm: Float32Array) =>
    req.format === 'wav' ? SpeechModel.toWav(pcm, rate) : toS16le(pcm, rate);

  if (!req.stream) {
    const r = await model.speakAll(req.input, options);
    reply
      .headers({
        ...headers,
        'x-audio-frames': String(r.frames),
        'x-generation-ms': r.totalMs.toFixed(1),
      })
      .send(whole(r.pcm));
    return;
  }

  const it = model.speak(req.input, options)[Symbol.asyncIterator]();
  let next: IteratorResult<{ pcm: Float32Array }>;
  try {
    next = await it.next();
  } catch (e) {
    await it.return?.();
    throw e;
  }
  if (next.done) {
    // no audio at all: the whole (empty) file, sizes known
    reply.headers(headers).send(whole(new Float32Array(0)));
    return;
  }
  const raw = reply.hijack().raw;
  raw.writeHead(200, { ...headers, 'x-accel-buffering': 'no' });
  try {
    if (req.format === 'wav') await write(raw, streamingWavHeader(rate));
    while (!next.done) {
      await write(raw, toS16le(next.value.pcm, rate));
      next = await it.next();
    }
    if (!raw.destroyed) raw.end();
  } catch (e) {
    await it.return?.();
    if (!raw.destroyed) raw.destroy();
    throw e;
  }
}

/** Writes, waiting for the socket to drain when its buffer is full (or for it to close). */
function write(raw: FastifyReply['raw'], bytes: Buffer): Promise<void> {
  if (raw.destroyed || raw.write(bytes)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      raw.off('drain', done);
      raw.off('close', done);
      resolve();
    };
    raw.on('drain', done);
    raw.on('close', done);
  });
}
