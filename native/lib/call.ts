import { fromNative, MmError } from '@mm/errors';
import type { NativeOperation } from './addon-types.js';

/**
 * The one async call shape of mm:
 *   throwIfAborted → start the native operation → abort listener calls cancel → await →
 *   map native errors to typed ones → remove the listener.
 * A call cancelled through `signal` rejects with `signal.reason`.
 */
export async function runNative<T>(
  start: () => NativeOperation<T>,
  signal?: AbortSignal,
): Promise<T> {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  signal?.throwIfAborted();
  let op: NativeOperation<T>;
  try {
    op = start();
  } catch (e) {
    throw fromNative(e);
  }
  const onAbort = () => op.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await op.promise;
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw fromNative(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Runs a synchronous native call, mapping what it throws to MmError. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw MmError.isInstance(e) ? e : fromNative(e);
  }
}
