import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';

/** Options shared by the native components of mm's vision path. */
export interface ComputeOptions {
  /** CPU threads for the graph (default: all cores). */
  threads?: number;
  /** Use the first GPU when mm.node was built with one (default true). */
  gpu?: boolean;
  /**
   * A ggml RPC worker ('host:port', started with `mm rpc-worker`) whose first device runs the
   * graphs and holds the weights, in place of a GPU. MM_RPC_CONNECT when it cannot be reached,
   * MM_RPC_LOST when it is lost later. The protocol is unauthenticated: trusted networks only.
   */
  rpc?: string;
}

export function resolveThreads(threads: number | undefined): number {
  const t = threads ?? availableParallelism();
  if (!Number.isInteger(t) || t < 1 || t > 512) {
    throw new MmInvalidArgumentError('threads', `must be an integer in [1, 512], got ${String(t)}`);
  }
  return t;
}

export function resolveGpu(gpu: boolean | undefined): boolean {
  if (gpu !== undefined && typeof gpu !== 'boolean') {
    throw new MmInvalidArgumentError('gpu', 'must be a boolean');
  }
  return gpu ?? true;
}

/** The `rpc` option: undefined, or a string (the addon checks its 'host:port' form). */
export function resolveRpc(rpc: string | undefined): string | undefined {
  if (rpc !== undefined && typeof rpc !== 'string') {
    throw new MmInvalidArgumentError('rpc', `must be a 'host:port' string, got ${String(rpc)}`);
  }
  return rpc;
}

/** What an encoder loader (VisionEncoder.load, AudioEncoder.load) hands to the addon. */
export interface EncoderLoadArgs {
  threads: number;
  gpu: boolean;
  rpc?: string;
  flashAttn: 'auto' | 'on' | 'off';
}

/**
 * The checked options of an encoder loader: the mmproj path, the signal (throws when already
 * aborted) and the native options (threads, gpu, rpc, flashAttn: 'auto' by default).
 */
export function encoderLoadArgs(
  mmproj: unknown,
  options: ComputeOptions & { flashAttn?: 'auto' | 'on' | 'off'; signal?: AbortSignal },
): { signal: AbortSignal | undefined; args: EncoderLoadArgs } {
  checkPath(mmproj, 'mmproj');
  const signal = checkSignal(options.signal);
  signal?.throwIfAborted();
  const flashAttn = options.flashAttn ?? 'auto';
  if (flashAttn !== 'auto' && flashAttn !== 'on' && flashAttn !== 'off') {
    throw new MmInvalidArgumentError('flashAttn', "must be 'auto', 'on' or 'off'");
  }
  return {
    signal,
    args: {
      threads: resolveThreads(options.threads),
      gpu: resolveGpu(options.gpu),
      ...(options.rpc !== undefined && { rpc: resolveRpc(options.rpc) }),
      flashAttn,
    },
  };
}

export function checkPath(path: unknown, name = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) {
    throw new MmInvalidArgumentError(name, 'must be a non-empty string');
  }
  return path;
}

/**
 * Reads a whole media file, refusing it on its size before reading: MM_FILE_NOT_FOUND when it
 * cannot be opened, `tooLarge(size)` when it has more than `maxBytes` bytes, MM_IO when reading
 * fails.
 */
/**
 * A regular file of at most `limit` bytes read on the calling thread, else undefined (larger, not
 * a regular file, or any error: the caller's async path then reads it and types the error). Four
 * system calls on a small local file take microseconds; the pool round trips of an async read
 * (open, stat, read, close) take a fraction of a millisecond each.
 */
export function readSmallFileSync(path: string, limit: number): Uint8Array | undefined {
  let fd: number;
  try {
    // non-blocking: opening a FIFO must not wait for a writer on this thread
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > limit) return undefined;
    const bytes = new Uint8Array(st.size);
    let done = 0;
    while (done < st.size) {
      const n = readSync(fd, bytes, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
    return bytes.subarray(0, done);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

export async function readFileBounded(
  path: string,
  maxBytes: number,
  tooLarge: (size: number) => MmError,
): Promise<Uint8Array> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `cannot open '${path}'`, { cause });
  }
  try {
    const { size } = await fh.stat();
    if (size > maxBytes) throw tooLarge(size);
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(bytes, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return bytes.subarray(0, done);
  } catch (cause) {
    if (MmError.isInstance(cause)) throw cause;
    throw new MmError(ErrorCode.MM_IO, `cannot read '${path}'`, { cause });
  } finally {
    await fh.close();
  }
}

/** The bytes of a Buffer, Uint8Array, ArrayBuffer or typed array (no copy). */
export function toBytes(buffer: unknown): Uint8Array {
  if (buffer instanceof Uint8Array) return buffer;
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  throw new MmInvalidArgumentError(
    'buffer',
    'must be a Buffer, Uint8Array, ArrayBuffer or typed array',
  );
}
