import { HttpError } from './http-error.js';
import type { ServerLimits } from './limits.js';
import type { ChatRequest } from './openai-shapes.js';

/** Replaces the request's remote image URLs (allowed by the limits) with data: URLs of their bytes. */
export async function fetchRemoteMedia(
  req: ChatRequest,
  limits: ServerLimits,
  signal: AbortSignal,
): Promise<void> {
  for (const r of req.remoteImages) {
    r.part.image_url.url = await fetchImageAsDataUrl(r.url, {
      maxBytes: limits.maxImageBytes,
      timeoutMs: limits.remoteImageTimeoutMs,
      signal,
    });
  }
}

/**
 * Fetches an http(s) image with a byte cap and a time limit and returns it as a base64 data: URL
 * (so that it goes through exactly the same checks as an inline image).
 */
export async function fetchImageAsDataUrl(
  url: string,
  options: { maxBytes: number; timeoutMs: number; signal: AbortSignal },
): Promise<string> {
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]);
  let res: Response;
  try {
    res = await fetch(url, { signal, redirect: 'follow' });
  } catch (e) {
    throw fetchFailed(url, e, options.signal);
  }
  if (!res.ok || !res.body) {
    throw new HttpError(400, `fetching the image ${url} gave HTTP ${res.status}`, {
      code: 'image_fetch_failed',
    });
  }
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > options.maxBytes) {
    await res.body.cancel();
    throw tooLarge(url, options.maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      n += chunk.byteLength;
      if (n > options.maxBytes) throw tooLarge(url, options.maxBytes);
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw fetchFailed(url, e, options.signal);
  }
  return `data:application/octet-stream;base64,${Buffer.concat(chunks).toString('base64')}`;
}

/** What a failed fetch throws: the caller's abort reason, else a 400. */
function fetchFailed(url: string, e: unknown, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason;
  return new HttpError(400, `could not fetch the image ${url}: ${(e as Error).message}`, {
    code: 'image_fetch_failed',
    cause: e,
  });
}

function tooLarge(url: string, maxBytes: number): HttpError {
  return new HttpError(400, `the image ${url} is larger than ${maxBytes} bytes`, {
    code: 'image_too_large',
  });
}
