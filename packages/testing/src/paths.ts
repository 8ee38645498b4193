import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MmError } from '@mm/errors';

const here = dirname(fileURLToPath(import.meta.url));

/** The monorepo root: the nearest folder above this package that holds turbo.json. */
export function repoRoot(from: string = here): string {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, 'turbo.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new MmError(
        ErrorCode.MM_FILE_NOT_FOUND,
        `no turbo.json above ${from}: cannot find the repository root`,
      );
    }
    dir = parent;
  }
}

/** The shared folder beside the repository (`<root>/../shared`), or `$MM_SHARED_DIR`. */
export function sharedDir(): string {
  const env = process.env['MM_SHARED_DIR'];
  if (env !== undefined && env !== '') return resolve(env);
  return resolve(repoRoot(), '..', 'shared');
}

/** `<shared>/models`. */
export function sharedModelsDir(): string {
  return join(sharedDir(), 'models');
}

export interface TinyShapesPaths {
  dir: string;
  llm: string;
  mmproj: string;
  samples: string;
  referenceTokens: string;
}

/** Paths of the trained tiny-shapes model (see its MODEL.md); they may not exist. */
export function tinyShapesPaths(): TinyShapesPaths {
  const dir = join(sharedModelsDir(), 'tiny-shapes');
  return {
    dir,
    llm: join(dir, 'tiny-shapes-llm.gguf'),
    mmproj: join(dir, 'mmproj-tiny-shapes.gguf'),
    samples: join(dir, 'samples'),
    referenceTokens: join(dir, 'reference_tokens.json'),
  };
}
