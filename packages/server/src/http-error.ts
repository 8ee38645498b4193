import { type ErrorCode, MmError } from '@mm/errors';

/** OpenAI's error `type`s that we use. */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'server_error';

/** An error with an HTTP status, sent as OpenAI's `{ error: { message, type, param, code } }`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | null;
  readonly param: string | null;

  constructor(
    status: number,
    message: string,
    options: {
      type?: ErrorType;
      code?: string | null;
      param?: string | null;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = status;
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    this.code = options.code ?? null;
    this.param = options.param ?? null;
  }

  toJSON(): {
    error: { message: string; type: string; param: string | null; code: string | null };
  } {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

export function badRequest(message: string, param: string | null = null, code = 'invalid_value') {
  return new HttpError(400, message, { param, code });
}

/** What each mm error code means for an HTTP client. Codes not listed are 500. */
const STATUS: Partial<Record<ErrorCode, [number, string]>> = {
  MM_INVALID_ARGUMENT: [400, 'invalid_value'],
  MM_IMAGE_DECODE: [400, 'invalid_image'],
  MM_IMAGE_TOO_LARGE: [400, 'image_too_large'],
  MM_AUDIO_DECODE: [400, 'invalid_audio'],
  MM_AUDIO_TOO_LONG: [400, 'audio_too_long'],
  MM_OUT_OF_CONTEXT: [400, 'context_length_exceeded'],
  MM_GRAMMAR: [400, 'invalid_response_format'],
  MM_MODALITY_UNSUPPORTED: [400, 'modality_unsupported'],
  MM_CHAT_TEMPLATE: [400, 'invalid_messages'],
  // a ggml RPC worker holding the model's layers (--rpc) is gone or unreachable
  MM_RPC_LOST: [503, 'rpc_worker_lost'],
  MM_RPC_CONNECT: [503, 'rpc_worker_unreachable'],
};

/**
 * Turns anything a request handler threw into an HttpError. `timedOut` tells an abort by the
 * per-request timeout (408) from one by the client going away (499, never seen by the client).
 */
export function toHttpError(e: unknown, timedOut = false): HttpError {
  if (e instanceof HttpError) return e;
  if (MmError.isInstance(e)) {
    if (e.code === 'MM_ABORTED') {
      return timedOut
        ? new HttpError(408, 'the request took longer than the server allows', {
            type: 'timeout_error',
            code: 'timeout',
          })
        : new HttpError(499, 'the client closed the request', { code: 'client_closed' });
    }
    const s = STATUS[e.code];
    if (s) return new HttpError(s[0], e.message, { code: s[1], cause: e });
    return new HttpError(500, `${e.code}: ${e.message}`, { code: e.code, cause: e });
  }
  if (e instanceof Error && e.name === 'TimeoutError') {
    return new HttpError(408, 'the request took longer than the server allows', {
      type: 'timeout_error',
      code: 'timeout',
    });
  }
  if (e instanceof Error && e.name === 'AbortError') {
    return new HttpError(499, 'the client closed the request', { code: 'client_closed' });
  }
  return new HttpError(500, 'internal server error', { code: 'internal_error', cause: e });
}
