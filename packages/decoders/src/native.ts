import { ErrorCode, MmError } from '@mm/errors';
import {
  loadAddon,
  type NativeGenAddon,
  type NativeGenAudio,
  type NativeGenAudioInfo,
  type NativeGenLoadOptions,
  type NativeOperation,
} from '@mm/native';
import type { SpeechPipeline } from './gen-file.js';

/** What the native side reports about a loaded speech-generation file. */
export type GenAudioInfo = NativeGenAudioInfo;
export type GenPart = NonNullable<NativeGenLoadOptions['parts']>[number];
export type { NativeGenAudio };

const LOADER_NAME: Record<SpeechPipeline, keyof NativeGenAddon> = {
  qwen3tts: 'loadQwen3TtsGen',
  pockettts: 'loadPocketTtsGen',
};

/** The addon's loader of one pipeline (MM_UNSUPPORTED_FAMILY when this build of mm.node lacks it). */
export function genLoader(
  pipeline: SpeechPipeline,
): (path: string, options: NativeGenLoadOptions) => NativeOperation<NativeGenAudio> {
  const addon = loadAddon() as unknown as Partial<NativeGenAddon>;
  const load = addon[LOADER_NAME[pipeline]];
  if (typeof load !== 'function') {
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `this build of mm.node has no ${pipeline} speech pipeline (${LOADER_NAME[pipeline]})`,
    );
  }
  return load.bind(addon);
}
