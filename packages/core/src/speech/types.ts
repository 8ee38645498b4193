import type { Backbone, Context } from '@mm/backbone-gguf';
import type { AudioDecoder, GenSampling, OutputProjector, SpeakerEncoder } from '@mm/decoders';

/** One piece of generated speech. */
export interface PcmChunk {
  /** Mono f32 samples. */
  pcm: Float32Array;
  sampleRate: number;
  /** Frames this chunk holds, and frames generated so far. */
  frames: number;
  totalFrames: number;
  /** Milliseconds since speak() was called. */
  elapsedMs: number;
}

export interface TalkerSampling {
  /** <= 0: greedy (default 0.8, as llama.cpp's common sampler). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
}

export interface SpeakOptions {
  /**
   * A voice: a reference recording (path, bytes, or decoded Audio at the speaker encoder's rate),
   * or rows already encoded by SpeechModel.encodeVoice. Qwen3-TTS works without one; Pocket TTS
   * makes almost no sound without one (llama.cpp's notes).
   */
  voice?: unknown;
  /** Qwen3-TTS: 'en', 'zh', 'de', 'it', 'pt', 'es', 'ja', 'ko', 'fr', 'ru' or the language's name (default 'english'). */
  language?: string;
  /** The talker's sampling (its codebook-0 token). */
  sampling?: TalkerSampling;
  /**
   * The output projector's own draws (Qwen3-TTS codebooks 1..15, Pocket TTS's flow noise). Qwen3-TTS: top-k,
   * top-p and seed default to the talker's, as llama.cpp's helper passes them; Pocket TTS: the seed.
   */
  projectorSampling?: GenSampling;
  /** Most frames (default 512, as llama-tts). */
  maxFrames?: number;
  /** Prompt rows per decode call (default 2048). */
  batchSize?: number;
  signal?: AbortSignal;
  /** Called after each frame. */
  onFrame?: (frames: number) => void;
}

/** What a pipeline driver gets to work with. */
export interface SpeechParts {
  backbone: Backbone;
  context: Context;
  projector: OutputProjector;
  decoder: AudioDecoder;
  speaker: SpeakerEncoder | undefined;
}
