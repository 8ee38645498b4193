export {
  Audio,
  type AudioDecodeOptions,
  type AudioFileOptions,
  type AudioPCMOptions,
  DEFAULT_MAX_AUDIO_FILE_BYTES,
  DEFAULT_MAX_AUDIO_SECONDS,
  logMelSpectrogram,
  type MelOptions,
  type MelSpectrogram,
  WHISPER_SAMPLE_RATE,
} from './audio.js';
export {
  AudioEncoder,
  type AudioEncoderInfo,
  type AudioEncoderLoadOptions,
} from './audio-encoder.js';
export { type EncodeTimings, Features, nativeFeatures } from './features.js';
export {
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_MAX_PIXELS,
  Image,
  type ImageDecodeOptions,
  type ImageFileOptions,
  type ImageHeader,
} from './image.js';
export type { ComputeOptions } from './options.js';
/** @internal the `rpc` load option's check, shared with @mm/projectors */
export { resolveRpc } from './options.js';
export {
  type PadStyle,
  type PreprocessedImage,
  type PreprocessParams,
  preprocessImage,
  type ResizeAlgorithm,
  type ResizeOptions,
  resizeImage,
} from './preprocess.js';
export {
  type EncodedMedia,
  type EncodeOptions,
  nativeVisionEncoder,
  type SliceLayout,
  VisionEncoder,
  type VisionEncoderInfo,
  type VisionEncoderLoadOptions,
} from './vision-encoder.js';
