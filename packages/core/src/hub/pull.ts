import { checkSignal, ErrorCode, MmError, MmInvalidArgumentError } from '@mm/errors';
import {
  cachedPath,
  defaultCacheDir,
  type RepoManifest,
  type ResolvedTag,
  readManifest,
  repoDir,
  writeManifest,
} from './cache.js';
import { downloadFile, type FileProgress, isComplete } from './download.js';
import { fileUrl, type HubContext, repoCommit, repoFiles, resolveEndpoint } from './http.js';
import { parseRepoRef } from './repo-ref.js';
import { findMmproj, type HubFile, type Selection, selectFiles } from './select.js';

export interface PullModelOptions {
  /** `<user>/<repo>[:quant]`, as llama.cpp's `-hf` takes it (e.g. `ggml-org/gemma-3-4b-it-GGUF:Q4_K_M`). */
  repo: string;
  /** The quant tag (case-insensitive); replaces one given in `repo`. Default: Q4_K_M, else Q8_0, else the first model GGUF. */
  quant?: string;
  /** Also fetch the repository's mmproj that best fits the model. Default true. */
  mmproj?: boolean;
  /** Default: `MM_CACHE_DIR`, `$XDG_CACHE_HOME/mm` or `~/.cache/mm`; files go to `hub/<user>/<repo>/`. */
  cacheDir?: string;
  /** Default: `MM_HF_ENDPOINT`, `MODEL_ENDPOINT` or `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Sent as `Authorization: Bearer` to the endpoint. Default: `HF_TOKEN`. */
  token?: string;
  /** Never touch the network; resolve from the cache only. Default: `MM_OFFLINE=1`. */
  offline?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: PullProgress) => void;
  /** Further tries after a network error, HTTP 5xx/429/408 or a cut-off body. Default 4. */
  maxRetries?: number;
  /** Wait before the first retry, doubled each time (at most 10 s). Default 500 ms. */
  retryDelayMs?: number;
  /** A request that sends nothing for this long is cut off and retried. Default 60 s. */
  stallTimeoutMs?: number;
}

/** `FileProgress` plus where the file stands among those of this pull. */
export interface PullProgress extends FileProgress {
  /** 0-based position of this file among `count`. */
  index: number;
  count: number;
}

export interface PulledFile {
  /** Path inside the repository. */
  path: string;
  /** Where it is on this machine. */
  localPath: string;
  size: number;
  sha256?: string;
  /** True when this call downloaded (some of) it; false when the cache had it. */
  downloaded: boolean;
}

export interface PullResult {
  repo: string;
  /** The quant tag asked for ('' for the default). */
  tag: string;
  /** The commit the files came from. */
  commit: string;
  /** The local path of the text model to load (the first part of a split model). */
  model: string;
  /** Every part of the text model, in order (one entry unless the GGUF is split). */
  modelParts: string[];
  /** The local path of the mmproj, when the repository has one and it was asked for. */
  mmproj?: string;
  files: PulledFile[];
  /** True when nothing was downloaded: every file came from the cache. */
  fromCache: boolean;
  /** Set when the hub could not be reached and the cached files were used instead. */
  networkError?: MmError;
}

function envFlag(v: string | undefined): boolean {
  return v !== undefined && /^(1|true|yes|on)$/i.test(v);
}

function checkOptions(options: PullModelOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new MmInvalidArgumentError('options', 'must be an object');
  }
  checkSignal(options.signal, 'argument');
  for (const k of ['maxRetries', 'retryDelayMs', 'stallTimeoutMs'] as const) {
    const v = options[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || (k === 'maxRetries' && v > 20))) {
      throw new MmInvalidArgumentError(
        k,
        `must be an integer >= 0${k === 'maxRetries' ? ' and <= 20' : ''}`,
      );
    }
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new MmInvalidArgumentError('onProgress', 'must be a function');
  }
}

