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
