import { Backbone, type Context } from '@mm/backbone-gguf';
import {
  AudioDecoder,
  concat,
  OutputProjector,
  readGenAudioFacts,
  SpeakerEncoder,
  type SpeechPipeline,
  toWav,
  type Voice,
} from '@mm/decoders';
import { Audio } from '@mm/encoders';
import {
  checkSignal,
  ErrorCode,
  MmDisposedError,
  MmError,
  MmInvalidArgumentError,
  SerialQueue,
} from '@mm/errors';
import { speakPocketTts } from './pockettts.js';
import { speakQwen3Tts } from './qwen3tts.js';
import type { PcmChunk, SpeakOptions, SpeechParts, TalkerSampling } from './types.js';

export interface SpeechModelLoadOptions {
  /** The talker: a text model GGUF (llama.cpp arch `qwen3tts` or `pockettts`). */
  model: string;
  /** The speech-generation mmproj (output projector, audio decoder, speaker encoder). */
  mmproj: string;
  /** CPU threads for every part (default: all hardware threads). */
  threads?: number;
  /** KV cache size of the talker (default 4096, as llama.cpp's tools). */
  contextSize?: number;
  /** Layers of the talker on the GPU (default 0). */
  gpuLayers?: number | 'all';
  signal?: AbortSignal;
}

/** llama.cpp's common sampler defaults, which llama-tts samples the talker with. */
export const TALKER_SAMPLING: Required<Omit<TalkerSampling, 'seed'>> = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
};

const TALKER_SLOT = 0;

/** The whole result of a speak() call. */
export interface SpeechResult {
  pcm: Float32Array;
  sampleRate: number;
  frames: number;
  /** Seconds of audio per second of compute (> 1: faster than real time). */
  realTimeFactor: number;
  /** When the first chunk was ready, from the call. */
  firstChunkMs: number;
  totalMs: number;
}

/**
 * Text → speech, composed from the generation half of the architecture: the talker (LLM backbone,
 * @mm/backbone-gguf) → output projector → audio decoder (@mm/decoders), with the speaker encoder
 * for a voice reference. A separate class from MultimodalModel: a speech-generation mmproj has no
 * understanding part, and its talker is not a chat model. `speak()` streams PCM chunks as frames
 * are decoded; calls run one at a time.
 */
export class SpeechModel {
  readonly pipeline: SpeechPipeline;
  readonly #parts: SpeechParts;
  readonly #serial = new SerialQueue();
  #disposed = false;

  private constructor(pipeline: SpeechPipeline, parts: SpeechParts) {
    this.pipeline = pipeline;
    this.#parts = parts;
  }

  /**
   * Loads the talker and the mmproj's parts. The pair is checked first: a non-speech mmproj is
   * MM_MODALITY_UNSUPPORTED, an mmproj whose hidden width is not the talker's n_embd or a talker
   * of the other pipeline MM_MODEL_MISMATCH.
   */
  static async load(options: SpeechModelLoadOptions): Promise<SpeechModel> {
    const signal = checkSignal(options.signal);
    if (typeof options.model !== 'string' || typeof options.mmproj !== 'string') {
      throw new MmInvalidArgumentError('load', 'give model and mmproj paths');
    }
    const facts = await readGenAudioFacts(options.mmproj);
    const opened: { dispose(): void }[] = [];
    try {
      const backbone = await Backbone.load(options.model, { gpuLayers: options.gpuLayers, signal });
      opened.push(backbone);
      const arch = backbone.info.architecture;
      if (arch !== facts.pipeline) {
        throw new MmError(
          ErrorCode.MM_MODEL_MISMATCH,
          `${options.mmproj} is a ${facts.pipeline} speech mmproj but ${options.model} is a '${arch}' model (its talker must be arch '${facts.pipeline}')`,
        );
      }
      const projector = await OutputProjector.load(options.mmproj, {
        threads: options.threads,
        signal,
      });
      opened.push(projector);
      if (projector.nEmbd !== backbone.nEmbd) {
        throw new MmError(
          ErrorCode.MM_MODEL_MISMATCH,
          `${options.mmproj} takes hidden states of width ${projector.nEmbd} but ${options.model} has n_embd ${backbone.nEmbd}`,
        );
      }
      const decoder = await AudioDecoder.load(options.mmproj, { threads: options.threads, signal });
      opened.push(decoder);
      let speaker: SpeakerEncoder | undefined;
      if (facts.hasSpeakerEncoder) {
        speaker = await SpeakerEncoder.load(options.mmproj, { threads: options.threads, signal });
        opened.push(speaker);
      }
      const context: Context = await backbone.createContext({
        contextSize: options.contextSize ?? Math.min(backbone.contextLength || 4096, 4096),
        batchSize: 2048,
        ubatchSize: 512,
        threads: options.threads,
        hiddenStates: true,
        signal,
      });
      opened.push(context);
      return new SpeechModel(facts.pipeline, { backbone, context, projector, decoder, speaker });
    } catch (e) {
      for (const o of opened.reverse()) o.dispose();
      throw e;
    }
  }

