import { createRequire } from 'node:module';
import { ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import { isSafeRepoPath } from './cache.js';
import type { HubFile } from './select.js';

export const defaultEndpoint = 'https://huggingface.co';

/**
 * The hub's base URL: `explicit`, else `MM_HF_ENDPOINT`, else `MODEL_ENDPOINT` or `HF_ENDPOINT`
 * (the variables llama.cpp reads), else the Hugging Face Hub. No trailing slash.
 */
export function resolveEndpoint(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const raw = explicit || env.MM_HF_ENDPOINT || env.MODEL_ENDPOINT || env.HF_ENDPOINT;
  const value = raw || defaultEndpoint;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new MmInvalidArgumentError('endpoint', `'${value}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MmInvalidArgumentError('endpoint', `'${value}' is not an http(s) URL`);
  }
  return value.replace(/\/+$/, '');
}

const version = (() => {
  try {
    return String(createRequire(import.meta.url)('../../package.json').version);
  } catch {
    return '0';
  }
})();

/** Everything a hub request needs; built once per `pullModel` call. */
export interface HubContext {
  endpoint: string;
  token?: string;
  signal?: AbortSignal;
  /** Further tries after a failed one (network error, HTTP 5xx/429/408, a cut-off body). */
  maxRetries: number;
  /** Wait before the first retry; it doubles each time, up to 10 s. */
  retryDelayMs: number;
  /** A request that sends nothing for this long is cut off (and retried). */
  stallTimeoutMs: number;
}

export function hubHeaders(ctx: HubContext, extra: Record<string, string> = {}) {
  return {
    'user-agent': `mm/${version} (llama-cpp compatible)`,
    ...(ctx.token && { authorization: `Bearer ${ctx.token}` }),
    ...extra,
  };
}

/** A download error that is worth another try. */
export function retryable(message: string, details: Record<string, unknown>, cause?: unknown) {
  return new MmError(ErrorCode.MM_DOWNLOAD, message, {
    cause,
    details: { ...details, retryable: true },
  });
}

function isRetryable(e: unknown): e is MmError {
  return MmError.isInstance(e) && e.details.retryable === true;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `attempt` until it succeeds, throws something not retryable, or has failed
 * `1 + ctx.maxRetries` times; the last error then says how many tries there were.
 */
export async function withRetries<T>(ctx: HubContext, attempt: () => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (!isRetryable(e)) throw e;
      if (n >= ctx.maxRetries) {
        const tries = n + 1;
        throw new MmError(
          ErrorCode.MM_DOWNLOAD,
          `${e.message} (gave up after ${tries} ${tries === 1 ? 'try' : 'tries'})`,
          { cause: e.cause ?? e, details: { ...e.details, retryable: false, tries } },
        );
      }
      await sleep(Math.min(ctx.retryDelayMs * 2 ** n, 10_000), ctx.signal);
    }
  }
}

/**
 * An AbortController that follows the caller's signal and also aborts when `touch()` has not
 * been called for `ms` (a connection that stopped sending without closing).
 */
export class StallGuard {
  readonly controller = new AbortController();
  stalled = false;
  readonly #ms: number;
  readonly #signal: AbortSignal | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #onAbort = () => this.controller.abort(this.#signal!.reason);

  constructor(signal: AbortSignal | undefined, ms: number) {
    this.#ms = ms;
    this.#signal = signal;
    if (signal?.aborted) this.controller.abort(signal.reason);
    else signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.stalled = true;
      this.controller.abort(new Error(`no data for ${this.#ms} ms`));
    }, this.#ms);
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

/** The hub's own words about a failed request: its `error` JSON field or the start of the body. */
async function errorText(res: Response): Promise<string> {
  try {
    const text = (await res.text()).slice(0, 2000);
    try {
      const json = JSON.parse(text) as { error?: unknown };
      if (typeof json.error === 'string') return json.error.slice(0, 200);
    } catch {}
    return text.trim().slice(0, 200);
  } catch {
    return '';
  }
}

/**
 * Turns a response that is not 2xx into the error to throw: MM_HUB_NOT_FOUND for 404 (and the
 * hub's 401 "repository not found"), a retryable MM_DOWNLOAD for 408/429/5xx, MM_DOWNLOAD else.
 */
export async function statusError(res: Response, url: string, what: string): Promise<MmError> {
  const said = await errorText(res);
  const details = { url, status: res.status, ...(said && { response: said }) };
  const base = `${what}: HTTP ${res.status} from ${url}${said ? ` (${said})` : ''}`;
  const code = res.headers.get('x-error-code') ?? '';
  if (res.status === 404 || /NotFound/.test(code)) {
    return new MmError(
      ErrorCode.MM_HUB_NOT_FOUND,
      `${base}; a private or gated repository needs HF_TOKEN`,
      { details },
    );
  }
  if (res.status === 408 || res.status === 429 || res.status >= 500)
    return retryable(base, details);
  const hint =
    res.status === 401 || res.status === 403 ? '; set HF_TOKEN to a token with access' : '';
  return new MmError(ErrorCode.MM_DOWNLOAD, `${base}${hint}`, { details });
}

/**
 * One GET through a StallGuard; network failures and stalls become retryable MM_DOWNLOAD
 * errors, an abort rethrows `signal.reason`. The guard stays armed for reading the body.
 */
export async function hubGet(
  ctx: HubContext,
  url: string,
  guard: StallGuard,
  headers: Record<string, string> = {},
): Promise<Response> {
  try {
    return await fetch(url, { headers: hubHeaders(ctx, headers), signal: guard.signal });
  } catch (cause) {
    throw networkError(ctx, guard, url, cause);
  }
}

export function networkError(
  ctx: HubContext,
  guard: StallGuard,
  url: string,
  cause: unknown,
): unknown {
  if (ctx.signal?.aborted) return ctx.signal.reason;
  if (MmError.isInstance(cause)) return cause;
  const reason = guard.stalled
    ? `no data for ${ctx.stallTimeoutMs} ms`
    : describe(cause as Error & { cause?: Error & { code?: string } });
  return retryable(`GET ${url} failed: ${reason}`, { url }, cause);
}

function describe(e: Error & { cause?: Error & { code?: string } }): string {
  const inner = e?.cause;
  if (inner?.message) {
    return inner.code && !inner.message.includes(inner.code)
      ? `${inner.code} ${inner.message}`
      : inner.message;
  }
  return e?.message ?? String(e);
}

async function getJson(
  ctx: HubContext,
  url: string,
  what: string,
): Promise<{ json: unknown; next?: string }> {
  return withRetries(ctx, async () => {
    const guard = new StallGuard(ctx.signal, ctx.stallTimeoutMs);
    try {
      const res = await hubGet(ctx, url, guard, { accept: 'application/json' });
      if (!res.ok) throw await statusError(res, url, what);
      let text: string;
      try {
        text = await res.text();
      } catch (cause) {
        throw networkError(ctx, guard, url, cause);
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (cause) {
        throw new MmError(ErrorCode.MM_DOWNLOAD, `${what}: ${url} did not answer JSON`, {
          cause,
          details: { url },
        });
      }
      return { json, next: nextLink(res.headers.get('link'), url) };
    } finally {
      guard.dispose();
    }
  });
}

/** The `rel="next"` URL of a Link header, when it is on the same origin as `url`. */
function nextLink(link: string | null, url: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (!m) continue;
    try {
      const next = new URL(m[1]!, url);
      if (next.origin === new URL(url).origin) return next.href;
    } catch {}
  }
  return undefined;
}

const commitPattern = /^[0-9a-f]{40}$/;

/** The commit a repository's `main` branch points at (else its first branch), as llama.cpp asks. */
export async function repoCommit(ctx: HubContext, repo: string): Promise<string> {
  const url = `${ctx.endpoint}/api/models/${repo}/refs`;
  const { json } = await getJson(ctx, url, `refs of ${repo}`);
  const branches = (json as { branches?: unknown })?.branches;
  const valid = (Array.isArray(branches) ? branches : []).filter(
    (b): b is { name: string; targetCommit: string } =>
      typeof b?.name === 'string' &&
      typeof b?.targetCommit === 'string' &&
      commitPattern.test(b.targetCommit),
  );
  const branch = valid.find((b) => b.name === 'main') ?? valid[0];
  if (!branch) {
    throw new MmError(ErrorCode.MM_HUB_NOT_FOUND, `${repo}: no branch in ${url}`, {
      details: { repo, url },
    });
  }
  return branch.targetCommit;
}

const maxPages = 100;

/** Every file of `repo` at `commit`, with sizes and hashes (the hub's recursive tree listing). */
export async function repoFiles(ctx: HubContext, repo: string, commit: string): Promise<HubFile[]> {
  const files: HubFile[] = [];
  let url: string | undefined = `${ctx.endpoint}/api/models/${repo}/tree/${commit}?recursive=true`;
  for (let page = 0; url && page < maxPages; page++) {
    const { json, next }: { json: unknown; next?: string } = await getJson(
      ctx,
      url,
      `file list of ${repo}`,
    );
    if (!Array.isArray(json)) {
      throw new MmError(ErrorCode.MM_DOWNLOAD, `file list of ${repo}: ${url} is not a JSON array`, {
        details: { url },
      });
    }
    for (const item of json) {
      const file = toHubFile(item);
      if (file) files.push(file);
    }
    url = next;
  }
  return files;
}

function toHubFile(item: unknown): HubFile | undefined {
  const it = item as {
    type?: unknown;
    path?: unknown;
    size?: unknown;
    oid?: unknown;
    lfs?: { oid?: unknown; size?: unknown };
  };
  if (it?.type !== 'file' || typeof it.path !== 'string' || !isSafeRepoPath(it.path)) return;
  const lfs = typeof it.lfs === 'object' && it.lfs !== null ? it.lfs : undefined;
  const size = lfs?.size ?? it.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return;
  const file: HubFile = { path: it.path, size };
  const sha = typeof lfs?.oid === 'string' ? lfs.oid.replace(/^sha256:/, '').toLowerCase() : '';
  if (/^[0-9a-f]{64}$/.test(sha)) file.sha256 = sha;
  else if (!lfs && typeof it.oid === 'string' && commitPattern.test(it.oid)) file.gitOid = it.oid;
  return file;
}

/** The URL of a file at a commit: `<endpoint>/<repo>/resolve/<commit>/<path>`. */
export function fileUrl(ctx: HubContext, repo: string, commit: string, path: string): string {
  return `${ctx.endpoint}/${repo}/resolve/${commit}/${path.split('/').map(encodeURIComponent).join('/')}`;
}
