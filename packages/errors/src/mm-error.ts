import { ErrorCode, ErrorCodeMessage } from './codes.js';

const marker = Symbol.for('@mm/errors.MmError');

export interface MmErrorOptions {
  cause?: unknown;
  /** Extra structured facts (file, sizes, limits) that a caller can read without parsing text. */
  details?: Record<string, unknown>;
}

/**
 * Base error of every @mm package. `code` is stable and is what callers should match on;
 * `message` is for people. Use `MmError.isInstance(e)` rather than `instanceof`: it also works
 * across duplicate copies of this package.
 */
export class MmError extends Error {
  readonly [marker] = true;
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options: MmErrorOptions = {}) {
    super(
      message ?? ErrorCodeMessage[code],
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'MmError';
    this.code = code;
    this.details = options.details ?? {};
  }

  static isInstance(value: unknown): value is MmError {
    return typeof value === 'object' && value !== null && marker in value;
  }

  static hasCode(value: unknown, code: ErrorCode): value is MmError {
    return MmError.isInstance(value) && value.code === code;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCode, value);
}

/** Thrown when a disposed object is used. */
export class MmDisposedError extends MmError {
  constructor(what: string) {
    super(ErrorCode.MM_DISPOSED, `${what} was used after dispose()`);
    this.name = 'MmDisposedError';
  }
}

/** Thrown for an argument of the wrong type or value; `argument` names it. */
export class MmInvalidArgumentError extends MmError {
  readonly argument: string;
  constructor(argument: string, message: string) {
    super(ErrorCode.MM_INVALID_ARGUMENT, `${argument}: ${message}`, { details: { argument } });
    this.name = 'MmInvalidArgumentError';
    this.argument = argument;
  }
}

/**
 * Turns whatever a native call threw into an MmError. The addon throws plain Errors whose
 * `code` property is one of the generated codes; anything else is MM_INTERNAL.
 */
export function fromNative(error: unknown): MmError {
  if (MmError.isInstance(error)) return error;
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    if (isErrorCode(code)) return new MmError(code, error.message, { cause: error });
    return new MmError(ErrorCode.MM_INTERNAL, error.message, { cause: error });
  }
  return new MmError(ErrorCode.MM_INTERNAL, String(error));
}
