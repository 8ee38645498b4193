import { ErrorCode, MmError } from '@mm/errors';

/**
 * A GGUF file is malformed, truncated or hostile (code MM_GGUF_INVALID). `offset` is the file
 * offset of the item that is wrong (-1 when the problem has no single place, e.g. a missing key).
 */
export class MmGgufFormatError extends MmError {
  readonly offset: number;

  constructor(message: string, offset: number, options: { cause?: unknown; file?: string } = {}) {
    const where = offset >= 0 ? ` (at offset ${offset})` : '';
    const file = options.file === undefined ? '' : `${options.file}: `;
    super(ErrorCode.MM_GGUF_INVALID, `${file}invalid GGUF: ${message}${where}`, {
      cause: options.cause,
      details: { offset, ...(options.file === undefined ? {} : { file: options.file }) },
    });
    this.name = 'MmGgufFormatError';
    this.offset = offset;
  }
}

/**
 * A GGUF file is well formed but uses something we do not read (code MM_GGUF_UNSUPPORTED):
 * big-endian files, GGUF v1 or a version newer than 3, ggml types removed from ggml, metadata
 * beyond the configured size limit.
 */
export class MmGgufUnsupportedError extends MmError {
  readonly offset: number;

  constructor(message: string, offset: number, options: { file?: string } = {}) {
    const file = options.file === undefined ? '' : `${options.file}: `;
    super(
      ErrorCode.MM_GGUF_UNSUPPORTED,
      `${file}unsupported GGUF: ${message} (at offset ${offset})`,
      {
        details: { offset, ...(options.file === undefined ? {} : { file: options.file }) },
      },
    );
    this.name = 'MmGgufUnsupportedError';
    this.offset = offset;
  }
}

/** True for the errors a GGUF read may end in on bad input (any MmError with a GGUF code). */
export function isGgufError(error: unknown): error is MmError {
  return (
    MmError.hasCode(error, ErrorCode.MM_GGUF_INVALID) ||
    MmError.hasCode(error, ErrorCode.MM_GGUF_UNSUPPORTED)
  );
}
