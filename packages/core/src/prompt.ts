import type { Backbone } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import {
  flattenMessages,
  MEDIA_MARKER,
  type MediaRef,
  type Message,
  type Modality,
} from './messages.js';

/** What the prompt builder needs to know of the loaded media encoders. */
export interface MediaPromptInfo {
  /**
   * Text libmtmd puts before / after each picture ('' for none), special tokens parsed, when the
   * part's own chunks do not carry it (own-graph pictures; sound always carries its markers).
   */
  imageBegin: string;
  imageEnd: string;
  /** Rows per image when every picture gives the same count; undefined when it varies. */
  fixedTokens?: number;
  /** The modalities the model takes (default: images only). */
  modalities?: readonly Modality[];
}

export interface TokenizedPrompt {
  /**
   * The text around the media parts, as libmtmd lays it out: segment i precedes media part i and
   * holds the previous part's end marker, the text, and this part's begin marker.
   */
  texts: Int32Array[];
  media: MediaRef[];
  /** @deprecated use media */
  images: MediaRef[];
  /** Text tokens of the whole prompt. */
  textTokens: number;
  /** Positions of the whole prompt when every picture's size is known up front, else text only. */
  total: number;
  /** Tokens per image when fixed (0 when it varies with the picture). */
  imageTokens: number;
}

/**
 * Builds a prompt as llama.cpp does (the model's chat template with a media marker per part,
 * rendered as llama-mtmd-cli renders it unless `jinja`,
 * parts joined as the pinned chat code joins them) and tokenizes each text segment on its own
 * with special tokens parsed and BOS first, the family's begin/end markers tokenized apart and
 * joined to the text around them (libmtmd's mtmd_tokenize). Checks, before any media is decoded
 * or encoded, that the mmproj has an encoder for every part's modality (MM_MODALITY_UNSUPPORTED)
 * and, when the token count is known up front, that the prompt leaves room for a generated token
 * (MM_OUT_OF_CONTEXT; the pictures' rows count when fixed, the sounds' once encoded).
 */
export function tokenizePrompt(
  backbone: Backbone,
  messages: readonly Message[],
  media: (MediaPromptInfo & { nTokensOut?: number }) | undefined,
  room: { positions: number; what: string },
  options: { jinja?: boolean } = {},
): TokenizedPrompt {
  const flat = flattenMessages(messages);
  const takes: readonly Modality[] = media ? (media.modalities ?? ['image']) : [];
  for (const ref of flat.media) {
    if (takes.includes(ref.modality)) continue;
    const what = ref.modality === 'audio' ? 'audio' : 'images';
    const encoder = ref.modality === 'audio' ? 'audio encoder' : 'vision encoder';
    throw new MmError(
      ErrorCode.MM_MODALITY_UNSUPPORTED,
      media
        ? `the conversation has ${what} but the model's mmproj has no ${encoder} (it takes ${takes.join(' and ')})`
        : `the conversation has ${what} but no mmproj (${encoder}) was loaded with the model`,
      { details: { modality: ref.modality, modalities: [...takes] } },
    );
  }
  const prompt = backbone.applyChatTemplate(flat.messages, {
    addGenerationPrompt: true,
    jinja: options.jinja ?? false,
  });
  const segments = prompt.split(MEDIA_MARKER);
  if (segments.length - 1 !== flat.media.length) {
    throw new MmError(
      ErrorCode.MM_CHAT_TEMPLATE,
      'the chat template dropped or repeated a media marker',
    );
  }
  const marker = (s: string | undefined) =>
    s ? backbone.tokenize(s, { addBos: false, parseSpecial: true }) : new Int32Array(0);
  const begin = marker(media?.imageBegin);
  const end = marker(media?.imageEnd);
  const none = new Int32Array(0);
  const isImage = (i: number) => flat.media[i]?.modality === 'image';
  const texts = segments.map((s, i) => {
    const body = backbone.tokenize(s, {
      addBos: i === 0 ? backbone.info.addBos : false,
      parseSpecial: true,
    });
    // the picture markers around own-graph pictures (sound brings its own with its chunks)
    const head = i > 0 && isImage(i - 1) ? end : none;
    const tail = isImage(i) ? begin : none;
    const out = new Int32Array(head.length + body.length + tail.length);
    out.set(head, 0);
    out.set(body, head.length);
    out.set(tail, head.length + body.length);
    return out;
  });
  const imageTokens = media?.fixedTokens ?? 0;
  const textTokens = texts.reduce((n, t) => n + t.length, 0);
  const images = flat.media.filter((m) => m.modality === 'image').length;
  const total = textTokens + images * imageTokens;
  if ((texts[texts.length - 1] as Int32Array).length === 0) {
    throw new MmError(ErrorCode.MM_CHAT_TEMPLATE, 'the prompt does not end with text');
  }
  checkRoom(total, room, { textTokens, media: images, imageTokens });
  return { texts, media: flat.media, images: flat.media, textTokens, total, imageTokens };
}

/** MM_OUT_OF_CONTEXT unless `needed` positions leave room for a generated token. */
export function checkRoom(
  needed: number,
  room: { positions: number; what: string },
  parts: { textTokens: number; media: number; imageTokens?: number; mediaTokens?: number },
): void {
  if (needed < room.positions) return;
  const media =
    parts.mediaTokens !== undefined
      ? `${parts.mediaTokens} media tokens`
      : `${parts.media} image(s) × ${parts.imageTokens ?? 0} tokens`;
  throw new MmError(
    ErrorCode.MM_OUT_OF_CONTEXT,
    `the prompt needs ${needed} positions (${parts.textTokens} text tokens + ${media}) and ` +
      `${room.what} holds ${room.positions}, with room for at least one generated token`,
    {
      details: {
        needed,
        contextSize: room.positions,
        images: parts.media,
        imageTokens: parts.imageTokens ?? parts.mediaTokens ?? 0,
      },
    },
  );
}