  get sampleRate(): number {
    return this.#parts.decoder.sampleRate;
  }

  get parts(): Readonly<SpeechParts> {
    return this.#parts;
  }

  /** Encodes a voice reference once, for several speak() calls. */
  async encodeVoice(
    reference: string | Uint8Array | Audio,
    options: { signal?: AbortSignal } = {},
  ): Promise<Voice> {
    this.#check();
    const sp = this.#parts.speaker;
    if (!sp) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `this ${this.pipeline} mmproj has no speaker encoder`,
      );
    }
    return sp.encode(reference, options);
  }

  /**
   * Speaks `text`: an async iterable of PCM chunks (the first arrives after the decoder's first
   * window of frames, while the talker goes on). Aborting through `signal` stops within a frame;
   * the model stays usable.
   */
  speak(text: string, options: SpeakOptions = {}): AsyncIterable<PcmChunk> {
    this.#check();
    if (typeof text !== 'string' || text.trim() === '') {
      throw new MmInvalidArgumentError('text', 'is empty: there is nothing to speak');
    }
    if (
      options.maxFrames !== undefined &&
      (!Number.isInteger(options.maxFrames) || options.maxFrames < 1)
    ) {
      throw new MmInvalidArgumentError('maxFrames', 'must be an integer >= 1');
    }
    checkSignal(options.signal);
    const self = this;
    return {
      [Symbol.asyncIterator]() {
        return self.#run(text, options)[Symbol.asyncIterator]();
      },
    };
  }

  /** speak() gathered: the whole PCM with timings. */
  async speakAll(text: string, options: SpeakOptions = {}): Promise<SpeechResult> {
    const t0 = performance.now();
    const chunks: Float32Array[] = [];
    let frames = 0;
    let first = -1;
    for await (const c of this.speak(text, options)) {
      if (first < 0) first = c.elapsedMs;
      chunks.push(c.pcm);
      frames = c.totalFrames;
    }
    const totalMs = performance.now() - t0;
    const pcm = concat(chunks);
    const seconds = pcm.length / this.sampleRate;
    return {
      pcm,
      sampleRate: this.sampleRate,
      frames,
      realTimeFactor: totalMs > 0 ? seconds / (totalMs / 1000) : 0,
      firstChunkMs: first,
      totalMs,
    };
  }

  /** A 16-bit WAV of speech (as llama-tts writes it). */
  static toWav(pcm: Float32Array, sampleRate: number): Buffer {
    return toWav(pcm, sampleRate);
  }

  async *#run(text: string, o: SpeakOptions): AsyncGenerator<PcmChunk> {
    const release = await this.#serial.acquire();
    try {
      this.#check();
      const t0 = performance.now();
      const p = this.#parts;
      let voice: Voice | undefined;
      if (o.voice !== undefined) {
        voice = isVoice(o.voice)
          ? o.voice
          : await this.encodeVoice(o.voice as string | Uint8Array | Audio, o);
        if (voice.nEmbd !== p.backbone.nEmbd) {
          throw new MmInvalidArgumentError(
            'voice',
            `rows of width ${voice.nEmbd}, the talker's is ${p.backbone.nEmbd}`,
          );
        }
      }
      const talker: TalkerSampling = { ...TALKER_SAMPLING, ...o.sampling };
      // every utterance starts its seeded draws afresh, as a new llama-tts process does
      await p.projector.restartSeed();
      p.context.setSampler(TALKER_SLOT, talker);
      try {
        if (this.pipeline === 'qwen3tts') {
          yield* speakQwen3Tts(p, text, voice, o, talker, TALKER_SLOT, t0);
        } else {
          yield* speakPocketTts(p, text, voice, o, t0);
        }
      } finally {
        if (!p.context.disposed) p.context.setSampler(TALKER_SLOT, null);
      }
    } finally {
      release();
    }
  }

  #check(): void {
    if (this.#disposed) throw new MmDisposedError('SpeechModel');
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const p = this.#parts;
    p.context.dispose();
    p.speaker?.dispose();
    p.decoder.dispose();
    p.projector.dispose();
    p.backbone.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function isVoice(v: unknown): v is Voice {
  return (
    typeof v === 'object' &&
    v !== null &&
    'embedding' in v &&
    (v as Voice).embedding instanceof Float32Array
  );
}

export { Audio };
