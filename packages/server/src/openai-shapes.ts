import {
  type ChatOptions,
  type ChatStats,
  type ContentPart,
  isBase64,
  type Message,
  parseDataUrl,
} from '@mm/core';
import { badRequest } from './http-error.js';
import { LiftedDataUrl } from './json-body.js';
import type { ServerLimits } from './limits.js';

/** A validated `POST /v1/chat/completions` body, in @mm/core's terms. */
export interface ChatRequest {
  model: string;
  messages: Message[];
  options: Omit<ChatOptions, 'signal'>;
  stream: boolean;
  includeUsage: boolean;
  /** Remote image URLs to fetch before answering (only with allowRemoteImages). */
  remoteImages: { part: { type: 'image_url'; image_url: { url: string } }; url: string }[];
}

const ROLES = new Set(['system', 'user', 'assistant', 'developer']);

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optionalNumber(
  body: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
  integer = false,
): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw badRequest(
      `'${key}' must be ${integer ? 'an integer' : 'a number'}`,
      key,
      'invalid_type',
    );
  }
  if (v < min || v > max) throw badRequest(`'${key}' must be in [${min}, ${max}]`, key);
  return v;
}

/**
 * The base64 payload of an image `data:` URL, checked strictly (Buffer.from ignores bad
 * characters) and for size; else a 400 naming `param`.
 */
function checkDataUrl(url: string, param: string, limits: ServerLimits): string {
  const data = parseDataUrl(url);
  if (!data) throw badRequest('image_url.url must be a data: URL', param, 'invalid_image_url');
  if (!data.base64)
    throw badRequest('only base64 data: URLs are supported', param, 'invalid_image_url');
  const { payload } = data;
  if (payload.length === 0)
    throw badRequest('the data: URL holds no bytes', param, 'invalid_image');
  if (!isBase64(payload)) {
    throw badRequest('the data: URL is not valid base64', param, 'invalid_base64');
  }
  checkImageSize(payload.length, param, limits);
  return payload;
}

function checkImageSize(base64Length: number, param: string, limits: ServerLimits): void {
  if ((base64Length / 4) * 3 > limits.maxImageBytes) {
    throw badRequest(
      `an image may have at most ${limits.maxImageBytes} bytes`,
      param,
      'image_too_large',
    );
  }
}

const AUDIO_FORMATS: Readonly<Record<string, string>> = {
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
};

/**
 * An OpenAI `input_audio` part (`{ data: <base64>, format: 'wav' | 'mp3' | 'flac' }`) as a
 * base64 `data:` URL of the format's media type; a bad format, bad base64 or too many bytes is a
 * 400 naming the field.
 */
function parseInputAudio(p: Record<string, unknown>, where: string, limits: ServerLimits): string {
  const ia = p.input_audio;
  if (!isObject(ia)) {
    throw badRequest(
      `'${where}.input_audio' must be { data, format }`,
      `${where}.input_audio`,
      'invalid_type',
    );
  }
  const { data, format } = ia;
  if (typeof format !== 'string' || !Object.hasOwn(AUDIO_FORMATS, format)) {
    throw badRequest(
      `'${where}.input_audio.format' must be 'wav', 'mp3' or 'flac'`,
      `${where}.input_audio.format`,
      'invalid_audio_format',
    );
  }
  if (typeof data !== 'string') {
    throw badRequest(
      `'${where}.input_audio.data' must be a base64 string`,
      `${where}.input_audio.data`,
      'invalid_type',
    );
  }
  const param = `${where}.input_audio.data`;
  if (data.length === 0) throw badRequest('the audio holds no bytes', param, 'invalid_audio');
  if (!isBase64(data)) {
    throw badRequest(`'${param}' is not valid base64`, param, 'invalid_base64');
  }
  if ((data.length / 4) * 3 > limits.maxAudioBytes) {
    throw badRequest(
      `a sound may have at most ${limits.maxAudioBytes} bytes`,
      param,
      'audio_too_large',
    );
  }
  return `data:${AUDIO_FORMATS[format]};base64,${data}`;
}