/**
 * Downloads a GGUF text model and its mmproj from the Hugging Face Hub into the local cache and
 * returns their paths, resolving `<user>/<repo>[:quant]` the way llama.cpp's `-hf` does: the
 * `main` commit from `/api/models/<repo>/refs`, the file list from
 * `/api/models/<repo>/tree/<commit>?recursive=true`, then the model file for the quant (Q4_K_M,
 * else Q8_0, else the first model GGUF) and the mmproj closest to it.
 *
 * Each file goes to `<name>.part` first, resumes with an HTTP Range request after an
 * interruption, is checked against the sha256 the hub recorded, and only then takes its final
 * name; cached files are not downloaded again. When the hub cannot be reached (network error,
 * HTTP 5xx after the retries, 401/403) and the cache can answer, the cached files are returned
 * with `networkError` set; with `offline` the network is never used.
 *
 * Errors: MM_DOWNLOAD (network or HTTP failure: the URL and status are in the message and
 * `details`), MM_CHECKSUM (wrong bytes: expected and actual hash), MM_HUB_NOT_FOUND (no such
 * repository, or no GGUF for the quant: lists the GGUF files), MM_NOT_CACHED (offline and not
 * cached), MM_IO, MM_INVALID_ARGUMENT. An abort rejects with `signal.reason` and keeps the
 * `.part` file for a later resume.
 */
export async function pullModel(options: PullModelOptions): Promise<PullResult> {
  checkOptions(options);
  const { signal } = options;
  signal?.throwIfAborted();
  const { repo, tag } = parseRepoRef(options.repo, options.quant);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const dir = repoDir(cacheDir, repo);
  const wantMmproj = options.mmproj ?? true;
  const offline = options.offline ?? envFlag(process.env.MM_OFFLINE);
  const key = tag.toUpperCase();
  const manifest = await readManifest(dir, repo);
  signal?.throwIfAborted();

  if (offline) return fromCache(repo, tag, key, dir, manifest, wantMmproj, options);

  const ctx: HubContext = {
    endpoint: resolveEndpoint(options.endpoint),
    token: options.token ?? (process.env.HF_TOKEN || undefined),
    signal,
    maxRetries: options.maxRetries ?? 4,
    retryDelayMs: options.retryDelayMs ?? 500,
    stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
  };

  let commit: string;
  let listing: HubFile[];
  // With a cached copy to fall back on, do not keep someone without network waiting for long.
  const listCtx = manifest ? { ...ctx, maxRetries: Math.min(ctx.maxRetries, 1) } : ctx;
  try {
    commit = await repoCommit(listCtx, repo);
    listing = await repoFiles(listCtx, repo, commit);
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (!MmError.hasCode(e, ErrorCode.MM_DOWNLOAD)) throw e;
    let cached: PullResult;
    try {
      cached = await fromCache(repo, tag, key, dir, manifest, wantMmproj, options);
    } catch (notCached) {
      if (MmError.hasCode(notCached, ErrorCode.MM_NOT_CACHED)) throw e;
      throw notCached;
    }
    return { ...cached, networkError: e };
  }

  const selection = selectFiles(repo, listing, tag, { mmproj: wantMmproj });
  const wanted = [...selection.model, ...(selection.mmproj ? [selection.mmproj] : [])];
  const known = new Map((manifest?.files ?? []).map((f) => [f.path, f]));
  const files: PulledFile[] = [];
  for (const [index, file] of wanted.entries()) {
    const localPath = cachedPath(dir, file.path);
    const before = known.get(file.path);
    const trusted =
      before !== undefined &&
      before.size === file.size &&
      before.sha256 === file.sha256 &&
      before.gitOid === file.gitOid;
    const onProgress = options.onProgress
      ? (p: FileProgress) => options.onProgress!({ ...p, index, count: wanted.length })
      : undefined;
    let downloaded = false;
    if (!(await isComplete(localPath, file, trusted, signal))) {
      await downloadFile(ctx, fileUrl(ctx, repo, commit, file.path), localPath, file, onProgress);
      downloaded = true;
    }
    onProgress?.(doneEvent(file, downloaded));
    files.push({ path: file.path, localPath, size: file.size, sha256: file.sha256, downloaded });
  }

  await writeManifest(dir, {
    version: 1,
    repo,
    commit,
    updatedAt: new Date().toISOString(),
    files: listing.filter((f) => f.path.endsWith('.gguf')),
    resolved: {
      ...(manifest?.commit === commit ? manifest.resolved : {}),
      [key]: resolvedOf(selection),
    },
  });
  return result(repo, tag, commit, selection, files);
}

