import type { Backbone } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import { flattenMessages, MEDIA_MARKER, type MediaRef, type Message } from './messages.js';

/** What the prompt builder needs to know of the loaded media encoder. */
export interface MediaPromptInfo {
  /** Text libmtmd puts before / after each media chunk ('' for none), special tokens parsed. */
  imageBegin: string;
  imageEnd: string;
  /** Rows per image when every picture gives the same count; undefined when it varies. */
  fixedTokens?: number;
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
 * or encoded, that an mmproj is there for it (MM_MODALITY_UNSUPPORTED) and, when the token count
 * is known up front, that the prompt leaves room for a generated token (MM_OUT_OF_CONTEXT).
 */
export function tokenizePrompt(
  backbone: Backbone,
  messages: readonly Message[],
  media: (MediaPromptInfo & { nTokensOut?: number }) | undefined,
  room: { positions: number; what: string },
  options: { jinja?: boolean } = {},
): TokenizedPrompt {
  const flat = flattenMessages(messages);
  if (flat.media.length > 0 && !media) {
    throw new MmError(
      ErrorCode.MM_MODALITY_UNSUPPORTED,
      'the conversation has images but no mmproj (vision encoder) was loaded with the model',
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
      'the chat template dropped or repeated an image marker',
    );
  }
  const marker = (s: string | undefined) =>
    s ? backbone.tokenize(s, { addBos: false, parseSpecial: true }) : new Int32Array(0);
  const begin = marker(media?.imageBegin);
  const end = marker(media?.imageEnd);
  const last = segments.length - 1;
  const texts = segments.map((s, i) => {
    const body = backbone.tokenize(s, {
      addBos: i === 0 ? backbone.info.addBos : false,
      parseSpecial: true,
    });
    const head = i > 0 ? end : new Int32Array(0);
    const tail = i < last ? begin : new Int32Array(0);
    const out = new Int32Array(head.length + body.length + tail.length);
    out.set(head, 0);
    out.set(body, head.length);
    out.set(tail, head.length + body.length);
    return out;
  });
  const imageTokens = media?.fixedTokens ?? 0;
  const textTokens = texts.reduce((n, t) => n + t.length, 0);
  const total = textTokens + flat.media.length * imageTokens;
  if ((texts[texts.length - 1] as Int32Array).length === 0) {
    throw new MmError(ErrorCode.MM_CHAT_TEMPLATE, 'the prompt does not end with text');
  }
  checkRoom(total, room, { textTokens, media: flat.media.length, imageTokens });
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
