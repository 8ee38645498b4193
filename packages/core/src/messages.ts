import { Audio, Image } from '@mm/encoders';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';

/** Where an image comes from: a path, encoded bytes, a `data:` URL, or a decoded Image. */
export type ImageInput = string | Buffer | Uint8Array | ArrayBuffer | Image;

/**
 * Where a sound comes from: a path, encoded bytes (WAV, MP3 or FLAC), a `data:` URL
 * (`audio/wav`, `audio/mpeg`, `audio/flac`, base64), or decoded `Audio` (@mm/encoders; resampled to
 * the model's rate when it is at another).
 */
export type AudioInput = string | Buffer | Uint8Array | ArrayBuffer | Audio;

/** The audio formats an OpenAI `input_audio` part may name. */
export const INPUT_AUDIO_FORMATS = ['wav', 'mp3', 'flac'] as const;
export type InputAudioFormat = (typeof INPUT_AUDIO_FORMATS)[number];

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image'; image: ImageInput }
  /** OpenAI's shape: `image_url.url` is a `data:` URL (or a path). */
  | { type: 'image_url'; image_url: { url: string } | string }
  | { type: 'audio'; audio: AudioInput }
  /** OpenAI's shape: base64 bytes of a WAV, MP3 or FLAC file. */
  | { type: 'input_audio'; input_audio: { data: string; format: InputAudioFormat } };

/** A chat message in the OpenAI shape: `content` is a string or a list of parts. */
export interface Message {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string | readonly ContentPart[];
}

/** The modalities a message part can carry besides text. */
export type Modality = 'image' | 'audio';

/** One media part of a conversation, in order of appearance. */
export type MediaRef =
  | { modality: 'image'; input: ImageInput }
  | { modality: 'audio'; input: AudioInput };

/** @deprecated use MediaRef */
export type ImageRef = MediaRef;

/** The media marker libmtmd splits prompts at (mtmd_default_marker()). */
export const MEDIA_MARKER = '<__media__>';

/**
 * Joins a message's parts as the pinned llama.cpp chat code does: text parts are separated by a
 * newline, and a media marker is put in with nothing before or after it. (Adding a separator
 * after the image changes what the model sees; tiny-shapes then answers a quarter of its
 * questions wrongly.)
 */
export function flattenMessages(messages: readonly Message[]): {
  messages: { role: string; content: string }[];
  media: MediaRef[];
} {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new MmInvalidArgumentError('messages', 'must be a non-empty array');
  }
  const media: MediaRef[] = [];
  const out = messages.map((m, i) => {
    if (m === null || typeof m !== 'object' || typeof m.role !== 'string') {
      throw new MmInvalidArgumentError(`messages[${i}]`, 'must be { role, content }');
    }
    if (typeof m.content === 'string') {
      if (m.content.includes(MEDIA_MARKER)) {
        throw new MmInvalidArgumentError(
          `messages[${i}].content`,
          `must not contain ${MEDIA_MARKER}; use an image or audio part`,
        );
      }
      return { role: m.role, content: m.content };
    }
    if (!Array.isArray(m.content)) {
      throw new MmInvalidArgumentError(
        `messages[${i}].content`,
        'must be a string or an array of parts',
      );
    }
    let content = '';
    let previousWasText = false;
    m.content.forEach((p: ContentPart, j: number) => {
      const where = `messages[${i}].content[${j}]`;
      if (p?.type === 'text') {
        if (typeof p.text !== 'string')
          throw new MmInvalidArgumentError(`${where}.text`, 'must be a string');
        if (p.text.includes(MEDIA_MARKER)) {
          throw new MmInvalidArgumentError(
            `${where}.text`,
            `must not contain ${MEDIA_MARKER}; use an image or audio part`,
          );
        }
        content += (previousWasText ? '\n' : '') + p.text;
        previousWasText = true;
      } else if (p?.type === 'image' || p?.type === 'image_url') {
        const input =
          p.type === 'image'
            ? p.image
            : typeof p.image_url === 'string'
              ? p.image_url
              : p.image_url?.url;
        if (input === undefined || input === null)
          throw new MmInvalidArgumentError(where, 'has no image');
        media.push({ modality: 'image', input: input as ImageInput });
        content += MEDIA_MARKER;
        previousWasText = false;
      } else if (p?.type === 'audio' || p?.type === 'input_audio') {
        const input = p.type === 'audio' ? p.audio : inputAudioUrl(p.input_audio, where);
        if (input === undefined || input === null)
          throw new MmInvalidArgumentError(where, 'has no audio');
        media.push({ modality: 'audio', input: input as AudioInput });
        content += MEDIA_MARKER;
        previousWasText = false;
      } else {
        throw new MmInvalidArgumentError(
          `${where}.type`,
          "must be 'text', 'image', 'image_url', 'audio' or 'input_audio'",
        );
      }
    });
    return { role: m.role, content };
  });
  return { messages: out, media };
}

