export { ErrorCode, ErrorCodeId, ErrorCodeMessage } from './codes.js';
export {
  fromNative,
  isErrorCode,
  MmDisposedError,
  MmError,
  type MmErrorOptions,
  MmInvalidArgumentError,
} from './mm-error.js';
