import type { Backbone } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import { flattenMessages, type ImageRef, MEDIA_MARKER, type Message } from './messages.js';

export interface TokenizedPrompt {
  /** The text segments around the images, tokenized one by one (segment i precedes image i). */
  texts: Int32Array[];
  images: ImageRef[];
  /** Positions of the whole prompt: text tokens + images × tokens per image. */
  total: number;
  /** Tokens per image (the projector's output count). */
  imageTokens: number;
}

/**
 * Builds a prompt as llama.cpp does (the model's chat template with a media marker per image,
 * parts joined as the pinned chat code joins them) and tokenizes each text segment on its own
 * with special tokens parsed and BOS first (libmtmd). Checks, before any image is decoded or
 * encoded, that an mmproj is there for the images (MM_MODALITY_UNSUPPORTED) and that the prompt
 * leaves room for a generated token in `room` positions (MM_OUT_OF_CONTEXT, with the numbers).
 */
export function tokenizePrompt(
  backbone: Backbone,
  messages: readonly Message[],
  vision: { nTokensOut: number } | undefined,
  room: { positions: number; what: string },
): TokenizedPrompt {
  const flat = flattenMessages(messages);
  if (flat.images.length > 0 && !vision) {
    throw new MmError(
      ErrorCode.MM_MODALITY_UNSUPPORTED,
      'the conversation has images but no mmproj (vision encoder) was loaded with the model',
    );
  }
  const prompt = backbone.applyChatTemplate(flat.messages, { addGenerationPrompt: true });
  const segments = prompt.split(MEDIA_MARKER);
  if (segments.length - 1 !== flat.images.length) {
    throw new MmError(
      ErrorCode.MM_CHAT_TEMPLATE,
      'the chat template dropped or repeated an image marker',
    );
  }
  const imageTokens = vision?.nTokensOut ?? 0;
  const texts = segments.map((s, i) =>
    backbone.tokenize(s, { addBos: i === 0 ? backbone.info.addBos : false, parseSpecial: true }),
  );
  const textTokens = texts.reduce((n, t) => n + t.length, 0);
  const total = textTokens + flat.images.length * imageTokens;
  if ((texts[texts.length - 1] as Int32Array).length === 0) {
    throw new MmError(ErrorCode.MM_CHAT_TEMPLATE, 'the prompt does not end with text');
  }
  if (total >= room.positions) {
    throw new MmError(
      ErrorCode.MM_OUT_OF_CONTEXT,
      `the prompt needs ${total} positions (${textTokens} text tokens + ${flat.images.length} image(s) × ` +
        `${imageTokens} tokens) and ${room.what} holds ${room.positions}, with room for at least one generated token`,
      {
        details: {
          needed: total,
          contextSize: room.positions,
          images: flat.images.length,
          imageTokens,
        },
      },
    );
  }
  return { texts, images: flat.images, total, imageTokens };
}