function parseContent(
  content: unknown,
  i: number,
  role: string,
  limits: ServerLimits,
  images: { count: number; audio: number },
  remote: ChatRequest['remoteImages'],
): string | ContentPart[] {
  const param = `messages[${i}].content`;
  if (typeof content === 'string') return content;
  if (content === null && role === 'assistant') return '';
  if (!Array.isArray(content))
    throw badRequest(`'${param}' must be a string or an array of parts`, param, 'invalid_type');
  return content.map((p: unknown, j: number): ContentPart => {
    const where = `${param}[${j}]`;
    if (!isObject(p)) throw badRequest(`'${where}' must be an object`, where, 'invalid_type');
    if (p.type === 'text') {
      if (typeof p.text !== 'string')
        throw badRequest(`'${where}.text' must be a string`, `${where}.text`, 'invalid_type');
      return { type: 'text', text: p.text };
    }
    if (p.type === 'image_url') {
      const iu = p.image_url;
      const url =
        typeof iu === 'string' || iu instanceof LiftedDataUrl
          ? iu
          : isObject(iu)
            ? iu.url
            : undefined;
      if (typeof url !== 'string' && !(url instanceof LiftedDataUrl)) {
        throw badRequest(
          `'${where}.image_url.url' must be a string`,
          `${where}.image_url.url`,
          'invalid_type',
        );
      }
      if (role !== 'user')
        throw badRequest(`images are only accepted in user messages`, where, 'invalid_value');
      if (++images.count > limits.maxImages) {
        throw badRequest(
          `a request may have at most ${limits.maxImages} images`,
          where,
          'too_many_images',
        );
      }
      if (url instanceof LiftedDataUrl) {
        checkImageSize(url.base64Length, `${where}.image_url.url`, limits);
        // decoded while the body was parsed: its base64 never was a JS string (json-body.ts)
        return { type: 'image', image: url.bytes };
      }
      const part: { type: 'image_url'; image_url: { url: string } } = {
        type: 'image_url',
        image_url: { url },
      };
      if (/^https?:\/\//i.test(url)) {
        if (!limits.allowRemoteImages) {
          throw badRequest(
            'remote image URLs are disabled on this server (start it with --allow-remote-images); send a data: URL',
            `${where}.image_url.url`,
            'remote_images_disabled',
          );
        }
        remote.push({ part, url });
        return part;
      }
      // Never a path: a client must not make the server read its files.
      const payload = checkDataUrl(url, `${where}.image_url.url`, limits);
      // the bytes, decoded now: the request holds them (outside the JS heap) while it waits and
      // runs, not the 400 KB string, which then dies young instead of filling the old generation
      return { type: 'image', image: Buffer.from(payload, 'base64') };
    }
    if (p.type === 'input_audio') {
      if (role !== 'user')
        throw badRequest(`audio is only accepted in user messages`, where, 'invalid_value');
      if (++images.audio > limits.maxAudio) {
        throw badRequest(
          `a request may have at most ${limits.maxAudio} sounds`,
          where,
          'too_many_audio',
        );
      }
      return { type: 'audio', audio: parseInputAudio(p, where, limits) };
    }
    throw badRequest(
      `'${where}.type' must be 'text', 'image_url' or 'input_audio'`,
      `${where}.type`,
      'invalid_value',
    );
  });
}