/** The media type of each `input_audio` format. */
const AUDIO_MEDIA_TYPES: Readonly<Record<InputAudioFormat, string>> = {
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
};

const NOT_BASE64 = /[^A-Za-z0-9+/=]/;

/**
 * Whether `s` is standard, padded base64: a multiple of 4 characters from the standard alphabet,
 * with at most two `=`, only at the end. One scan for a character outside the alphabet (a
 * negated class: 1 ms for a 400 KB picture, where the anchored `^[A-Za-z0-9+/]*={0,2}$` took
 * 2.7 ms of the event loop), then the padding.
 */
export function isBase64(s: string): boolean {
  if (s.length % 4 !== 0 || NOT_BASE64.test(s)) return false;
  const eq = s.indexOf('=');
  return (
    eq < 0 || eq === s.length - 1 || (eq === s.length - 2 && s.charCodeAt(s.length - 1) === 61)
  );
}

/**
 * An OpenAI `input_audio` part as a `data:` URL: `format` must be wav, mp3 or flac and `data` base64
 * (standard alphabet, padded; whitespace ignored), else MM_INVALID_ARGUMENT naming the field.
 */
export function inputAudioUrl(part: unknown, where = 'input_audio'): string {
  if (part === null || typeof part !== 'object') {
    throw new MmInvalidArgumentError(`${where}.input_audio`, 'must be { data, format }');
  }
  const { data, format } = part as { data?: unknown; format?: unknown };
  if (typeof format !== 'string' || !(INPUT_AUDIO_FORMATS as readonly string[]).includes(format)) {
    throw new MmInvalidArgumentError(
      `${where}.input_audio.format`,
      `must be ${INPUT_AUDIO_FORMATS.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(format)}`,
    );
  }
  if (typeof data !== 'string') {
    throw new MmInvalidArgumentError(`${where}.input_audio.data`, 'must be a base64 string');
  }
  const compact = data.replace(/\s+/g, '');
  if (compact.length === 0 || !isBase64(compact)) {
    throw new MmInvalidArgumentError(
      `${where}.input_audio.data`,
      'is not valid base64 (standard alphabet, padded to a multiple of 4 characters)',
    );
  }
  return `data:${AUDIO_MEDIA_TYPES[format as InputAudioFormat]};base64,${compact}`;
}

const DATA_URL = /^data:([^;,]*)(;base64)?,/;

/** A `data:` URL's media type, whether its payload is base64, and the payload; undefined if not one. */
export function parseDataUrl(
  url: string,
): { mediaType: string; base64: boolean; payload: string } | undefined {
  const m = DATA_URL.exec(url);
  if (!m) return undefined;
  return { mediaType: m[1] ?? '', base64: m[2] !== undefined, payload: url.slice(m[0].length) };
}

