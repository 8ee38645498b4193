import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import {
  type HubContext,
  hubGet,
  networkError,
  retryable,
  StallGuard,
  statusError,
  withRetries,
} from './http.js';
import type { HubFile } from './select.js';

/** Progress of one file, reported about 20 times a second while bytes arrive. */
export interface FileProgress {
  /** The file's path in the repository. */
  file: string;
  /** 'download' while bytes arrive, 'verify' while hashing, 'done' once the file is in place. */
  phase: 'download' | 'verify' | 'done';
  /** Bytes on disk so far, a resumed `.part` included. */
  downloaded: number;
  total: number;
  /** Bytes received over the network in this call. */
  transferred: number;
  /** `transferred` per second of this call's transfer. */
  bytesPerSecond: number;
  /** At 'done': true when nothing had to be downloaded. */
  cached: boolean;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

function newHash(file: HubFile): { hash: Hash; expected?: string; algo: string } {
  if (file.sha256) return { hash: createHash('sha256'), expected: file.sha256, algo: 'sha256' };
  const hash = createHash('sha1');
  // A git blob id is the sha1 of "blob <size>\0" followed by the bytes.
  hash.update(`blob ${file.size}\0`);
  return { hash, expected: file.gitOid, algo: 'git-sha1' };
}

/** Hashes a local file the way the hub recorded it; undefined when the hub recorded no hash. */
export async function hashFile(
  path: string,
  file: HubFile,
  signal?: AbortSignal,
): Promise<{ actual: string; expected: string; algo: string } | undefined> {
  const { hash, expected, algo } = newHash(file);
  if (!expected) return undefined;
  try {
    for await (const chunk of createReadStream(path, { signal })) hash.update(chunk as Buffer);
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    throw new MmError(ErrorCode.MM_IO, `cannot read ${path}: ${(cause as Error).message}`, {
      cause,
      details: { file: path },
    });
  }
  return { actual: hash.digest('hex'), expected, algo };
}

/** True when `dest` exists with the recorded size and, unless `trusted`, the recorded hash. */
export async function isComplete(
  dest: string,
  file: HubFile,
  trusted: boolean,
  signal?: AbortSignal,
): Promise<boolean> {
  if ((await sizeOf(dest)) !== file.size) return false;
  if (trusted) return true;
  const h = await hashFile(dest, file, signal);
  return h === undefined || h.actual === h.expected;
}

const progressIntervalMs = 50;

/**
 * Downloads `url` to `dest` as the hub recorded `file`: bytes go to `<dest>.part` (resumed with an
 * HTTP Range request when one is there), the size and hash are checked, and only then is the
 * file renamed to `dest`. A failure never leaves a file at `dest`: a cut-off transfer keeps its
 * `.part` for the next try, wrong bytes (MM_CHECKSUM) remove it. Retries follow `ctx`.
 */
export async function downloadFile(
  ctx: HubContext,
  url: string,
  dest: string,
  file: HubFile,
  onProgress?: (p: FileProgress) => void,
): Promise<{ transferred: number }> {
  const part = `${dest}.part`;
  const started = performance.now();
  let transferred = 0;
  let lastReport = 0;
  const report = (phase: FileProgress['phase'], downloaded: number, force = false) => {
    const now = performance.now();
    if (!onProgress || (!force && now - lastReport < progressIntervalMs)) return;
    lastReport = now;
    const seconds = (now - started) / 1000;
    onProgress({
      file: file.path,
      phase,
      downloaded,
      total: file.size,
      transferred,
      bytesPerSecond: seconds > 0 ? transferred / seconds : 0,
      cached: false,
    });
  };

  try {
    await mkdir(dirname(dest), { recursive: true });
  } catch (cause) {
    throw new MmError(
      ErrorCode.MM_IO,
      `cannot create ${dirname(dest)}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }

  const fetchOnce = async (): Promise<void> => {
    let have = (await sizeOf(part)) ?? 0;
    if (have > file.size) {
      await rm(part, { force: true });
      have = 0;
    }
    if (have === file.size && have > 0) return; // complete already: verify below
    const guard = new StallGuard(ctx.signal, ctx.stallTimeoutMs);
    try {
      const res = await hubGet(ctx, url, guard, have > 0 ? { range: `bytes=${have}-` } : {});
      if (res.status === 416 && have > 0) {
        await res.body?.cancel();
        await rm(part, { force: true });
        throw retryable(`GET ${url}: range ${have}- not satisfiable, starting over`, { url });
      }
      if (!res.ok) throw await statusError(res, url, `download of ${file.path}`);
      if (have > 0 && res.status === 206) {
        const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
        if (Number(start) !== have) {
          await res.body?.cancel();
          await rm(part, { force: true });
          throw retryable(`GET ${url}: asked for bytes ${have}-, got '${start}-'`, { url });
        }
      } else {
        have = 0; // a plain 200: the server ignored the range, start from the first byte
      }
      let out: Awaited<ReturnType<typeof open>>;
      try {
        out = await open(part, have > 0 ? 'a' : 'w');
      } catch (cause) {
        await res.body?.cancel();
        throw new MmError(ErrorCode.MM_IO, `cannot write ${part}: ${(cause as Error).message}`, {
          cause,
          details: { file: part },
        });
      }
      let got = have;
      try {
        report('download', got, true);
        if (res.body) {
          try {
            for await (const chunk of res.body) {
              guard.touch();
              if (got + chunk.byteLength > file.size) {
                throw new MmError(
                  ErrorCode.MM_DOWNLOAD,
                  `GET ${url}: more than the recorded ${file.size} bytes`,
                  { details: { url, expectedSize: file.size } },
                );
              }
              await out.write(chunk);
              got += chunk.byteLength;
              transferred += chunk.byteLength;
              report('download', got);
            }
          } catch (cause) {
            if (MmError.isInstance(cause) && cause.details.retryable !== true) {
              await rm(part, { force: true });
              throw cause;
            }
            throw networkError(ctx, guard, url, cause);
          }
        }
      } finally {
        await out.close();
      }
      report('download', got, true);
      if (got < file.size) {
        throw retryable(`GET ${url}: the body ended after ${got} of ${file.size} bytes`, {
          url,
          received: got,
          expectedSize: file.size,
        });
      }
    } finally {
      guard.dispose();
    }
  };

  await withRetries(ctx, fetchOnce);

  report('verify', file.size, true);
  const h = await hashFile(part, file, ctx.signal);
  if (h && h.actual !== h.expected) {
    await rm(part, { force: true });
    throw new MmError(
      ErrorCode.MM_CHECKSUM,
      `${file.path}: ${h.algo} ${h.actual} does not match the hub's ${h.expected} (from ${url}); the partial file was removed`,
      { details: { url, file: file.path, algo: h.algo, expected: h.expected, actual: h.actual } },
    );
  }
  try {
    await rename(part, dest);
  } catch (cause) {
    throw new MmError(
      ErrorCode.MM_IO,
      `cannot rename ${part} to ${dest}: ${(cause as Error).message}`,
      {
        cause,
        details: { file: dest },
      },
    );
  }
  return { transferred };
}
