import { HttpError } from './http-error.js';

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
    if (options.signal.aborted) throw options.signal.reason;
    throw new HttpError(400, `could not fetch the image ${url}: ${(e as Error).message}`, {
      code: 'image_fetch_failed',
      cause: e,
    });
  }
  if (!res.ok || !res.body) {
    throw new HttpError(400, `fetching the image ${url} gave HTTP ${res.status}`, {
      code: 'image_fetch_failed',
    });
  }
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > options.maxBytes) {
    await res.body.cancel();
    throw new HttpError(400, `the image ${url} is larger than ${options.maxBytes} bytes`, {
      code: 'image_too_large',
    });
  }
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      n += chunk.byteLength;
      if (n > options.maxBytes) {
        throw new HttpError(400, `the image ${url} is larger than ${options.maxBytes} bytes`, {
          code: 'image_too_large',
        });
      }
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (options.signal.aborted) throw options.signal.reason;
    throw new HttpError(400, `could not fetch the image ${url}: ${(e as Error).message}`, {
      code: 'image_fetch_failed',
      cause: e,
    });
  }
  return `data:application/octet-stream;base64,${Buffer.concat(chunks).toString('base64')}`;
}