/** Validates a chat-completions body; every problem is a 400 naming the parameter. */
export function parseChatRequest(body: unknown, limits: ServerLimits): ChatRequest {
  if (!isObject(body)) throw badRequest('the body must be a JSON object', null, 'invalid_type');
  if (typeof body.model !== 'string')
    throw badRequest("'model' must be a string", 'model', 'invalid_type');
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw badRequest("'messages' must be a non-empty array", 'messages', 'invalid_type');
  }
  if (body.messages.length > limits.maxMessages) {
    throw badRequest(`at most ${limits.maxMessages} messages`, 'messages');
  }
  const images = { count: 0, audio: 0 };
  const remoteImages: ChatRequest['remoteImages'] = [];
  const messages = body.messages.map((m: unknown, i: number): Message => {
    if (!isObject(m))
      throw badRequest(`'messages[${i}]' must be an object`, `messages[${i}]`, 'invalid_type');
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw badRequest(
        `'messages[${i}].role' must be one of system, developer, user, assistant`,
        `messages[${i}].role`,
      );
    }
    const role = m.role === 'developer' ? 'system' : m.role;
    return { role, content: parseContent(m.content, i, role, limits, images, remoteImages) };
  });

  if (body.n !== undefined && body.n !== null && body.n !== 1)
    throw badRequest("only 'n': 1 is supported", 'n');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean')
    throw badRequest("'stream' must be a boolean", 'stream', 'invalid_type');
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isObject(body.stream_options))
      throw badRequest("'stream_options' must be an object", 'stream_options', 'invalid_type');
    includeUsage = body.stream_options.include_usage === true;
  }

  const maxTokens =
    optionalNumber(body, 'max_completion_tokens', 1, limits.maxTokens, true) ??
    optionalNumber(body, 'max_tokens', 1, limits.maxTokens, true) ??
    limits.maxTokens;
  const options: Omit<ChatOptions, 'signal'> = { maxTokens };
  const temperature = optionalNumber(body, 'temperature', 0, 2);
  if (temperature !== undefined) options.temperature = temperature;
  const topP = optionalNumber(body, 'top_p', 0, 1);
  if (topP !== undefined) options.topP = topP;
  const seed = optionalNumber(body, 'seed', 0, 2 ** 32 - 1, true);
  if (seed !== undefined) options.seed = seed;

  const stop = body.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (
      !Array.isArray(list) ||
      list.length > 4 ||
      !list.every((s) => typeof s === 'string' && s !== '')
    ) {
      throw badRequest("'stop' must be a string or an array of up to 4 strings", 'stop');
    }
    options.stop = list as string[];
  }

  const rf = body.response_format;
  if (rf !== undefined && rf !== null) {
    if (!isObject(rf) || typeof rf.type !== 'string')
      throw badRequest("'response_format' must be { type }", 'response_format', 'invalid_type');
    if (rf.type === 'json_schema') {
      const js = rf.json_schema;
      if (!isObject(js) || !isObject(js.schema)) {
        throw badRequest(
          "'response_format.json_schema.schema' must be a JSON Schema object",
          'response_format.json_schema.schema',
          'invalid_type',
        );
      }
      options.sampling = { jsonSchema: js.schema };
    } else if (rf.type === 'json_object') {
      options.sampling = { jsonSchema: { type: 'object' } };
    } else if (rf.type !== 'text') {
      throw badRequest(
        "'response_format.type' must be text, json_object or json_schema",
        'response_format.type',
      );
    }
  }
  for (const key of ['tools', 'functions', 'logprobs', 'audio'] as const) {
    if (body[key] !== undefined && body[key] !== null && body[key] !== false)
      throw badRequest(`'${key}' is not supported by this server`, key, 'unsupported_parameter');
  }
  return {
    model: body.model,
    messages,
    options,
    stream: body.stream === true,
    includeUsage,
    remoteImages,
  };
}

export type FinishReason = 'stop' | 'length';

export function finishReason(stats: ChatStats): FinishReason {
  return stats.stopReason === 'length' || stats.stopReason === 'context' ? 'length' : 'stop';
}

export function usage(stats: ChatStats) {
  return {
    prompt_tokens: stats.promptTokens,
    completion_tokens: stats.generatedTokens,
    total_tokens: stats.promptTokens + stats.generatedTokens,
    prompt_tokens_details: { cached_tokens: stats.cachedTokens },
  };
}

/** Not in OpenAI's schema (as llama.cpp's server does): where the time went, ms. */
export function timings(stats: ChatStats, queuedMs: number) {
  return {
    queued_ms: queuedMs,
    encode_ms: stats.encodeMs,
    prefill_ms: stats.prefillMs,
    decode_ms: stats.decodeMs,
    time_to_first_token_ms: stats.timeToFirstTokenMs,
    tokens_per_second: stats.tokensPerSecond,
    image_cache_hits: stats.imageCacheHits,
  };
}
