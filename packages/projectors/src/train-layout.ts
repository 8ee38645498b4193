import type { Backbone, ChatMessage } from '@mm/backbone-gguf';
import { ErrorCode, MmError } from '@mm/errors';
import type { TrainSample } from './train-data.js';

/** The media marker llama-mtmd-cli and @mm/core put in the chat template's text. */
const MEDIA_MARKER = '<__media__>';

/** A training sequence as the frozen LLM sees it. */
export interface TrainLayout {
  /** Text tokens; the picture's rows go before `tokens[imagePos]`. */
  tokens: Int32Array;
  imagePos: number;
  /**
   * Positions, in the sequence with the picture's rows, of the answer tokens the loss is on:
   * each answer up to and including its end-of-generation token.
   */
  targets: Int32Array;
  /** Positions the whole sequence occupies (text tokens + picture rows). */
  length: number;
}

export interface TrainLayoutOptions {
  /** Text libmtmd puts before / after the picture's rows ('' for none; special tokens parsed). */
  imageBegin?: string;
  imageEnd?: string;
  /** Render the chat template with llama.cpp's Jinja engine (default false, as llama-mtmd-cli and `mm run`). */
  jinja?: boolean;
  /**
   * Rendered templates by conversation, shared across calls (rendering costs about a millisecond;
   * training data repeats its questions and answers).
   */
  cache?: Map<string, string>;
}

/**
 * Lays out one training sample exactly as inference will see it: the LLM's chat template with the
 * picture first in the first user turn and no separator (as llama-mtmd-cli and `mm run` prepend
 * it), the text around the picture tokenized on its own with special tokens parsed and BOS first
 * (libmtmd's mtmd_tokenize), then each answer as the template renders the assistant turn. The loss
 * covers each answer's tokens up to its end-of-generation token (appended when the template has
 * none), so the model learns to stop where `mm run` stops.
 */
export function layoutTrainSample(
  backbone: Backbone,
  sample: Pick<TrainSample, 'turns'>,
  nImageRows: number,
  options: TrainLayoutOptions = {},
): TrainLayout {
  const jinja = options.jinja ?? false;
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean) => {
    const key = options.cache ? JSON.stringify([jinja, addGenerationPrompt, messages]) : '';
    const hit = options.cache?.get(key);
    if (hit !== undefined) return hit;
    const text = backbone.applyChatTemplate(messages, { addGenerationPrompt, jinja });
    options.cache?.set(key, text);
    return text;
  };
  const special = (s: string | undefined) =>
    s ? backbone.tokenize(s, { addBos: false, parseSpecial: true }) : new Int32Array(0);
  const messages: ChatMessage[] = [];
  const parts: ArrayLike<number>[] = [];
  const targets: number[] = [];
  let count = 0;
  let imagePos = -1;
  let rendered = '';
  const push = (t: ArrayLike<number>) => {
    parts.push(t);
    count += t.length;
  };
  for (const [k, turn] of sample.turns.entries()) {
    messages.push({
      role: 'user',
      content: k === 0 ? MEDIA_MARKER + turn.question : turn.question,
    });
    const prompt = render(messages, true);
    if (!prompt.startsWith(rendered)) {
      throw new MmError(
        ErrorCode.MM_CHAT_TEMPLATE,
        'the chat template rewrites earlier turns when a turn is added; multi-turn samples cannot be laid out',
      );
    }
    const text = prompt.slice(rendered.length);
    if (k === 0) {
      const segments = text.split(MEDIA_MARKER);
      if (segments.length !== 2) {
        throw new MmError(
          ErrorCode.MM_CHAT_TEMPLATE,
          'the chat template dropped or repeated the media marker',
        );
      }
      push(
        backbone.tokenize(segments[0] as string, {
          addBos: backbone.info.addBos,
          parseSpecial: true,
        }),
      );
      push(special(options.imageBegin));
      imagePos = count;
      push(special(options.imageEnd));
      push(backbone.tokenize(segments[1] as string, { addBos: false, parseSpecial: true }));
    } else {
      push(backbone.tokenize(text, { addBos: false, parseSpecial: true }));
    }
    messages.push({ role: 'assistant', content: turn.answer });
    const full = render(messages, false);
    if (!full.startsWith(prompt)) {
      throw new MmError(
        ErrorCode.MM_CHAT_TEMPLATE,
        "the chat template renders the conversation differently once the assistant's answer is added",
      );
    }
    const answer = Array.from(
      backbone.tokenize(full.slice(prompt.length), { addBos: false, parseSpecial: true }),
    );
    let end = answer.findIndex((t) => backbone.isEndOfGeneration(t));
    if (end < 0) {
      answer.push(backbone.eos);
      end = answer.length - 1;
    }
    for (let i = 0; i <= end; i++) targets.push(count + i + nImageRows);
    push(answer);
    rendered = full;
  }
  // what follows the last answer (the template's newline after its end token) changes no loss
  count = (targets[targets.length - 1] as number) - nImageRows + 1;
  const tokens = new Int32Array(count);
  let at = 0;
  for (const p of parts) {
    if (at >= count) break;
    const take = Math.min(p.length, count - at);
    tokens.set(take === p.length ? p : Array.prototype.slice.call(p, 0, take), at);
    at += take;
  }
  return { tokens, imagePos, targets: Int32Array.from(targets), length: count + nImageRows };
}
