import { MmInvalidArgumentError } from '@mm/errors';

/** `<user>/<repo>[:quant]` split into its parts; `tag` is '' when no quant was given. */
export interface RepoRef {
  repo: string;
  tag: string;
}

const base = /[A-Za-z0-9_]/;
const special = /[/.-]/;

/**
 * llama.cpp's rule for repository ids: letters, digits and `_`, with `/`, `.` and `-` only
 * between two of those, exactly one `/`, at most 256 characters. It also keeps `..`, absolute
 * paths and empty parts out of the cache directory.
 */
export function isValidRepoId(id: string): boolean {
  if (id.length === 0 || id.length > 256) return false;
  let slashes = 0;
  let afterSpecial = true;
  for (const c of id) {
    if (base.test(c)) {
      afterSpecial = false;
    } else if (special.test(c)) {
      if (afterSpecial) return false;
      if (c === '/') slashes++;
      afterSpecial = true;
    } else {
      return false;
    }
  }
  return !afterSpecial && slashes === 1;
}

const tagPattern = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Parses `<user>/<repo>[:quant]` as llama.cpp's `-hf` does. `quant`, when given, replaces the
 * tag in `ref`. Tags are matched case-insensitively later; they are kept as written here.
 */
export function parseRepoRef(ref: string, quant?: string): RepoRef {
  if (typeof ref !== 'string') throw new MmInvalidArgumentError('repo', 'must be a string');
  const colon = ref.indexOf(':');
  const repo = colon < 0 ? ref : ref.slice(0, colon);
  const inline = colon < 0 ? undefined : ref.slice(colon + 1);
  if (!isValidRepoId(repo)) {
    throw new MmInvalidArgumentError(
      'repo',
      `'${ref}' is not <user>/<repo>[:quant] (letters, digits, '_', '-', '.', one '/')`,
    );
  }
  const tag = quant ?? inline ?? '';
  if (tag !== '' && !tagPattern.test(tag)) {
    throw new MmInvalidArgumentError('quant', `'${tag}' is not a quant tag such as Q4_K_M or F16`);
  }
  if (quant === undefined && inline !== undefined && inline === '') {
    throw new MmInvalidArgumentError('repo', `'${ref}' has an empty quant after ':'`);
  }
  return { repo, tag };
}
