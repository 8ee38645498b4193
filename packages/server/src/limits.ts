/** What one request may ask of the server. Every limit is checked before any model work. */
export interface ServerLimits {
  /** Largest request body, bytes (413 beyond). */
  bodyLimit: number;
  /** Images per request. */
  maxImages: number;
  /** Encoded bytes per image. */
  maxImageBytes: number;
  /** Pixels per image, read from the header before decoding. */
  maxImagePixels: number;
  /** Sounds (`input_audio` parts) per request. */
  maxAudio: number;
  /** Encoded bytes per sound. */
  maxAudioBytes: number;
  /** Seconds per sound, once decoded (MM_AUDIO_TOO_LONG, 400 beyond). */
  maxAudioSeconds: number;
  /** Messages per request. */
  maxMessages: number;
  /** Largest and default `max_tokens`. */
  maxTokens: number;
  /** Requests waiting for a slot; one more is 429. */
  maxQueue: number;
  /** From arrival to the last byte, ms (408 beyond; the generation is stopped). */
  requestTimeoutMs: number;
  /** Fetch http(s) image URLs (off by default). */
  allowRemoteImages: boolean;
  /** Time limit for one remote image, ms. */
  remoteImageTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  bodyLimit: 20 * 1024 * 1024,
  maxImages: 8,
  maxImageBytes: 10 * 1024 * 1024,
  maxImagePixels: 4096 * 4096,
  maxAudio: 4,
  maxAudioBytes: 10 * 1024 * 1024,
  maxAudioSeconds: 600,
  maxMessages: 256,
  maxTokens: 4096,
  maxQueue: 64,
  requestTimeoutMs: 120_000,
  allowRemoteImages: false,
  remoteImageTimeoutMs: 10_000,
};