/** Decodes an image input to pixels (validating sizes before any big allocation). */
export async function loadImage(
  input: ImageInput,
  options: { maxPixels?: number; signal?: AbortSignal },
): Promise<Image> {
  if (input instanceof Image) return input;
  if (typeof input === 'string') {
    const data = parseDataUrl(input);
    if (data) {
      if (!data.base64)
        throw new MmError(ErrorCode.MM_IMAGE_DECODE, 'only base64 data: URLs are supported');
      const bytes = Buffer.from(data.payload, 'base64');
      if (bytes.length === 0)
        throw new MmError(ErrorCode.MM_IMAGE_DECODE, 'the data: URL holds no bytes');
      return Image.fromBuffer(bytes, options);
    }
    if (/^https?:\/\//i.test(input)) {
      throw new MmInvalidArgumentError(
        'image',
        'remote URLs are not fetched by @mm/core; download the image first',
      );
    }
    return Image.fromFile(input, options);
  }
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    return Image.fromBuffer(input, options);
  }
  throw new MmInvalidArgumentError(
    'image',
    'must be a path, a data: URL, a Buffer/Uint8Array or an Image',
  );
}

/** The media types a `data:` URL of audio may have (anything else is refused before decoding). */
const AUDIO_DATA_TYPES = new Set([
  'audio/wav',
  'audio/wave',
  'audio/x-wav',
  'audio/vnd.wave',
  'audio/mpeg',
  'audio/mp3',
  'audio/flac',
  'audio/x-flac',
  'application/octet-stream',
  '',
]);

/**
 * Decodes an audio input to mono f32 PCM at `sampleRate` (the model's): files and bytes through
 * `Audio` (WAV, MP3, FLAC; MM_AUDIO_DECODE when corrupt or empty, MM_AUDIO_TOO_LONG over the
 * limits), an `Audio` at another rate resampled as libmtmd's decoder would.
 */
export async function loadAudio(
  input: AudioInput,
  options: { sampleRate: number; maxSeconds?: number; signal?: AbortSignal },
): Promise<Audio> {
  const decode = {
    sampleRate: options.sampleRate,
    maxSeconds: options.maxSeconds,
    signal: options.signal,
  };
  if (input instanceof Audio) {
    if (options.maxSeconds !== undefined && input.duration > options.maxSeconds) {
      throw new MmError(
        ErrorCode.MM_AUDIO_TOO_LONG,
        `${input.duration.toFixed(1)} s of audio is over the limit of ${options.maxSeconds} s`,
        { details: { seconds: input.duration, maxSeconds: options.maxSeconds } },
      );
    }
    if (input.sampleRate === options.sampleRate) return input;
    return Audio.fromPCM(input.samples, input.sampleRate, decode);
  }
  if (typeof input === 'string') {
    const data = parseDataUrl(input);
    if (data) {
      const type = data.mediaType.toLowerCase();
      if (!AUDIO_DATA_TYPES.has(type)) {
        throw new MmError(
          ErrorCode.MM_AUDIO_DECODE,
          `a data: URL of type '${data.mediaType}' is not audio (audio/wav, audio/mpeg or audio/flac)`,
        );
      }
      if (!data.base64)
        throw new MmError(ErrorCode.MM_AUDIO_DECODE, 'only base64 data: URLs are supported');
      const bytes = Buffer.from(data.payload, 'base64');
      if (bytes.length === 0)
        throw new MmError(ErrorCode.MM_AUDIO_DECODE, 'the data: URL holds no bytes');
      return Audio.fromBuffer(bytes, decode);
    }
    if (/^https?:\/\//i.test(input)) {
      throw new MmInvalidArgumentError(
        'audio',
        'remote URLs are not fetched by @mm/core; download the audio first',
      );
    }
    return Audio.fromFile(input, decode);
  }
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    return Audio.fromBuffer(input, decode);
  }
  throw new MmInvalidArgumentError(
    'audio',
    'must be a path, a data: URL, a Buffer/Uint8Array or an Audio',
  );
}
