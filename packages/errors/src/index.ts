export { ErrorCode, ErrorCodeId, ErrorCodeMessage } from './codes.js';
export {
  fromNative,
  isErrorCode,
  MmDisposedError,
  MmError,
  type MmErrorOptions,
  MmInvalidArgumentError,
} from './mm-error.js';
export { SerialQueue } from './serial-queue.js';
export { checkSignal } from './signal.js';