function doneEvent(file: HubFile, downloaded: boolean): FileProgress {
  return {
    file: file.path,
    phase: 'done',
    downloaded: file.size,
    total: file.size,
    transferred: 0,
    bytesPerSecond: 0,
    cached: !downloaded,
  };
}

function resolvedOf(s: Selection): ResolvedTag {
  return { model: s.model.map((f) => f.path), ...(s.mmproj && { mmproj: s.mmproj.path }) };
}

function result(
  repo: string,
  tag: string,
  commit: string,
  selection: Selection,
  files: PulledFile[],
): PullResult {
  const byPath = new Map(files.map((f) => [f.path, f.localPath]));
  const modelParts = selection.model.map((f) => byPath.get(f.path)!);
  const mmproj = selection.mmproj && byPath.get(selection.mmproj.path);
  return {
    repo,
    tag,
    commit,
    model: modelParts[0]!,
    modelParts,
    ...(mmproj && { mmproj }),
    files,
    fromCache: files.every((f) => !f.downloaded),
  };
}

/**
 * Resolves from the cache alone: what this tag resolved to last time when those files are all
 * there, else the same choice as online made among the cached files (as llama.cpp does offline).
 * Cached files were verified before they took their names; here only their sizes are checked.
 */
async function fromCache(
  repo: string,
  tag: string,
  key: string,
  dir: string,
  manifest: RepoManifest | undefined,
  wantMmproj: boolean,
  options: PullModelOptions,
): Promise<PullResult> {
  const notCached = (why: string) =>
    new MmError(
      ErrorCode.MM_NOT_CACHED,
      `${repo}${tag ? `:${tag}` : ''} is not in the cache at ${dir} (${why}); pull it with the network first`,
      { details: { repo, tag, dir } },
    );
  if (!manifest) throw notCached('no manifest');
  const present: HubFile[] = [];
  for (const f of manifest.files) {
    if (await isComplete(cachedPath(dir, f.path), f, true)) present.push(f);
  }
  const byPath = new Map(present.map((f) => [f.path, f]));
  const last = manifest.resolved[key];
  let model: HubFile[];
  if (last && last.model.length > 0 && last.model.every((p) => byPath.has(p))) {
    model = last.model.map((p) => byPath.get(p)!);
  } else {
    try {
      model = selectFiles(repo, present, tag, { mmproj: false }).model;
    } catch (e) {
      if (!MmError.hasCode(e, ErrorCode.MM_HUB_NOT_FOUND)) throw e;
      throw notCached(`no cached model GGUF${tag ? ` for '${tag}'` : ''}`);
    }
  }
  const mmproj = !wantMmproj
    ? undefined
    : ((last?.mmproj !== undefined ? byPath.get(last.mmproj) : undefined) ??
      findMmproj(present, model[0]!.path));
  const selection: Selection = { model, ...(mmproj && { mmproj }) };
  const wanted = [...selection.model, ...(selection.mmproj ? [selection.mmproj] : [])];
  const files = wanted.map((f) => ({
    path: f.path,
    localPath: cachedPath(dir, f.path),
    size: f.size,
    sha256: f.sha256,
    downloaded: false,
  }));
  for (const [index, f] of wanted.entries()) {
    options.onProgress?.({ ...doneEvent(f, false), index, count: wanted.length });
  }
  return result(repo, tag, manifest.commit, selection, files);
}
