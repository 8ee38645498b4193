import type { NativeOperation } from './addon-types.js';

// ---- speech generation: @mm/decoders (napi/addon_gen_<pipeline>.cpp) -------------------------

/** What a loaded speech-generation file reports (both pipelines). */
export interface NativeGenAudioInfo {
  pipeline: 'qwen3tts' | 'pockettts';
  /** clip.gen.audio.model_variant ('' when absent). */
  variant: string;
  /** Output PCM rate, Hz. */
  sampleRate: number;
  /** Width of the talker's hidden state (the LLM's n_embd). */
  nEmbd: number;
  /** Codes per frame (Qwen3-TTS: 16; Pocket TTS: 0). */
  nCodebooks: number;
  /** Latent width per frame (Pocket TTS; Qwen3-TTS: 0). */
  latentDim: number;
  /** PCM samples one frame decodes to. */
  samplesPerFrame: number;
  /** Frames libmtmd's helper hands the decoder per genWav call. */
  windowFrames: number;
  /** The file holds a speaker (voice) encoder. */
  hasSpeakerEncoder: boolean;
  /** The rate encodeSpeaker takes its reference at, Hz. */
  speakerSampleRate: number;
  /** The parts loaded. */
  parts: ('code' | 'wav' | 'speaker')[];
}

/** Pocket TTS's own facts, beside the common ones. */
export interface NativePocketTtsInfo extends NativeGenAudioInfo {
  pipeline: 'pockettts';
  /** Bytes of the Mimi decoder's streaming state. */
  stateBytes: number;
  /** isEos is eosScore > this (libmtmd's -4). */
  eosThreshold: number;
  flowSteps: number;
  /** The noise temperature used when genCode's temp is <= 0 (0.7). */
  defaultTemp: number;
  /** Most frames one genWav call takes. */
  maxWavFrames: number;
  /** Longer speaker references are truncated (as libmtmd does). */
  maxSpeakerSeconds: number;
  backend: string;
  weightsBytes: number;
}

/** Qwen3-TTS's own facts, beside the common ones. */
export interface NativeQwen3TtsInfo extends NativeGenAudioInfo {
  pipeline: 'qwen3tts';
  /** Bytes of code2wav's streaming state (libmtmd's slot layout). */
  stateBytes: number;
}

/** One GEN_CODE step. */
export interface NativeGenFrame {
  /** Qwen3-TTS: the 16 codes; Pocket TTS: empty. */
  codes: Int32Array;
  /** Pocket TTS: the latent [latentDim]; Qwen3-TTS: null. */
  feats: Float32Array | null;
  /** [nEmbd]: the talker's next input. */
  embd: Float32Array;
  isEos: boolean;
  /** Pocket TTS: the end-of-speech head's score. */
  eosScore?: number;
}

export interface NativeGenAudio {
  info(): NativeGenAudioInfo;
  /** seed 0xFFFFFFFF = random; the sampler reseeds only when the seed differs from the last one. */
  genCode(
    hidden: Float32Array,
    code0: number,
    opts: { topK: number; topP: number; temp: number; seed: number },
  ): NativeOperation<NativeGenFrame>;
  /** `state`: null for a cold start, else the state the previous call returned. */
  genWav(
    frames: Int32Array | Float32Array,
    state: Uint8Array | null,
  ): NativeOperation<{ pcm: Float32Array; state: Uint8Array }>;
  /** Mono PCM at info().speakerSampleRate → rows [rows][nEmbd]. */
  encodeSpeaker(pcm: Float32Array): NativeOperation<{ rows: number; embd: Float32Array }>;
  /** The next genCode reseeds with its seed even when it equals the last one. */
  forgetSeed(): void;
  dispose(): void;
}

export interface NativeGenLoadOptions {
  threads?: number;
  gpu?: boolean;
  /** Which parts to load (default: every part the file has). */
  parts?: ('code' | 'wav' | 'speaker')[];
}

export interface NativeGenAddon {
  loadPocketTtsGen(path: string, options: NativeGenLoadOptions): NativeOperation<NativeGenAudio>;
  /**
   * Qwen3-TTS: genCode takes the talker's hidden state and its codebook-0 code and returns the 16
   * codes (temp is unused, as in libmtmd); genWav takes Int32Array frames of 16 codes, any number of
   * them, run as consecutive windows of windowFrames (each one libmtmd GEN_WAV call).
   */
  loadQwen3TtsGen(path: string, options: NativeGenLoadOptions): NativeOperation<NativeGenAudio>;
}
