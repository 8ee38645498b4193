import { MmInvalidArgumentError } from './mm-error.js';

/**
 * The `signal` option of an async call, checked before any work: undefined or an AbortSignal,
 * else a TypeError (as sharp and Node's own APIs throw), or MmInvalidArgumentError('signal')
 * with `invalid: 'argument'` (for option objects whose every bad field is MM_INVALID_ARGUMENT).
 * Returns the signal, so that a call can go on with `checkSignal(signal)?.throwIfAborted()`.
 */
export function checkSignal(
  signal: unknown,
  invalid: 'type' | 'argument' = 'type',
): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  if (invalid === 'argument') throw new MmInvalidArgumentError('signal', 'must be an AbortSignal');
  throw new TypeError('signal must be an AbortSignal');
}
