import { Image } from '@mm/encoders';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';

/** Where an image comes from: a path, encoded bytes, a `data:` URL, or a decoded Image. */
export type ImageInput = string | Buffer | Uint8Array | ArrayBuffer | Image;

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image'; image: ImageInput }
  /** OpenAI's shape: `image_url.url` is a `data:` URL (or a path). */
  | { type: 'image_url'; image_url: { url: string } | string };

/** A chat message in the OpenAI shape: `content` is a string or a list of parts. */
export interface Message {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string | readonly ContentPart[];
}

/** The modalities a message part can carry besides text. */
export type Modality = 'image';

/** One media part of a conversation, in order of appearance. */
export interface MediaRef {
  modality: Modality;
  input: ImageInput;
}

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
          `must not contain ${MEDIA_MARKER}; use an image part`,
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
            `must not contain ${MEDIA_MARKER}; use an image part`,
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
      } else {
        throw new MmInvalidArgumentError(`${where}.type`, "must be 'text', 'image' or 'image_url'");
      }
    });
    return { role: m.role, content };
  });
  return { messages: out, media };
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
