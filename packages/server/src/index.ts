export { HttpError, toHttpError } from './http-error.js';
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
export { type ChatRequest, parseChatRequest } from './openai-shapes.js';
export {
  type ChatSlot,
  defaultStaticDir,
  listen,
  type MmServer,
  type ServeOptions,
  startServer,
} from './server.js';
export { SlotPool } from './slots.js';
export {
  type SpeechServeOptions,
  SpeechService,
  sendSpeech,
  streamingWavHeader,
  toS16le,
} from './speech.js';
export {
  DEFAULT_SPEECH_LIMITS,
  OPENAI_VOICES,
  parseSpeechRequest,
  type SpeechFormat,
  type SpeechLimits,
  type SpeechRequest,
  type VoiceTable,
} from './speech-shapes.js';
