import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import type { HubFile } from './select.js';

/**
 * mm's cache folder: `MM_CACHE_DIR`, else `$XDG_CACHE_HOME/mm`, else `~/.cache/mm`. Hub
 * downloads go under its `hub/` folder (the vendored llama.cpp tarball shares the root).
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MM_CACHE_DIR) return resolve(env.MM_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return join(resolve(env.XDG_CACHE_HOME), 'mm');
  return join(homedir(), '.cache', 'mm');
}

/** `<cacheDir>/hub/<user>/<repo>`; `repo` must have passed `isValidRepoId`. */
export function repoDir(cacheDir: string, repo: string): string {
  return join(cacheDir, 'hub', ...repo.split('/'));
}

/** True for a repository path that stays inside the repository's folder once joined to it. */
export function isSafeRepoPath(path: string): boolean {
  if (path === '' || path.includes('\\') || path.includes('\0') || isAbsolute(path)) return false;
  return path.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/** Where a repository file lives in the cache. Throws for a path that would leave the folder. */
export function cachedPath(dir: string, path: string): string {
  const full = join(dir, ...path.split('/'));
  const rel = relative(dir, full);
  if (!isSafeRepoPath(path) || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new MmError(ErrorCode.MM_DOWNLOAD, `unsafe file path in the hub listing: '${path}'`, {
      details: { path },
    });
  }
  return full;
}

/** What `resolved` keeps for one tag: the repository paths that tag resolved to. */
export interface ResolvedTag {
  model: string[];
  mmproj?: string;
}

/**
 * `<repoDir>/mm-manifest.json`: the last listing of the repository's GGUF files (with sizes and
 * hashes) and what each tag resolved to, so that offline runs can resolve `<repo>[:quant]`.
 */
export interface RepoManifest {
  version: 1;
  repo: string;
  /** The commit the listing was taken at. */
  commit: string;
  updatedAt: string;
  files: HubFile[];
  /** Keyed by the tag in upper case; '' is the default (no quant given). */
  resolved: Record<string, ResolvedTag>;
}

export const manifestName = 'mm-manifest.json';

function isHubFile(v: unknown): v is HubFile {
  const f = v as HubFile;
  return (
    typeof f === 'object' &&
    f !== null &&
    typeof f.path === 'string' &&
    isSafeRepoPath(f.path) &&
    Number.isSafeInteger(f.size) &&
    f.size >= 0 &&
    (f.sha256 === undefined || /^[0-9a-f]{64}$/.test(f.sha256)) &&
    (f.gitOid === undefined || /^[0-9a-f]{40}$/.test(f.gitOid))
  );
}

/** The manifest of a cached repository, or undefined when there is none or it is unreadable. */
export async function readManifest(dir: string, repo: string): Promise<RepoManifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, manifestName), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const m = JSON.parse(text) as RepoManifest;
    if (
      m?.version !== 1 ||
      m.repo !== repo ||
      typeof m.commit !== 'string' ||
      !Array.isArray(m.files) ||
      !m.files.every(isHubFile) ||
      typeof m.resolved !== 'object' ||
      m.resolved === null
    ) {
      return undefined;
    }
    return m;
  } catch {
    return undefined;
  }
}

/** Writes the manifest through a temporary file and a rename, so readers never see half of it. */
export async function writeManifest(dir: string, manifest: RepoManifest): Promise<void> {
  const file = join(dir, manifestName);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(tmp, file);
  } catch (cause) {
    await rm(tmp, { force: true });
    throw new MmError(ErrorCode.MM_IO, `cannot write ${file}: ${(cause as Error).message}`, {
      cause,
      details: { file },
    });
  }
}
