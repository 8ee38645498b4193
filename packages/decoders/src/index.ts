export { AudioDecoder, concat, DecoderStream } from './audio-decoder.js';
export { type GenAudioFacts, readGenAudioFacts, type SpeechPipeline } from './gen-file.js';
export { GenComponent } from './gen-model.js';
export type { GenAudioInfo, GenPart } from './native.js';
export { type GenLoadOptions, type GenSampling, RANDOM_SEED } from './options.js';
export {
  type OutputFrame,
  OutputProjector,
  type OutputStepOptions,
  PIPELINE_SAMPLING,
} from './output-projector.js';
export { SpeakerEncoder, type Voice } from './speaker-encoder.js';
export { readWav16, toWav } from './wav.js';
