import { ErrorCode, MmError } from '@mm/errors';

/** One file of a hub repository, as its listing records it. */
export interface HubFile {
  /** Path inside the repository, `/`-separated. */
  path: string;
  size: number;
  /** The LFS sha256 (hex); every GGUF on the hub is stored through LFS. */
  sha256?: string;
  /** The git blob id (sha1 hex) of a file kept in git itself rather than LFS. */
  gitOid?: string;
}

/** What `selectFiles` picked: the model (all parts of a split GGUF, in order) and its mmproj. */
export interface Selection {
  model: HubFile[];
  mmproj?: HubFile;
}

interface SplitInfo {
  /** The path without `.gguf` and without the `-00001-of-00003` suffix. */
  prefix: string;
  /** The quant tag at the end of the name, upper case (`Q4_K_M`, `F16`), or ''. */
  tag: string;
  index: number;
  count: number;
}

const splitSuffix = /^(.+)-(\d{5})-of-(\d{5})$/i;
const tagSuffix = /[-.]([A-Z0-9_]+)$/i;

/** Splits a GGUF path into prefix, quant tag and split index/count (llama.cpp's naming). */
export function ggufSplitInfo(path: string): SplitInfo | undefined {
  if (!path.endsWith('.gguf')) return undefined;
  let prefix = path.slice(0, -'.gguf'.length);
  let index = 1;
  let count = 1;
  const split = splitSuffix.exec(prefix);
  if (split) {
    prefix = split[1]!;
    index = Number(split[2]);
    count = Number(split[3]);
  }
  const tag = tagSuffix.exec(prefix)?.[1]?.toUpperCase() ?? '';
  return { prefix, tag, index, count };
}

/** Bits of a quant tag: the number its first digits spell (Q4_K_M → 4, F16 → 16), else 0. */
export function tagBits(tag: string): number {
  const m = /\d+/.exec(tag);
  return m ? Number(m[0]) : 0;
}

const sidecars = ['mmproj', 'imatrix', 'mtp-', 'eagle3-', 'dflash-', 'dspark-'];

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** A GGUF that is a text model: not an mmproj, an imatrix or a speculative-decoding sidecar. */
export function isModelFile(path: string): boolean {
  if (!path.endsWith('.gguf')) return false;
  const name = baseName(path);
  return !sidecars.some((s) => name.includes(s));
}

function isFirstPart(path: string): boolean {
  const s = ggufSplitInfo(path);
  return s !== undefined && (s.count <= 1 || s.index === 1);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The model file for `tag`, chosen as llama.cpp's `-hf` chooses: the first model GGUF whose path
 * has the tag followed by `.` or `-` (case-insensitive); with no tag Q4_K_M, then Q8_0, then the
 * first model GGUF of any kind. Only the first part of a split model counts.
 */
export function findModel(files: readonly HubFile[], tag: string): HubFile | undefined {
  const tags = tag === '' ? ['Q4_K_M', 'Q8_0'] : [tag];
  for (const t of tags) {
    const pattern = new RegExp(`${escapeRegExp(t)}[.-]`, 'i');
    const hit = files.find(
      (f) => isModelFile(f.path) && pattern.test(f.path) && isFirstPart(f.path),
    );
    if (hit) return hit;
  }
  if (tag !== '') return undefined;
  return files.find((f) => isModelFile(f.path) && isFirstPart(f.path));
}

function dirParts(path: string): string[] {
  return path.split('/').slice(0, -1);
}

/**
 * The mmproj for `model`, chosen as llama.cpp chooses: a GGUF with "mmproj" in its path, in the
 * model's folder or a folder above it; the deepest such folder wins, then the quant whose bits are
 * closest to the model's (an F16 mmproj for an F16 model, Q8_0 next to Q8_0), then the first listed.
 */
export function findMmproj(files: readonly HubFile[], model: string): HubFile | undefined {
  const modelDirs = dirParts(model);
  const modelBits = tagBits(ggufSplitInfo(model)?.tag ?? '');
  let best: HubFile | undefined;
  let bestDepth = 0;
  let bestDiff = 0;
  for (const f of files) {
    if (!f.path.endsWith('.gguf') || !f.path.includes('mmproj')) continue;
    const dirs = dirParts(f.path);
    if (dirs.length > modelDirs.length || dirs.some((d, i) => d !== modelDirs[i])) continue;
    const depth = dirs.length;
    const diff = Math.abs(tagBits(ggufSplitInfo(f.path)?.tag ?? '') - modelBits);
    if (!best || depth > bestDepth || (depth === bestDepth && diff < bestDiff)) {
      best = f;
      bestDepth = depth;
      bestDiff = diff;
    }
  }
  return best;
}

/** All parts of a split model (`-00001-of-00003.gguf` ...) in order; the file alone otherwise. */
export function splitParts(files: readonly HubFile[], first: HubFile): HubFile[] {
  const info = ggufSplitInfo(first.path);
  if (!info || info.count <= 1) return [first];
  const parts = files
    .map((f) => ({ f, s: ggufSplitInfo(f.path) }))
    .filter(({ s }) => s?.count === info.count && s.prefix === info.prefix)
    .sort((a, b) => a.s!.index - b.s!.index)
    .map(({ f }) => f);
  return parts;
}

/**
 * Picks the model (and, when `mmproj` is set, its mmproj) for `repo:tag` from a listing. Throws
 * MM_HUB_NOT_FOUND naming the repository, the tag and the GGUF files it has when nothing fits, or
 * when a split model misses parts.
 */
export function selectFiles(
  repo: string,
  files: readonly HubFile[],
  tag: string,
  options: { mmproj: boolean },
): Selection {
  const first = findModel(files, tag);
  const ggufs = files.filter((f) => f.path.endsWith('.gguf')).map((f) => f.path);
  if (!first) {
    const what = tag === '' ? 'no model GGUF' : `no model GGUF for quant '${tag}'`;
    throw new MmError(
      ErrorCode.MM_HUB_NOT_FOUND,
      `${repo}: ${what}; its GGUF files: ${ggufs.length ? ggufs.join(', ') : '(none)'}`,
      { details: { repo, tag, files: ggufs } },
    );
  }
  const model = splitParts(files, first);
  const count = ggufSplitInfo(first.path)?.count ?? 1;
  if (model.length !== count) {
    throw new MmError(
      ErrorCode.MM_HUB_NOT_FOUND,
      `${repo}: ${first.path} is split in ${count} parts but ${model.length} are listed`,
      { details: { repo, tag, file: first.path, files: ggufs } },
    );
  }
  const mmproj = options.mmproj ? findMmproj(files, first.path) : undefined;
  return { model, ...(mmproj && { mmproj }) };
}
