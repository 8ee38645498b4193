import { ErrorCode, MmError } from '@mm/errors';
import { getString, getValue, isGgufError, readGguf } from '@mm/gguf';

/** The speech pipelines llama.cpp's libmtmd generates audio with, and mm runs with its own graphs. */
export type SpeechPipeline = 'qwen3tts' | 'pockettts';

export interface GenAudioFacts {
  pipeline: SpeechPipeline;
  /** `clip.gen.audio.model_variant` (Pocket TTS packs: 'english', 'french_24l', ...), or ''. */
  variant: string;
  /** The file also holds the pipeline's speaker encoder (a voice reference becomes conditioning rows). */
  hasSpeakerEncoder: boolean;
}

const PIPELINE_OF: Record<string, SpeechPipeline> = {
  qwen3tts_gen: 'qwen3tts',
  pockettts_gen: 'pockettts',
};

/**
 * What kind of speech-generation mmproj a file is, from its header only (no weights read). A file
 * without a generation part is MM_MODALITY_UNSUPPORTED (an understanding mmproj: use
 * MultimodalModel); a generation type mm does not run, MM_UNSUPPORTED_FAMILY; a file that is not
 * GGUF, MM_GGUF_INVALID.
 */
export async function readGenAudioFacts(mmproj: string): Promise<GenAudioFacts> {
  let file: Awaited<ReturnType<typeof readGguf>>;
  try {
    file = await readGguf(mmproj, { llamaCpp: true });
  } catch (e) {
    if (isGgufError(e)) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `no such file: ${mmproj}`);
    }
    throw e;
  }
  const hasGen = getValue(file, 'clip.has_gen_audio_encoder');
  if (hasGen?.type !== 'bool' || hasGen.value !== true) {
    throw new MmError(
      ErrorCode.MM_MODALITY_UNSUPPORTED,
      `${mmproj} has no speech-generation part (clip.has_gen_audio_encoder): it is an mmproj for understanding, load it with MultimodalModel / mm run`,
    );
  }
  const type = getString(
    file,
    'clip.gen.audio.projector_type',
    getString(file, 'clip.projector_type', ''),
  );
  const pipeline = PIPELINE_OF[type];
  if (!pipeline) {
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `${mmproj}: speech-generation type '${type}' is not supported (supported: ${Object.keys(PIPELINE_OF).join(', ')})`,
      { details: { projectorType: type, supported: Object.keys(PIPELINE_OF) } },
    );
  }
  const spk = getValue(file, 'clip.has_audio_encoder');
  return {
    pipeline,
    variant: getString(file, 'clip.gen.audio.model_variant', ''),
    hasSpeakerEncoder: spk?.type === 'bool' && spk.value === true,
  };
}
