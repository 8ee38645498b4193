import { ErrorCode, MmError } from '@mm/errors';
import { loadAddon, type NativeOperation } from '@mm/native';
import type { SpeechPipeline } from './gen-file.js';

/** What the native side reports about a loaded speech-generation file. */
export interface GenAudioInfo {
  pipeline: SpeechPipeline;
  variant: string;
  /** Output PCM rate (24000 for both pipelines). */
  sampleRate: number;
  /** Width of the talker's hidden state this file takes (the LLM's n_embd). */
  nEmbd: number;
  /** Codes per frame (Qwen3-TTS: 16), 0 for a latent pipeline. */
  nCodebooks: number;
  /** Latent width per frame (Pocket TTS), 0 for a code pipeline. */
  latentDim: number;
  /** PCM samples one frame decodes to. */
  samplesPerFrame: number;
  /** Frames llama.cpp's helper hands the decoder per call (its sliding window). */
  windowFrames: number;
  hasSpeakerEncoder: boolean;
  /** Rate the speaker encoder takes its reference audio at. */
  speakerSampleRate: number;
  /** The parts loaded: 'code', 'wav', 'speaker'. */
  parts: string[];
}

export interface NativeGenFrame {
  codes: Int32Array;
  feats: Float32Array | null;
  embd: Float32Array;
  isEos: boolean;
}

export interface NativeGenAudio {
  info(): GenAudioInfo;
  genCode(
    hidden: Float32Array,
    code0: number,
    opts: { topK: number; topP: number; temp: number; seed: number },
  ): NativeOperation<NativeGenFrame>;
  genWav(
    frames: Int32Array | Float32Array,
    state: Uint8Array | null,
  ): NativeOperation<{ pcm: Float32Array; state: Uint8Array }>;
  encodeSpeaker(pcm: Float32Array): NativeOperation<{ rows: number; embd: Float32Array }>;
  dispose(): void;
}

export type GenPart = 'code' | 'wav' | 'speaker';

type GenLoader = (
  path: string,
  opts: { threads?: number; parts?: GenPart[] },
) => NativeOperation<NativeGenAudio>;

const LOADER_NAME: Record<SpeechPipeline, string> = {
  qwen3tts: 'loadQwen3TtsGen',
  pockettts: 'loadPocketTtsGen',
};

/** The addon's loader of one pipeline (MM_UNSUPPORTED_FAMILY when this build of mm.node lacks it). */
export function genLoader(pipeline: SpeechPipeline): GenLoader {
  const addon = loadAddon() as unknown as Record<string, GenLoader | undefined>;
  const load = addon[LOADER_NAME[pipeline]];
  if (typeof load !== 'function') {
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `this build of mm.node has no ${pipeline} speech pipeline (${LOADER_NAME[pipeline]})`,
    );
  }
  return load.bind(addon);
}
