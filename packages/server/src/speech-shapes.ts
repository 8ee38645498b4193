import { badRequest, HttpError } from './http-error.js';

/** OpenAI's built-in voice names: on this server they all mean the default voice. */
export const OPENAI_VOICES: readonly string[] = [
  'alloy',
  'ash',
  'ballad',
  'cedar',
  'coral',
  'echo',
  'fable',
  'marin',
  'nova',
  'onyx',
  'sage',
  'shimmer',
  'verse',
];

/** What `POST /v1/audio/speech` may ask; checked before any model work. */
export interface SpeechLimits {
  /** Characters of `input` (OpenAI's limit: 4096). */
  maxInputChars: number;
  /** Frames one request may generate (12.5 frames a second of speech for both pipelines). */
  maxFrames: number;
}

export const DEFAULT_SPEECH_LIMITS: Readonly<SpeechLimits> = {
  maxInputChars: 4096,
  maxFrames: 2048,
};

export type SpeechFormat = 'wav' | 'pcm';

/** A validated `POST /v1/audio/speech` body. */
export interface SpeechRequest {
  model: string;
  input: string;
  /** The configured voice's name, or undefined for none (the model's own voice). */
  voice: string | undefined;
  format: SpeechFormat;
  /** false (extension `stream: false`): the whole reply at once, with a Content-Length. */
  stream: boolean;
  /** Extension: the sampling seed (talker and output projector), for reproducible speech. */
  seed: number | undefined;
  /** Extension: Qwen3-TTS's language ('en', 'english', ...). */
  language: string | undefined;
}

/** The voices a server knows, to resolve a request's `voice`. */
export interface VoiceTable {
  names: readonly string[];
  /** The voice OpenAI's names and `default` stand for; undefined: no voice. */
  defaultVoice: string | undefined;
}

const OTHER_FORMATS = new Set(['mp3', 'opus', 'aac', 'flac']);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/**
 * Validates an OpenAI speech body: `{ model, input, voice, response_format, speed?, stream_format? }`
 * plus our extensions `seed`, `language` and `stream`. Every problem is a 400 naming the field.
 */
export function parseSpeechRequest(
  body: unknown,
  limits: SpeechLimits,
  voices: VoiceTable,
): SpeechRequest {
  if (!isObject(body)) throw badRequest('the body must be a JSON object', null, 'invalid_type');
  if (typeof body.model !== 'string')
    throw badRequest("'model' must be a string", 'model', 'invalid_type');
  if (typeof body.input !== 'string')
    throw badRequest("'input' must be a string", 'input', 'invalid_type');
  if (body.input.trim() === '')
    throw badRequest("'input' is empty: there is nothing to speak", 'input');
  if (body.input.length > limits.maxInputChars) {
    throw badRequest(
      `'input' may have at most ${limits.maxInputChars} characters, it has ${body.input.length}`,
      'input',
      'string_above_max_length',
    );
  }

  let voice: string | undefined;
  if (present(body.voice)) {
    // OpenAI also takes { id } for a custom voice.
    const name = isObject(body.voice) ? body.voice.id : body.voice;
    if (typeof name !== 'string')
      throw badRequest("'voice' must be a string (or { id })", 'voice', 'invalid_type');
    if (voices.names.includes(name)) voice = name;
    else if (name === 'default' || OPENAI_VOICES.includes(name)) voice = voices.defaultVoice;
    else {
      const known = [...voices.names, 'default', ...OPENAI_VOICES];
      throw new HttpError(400, `unknown voice '${name}' (this server has: ${known.join(', ')})`, {
        param: 'voice',
        code: 'voice_not_found',
      });
    }
  } else {
    voice = voices.defaultVoice;
  }

  let format: SpeechFormat = 'wav';
  const rf = body.response_format;
  if (present(rf)) {
    if (rf === 'wav' || rf === 'pcm') format = rf;
    else if (typeof rf === 'string' && OTHER_FORMATS.has(rf)) {
      throw badRequest(
        `'response_format' ${rf} is not supported by this server: use 'wav' or 'pcm'`,
        'response_format',
        'unsupported_response_format',
      );
    } else {
      throw badRequest("'response_format' must be 'wav' or 'pcm'", 'response_format');
    }
  }

  if (present(body.speed)) {
    if (typeof body.speed !== 'number' || !Number.isFinite(body.speed))
      throw badRequest("'speed' must be a number", 'speed', 'invalid_type');
    if (body.speed !== 1) {
      throw badRequest(
        "'speed' must be 1: this server speaks at the model's own pace",
        'speed',
        'unsupported_value',
      );
    }
  }
  if (present(body.stream_format) && body.stream_format !== 'audio') {
    throw badRequest(
      "'stream_format' must be 'audio' (raw audio bytes; 'sse' is not supported)",
      'stream_format',
      'unsupported_value',
    );
  }
  if (present(body.instructions) && body.instructions !== '') {
    throw badRequest(
      "'instructions' is not supported by this server",
      'instructions',
      'unsupported_parameter',
    );
  }
  if (present(body.stream) && typeof body.stream !== 'boolean')
    throw badRequest("'stream' must be a boolean", 'stream', 'invalid_type');

  let seed: number | undefined;
  if (present(body.seed)) {
    const s = body.seed;
    if (typeof s !== 'number' || !Number.isInteger(s))
      throw badRequest("'seed' must be an integer", 'seed', 'invalid_type');
    if (s < 0 || s > 2 ** 32 - 1) throw badRequest(`'seed' must be in [0, ${2 ** 32 - 1}]`, 'seed');
    seed = s;
  }
  let language: string | undefined;
  if (present(body.language)) {
    if (typeof body.language !== 'string' || body.language === '' || body.language.length > 64)
      throw badRequest("'language' must be a short string", 'language', 'invalid_type');
    language = body.language;
  }

  return {
    model: body.model,
    input: body.input,
    voice,
    format,
    stream: body.stream !== false,
    seed,
    language,
  };
}
