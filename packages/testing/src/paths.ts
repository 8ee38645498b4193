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

/**
 * The trained tiny-shapes model bundled in the repository (`apps/demo/models/tiny-shapes`, see its
 * MODEL.md): the two GGUF files, llama.cpp's reference tokens, the 8 demo samples and the
 * 200-image test set, each folder with its `answers.json`. Tests, the demo and the server all
 * read this one copy, so a fresh clone needs nothing beside it.
 */
export function tinyShapesDir(): string {
  return join(repoRoot(), 'apps', 'demo', 'models', 'tiny-shapes');
}

export interface TinyShapesPaths {
  dir: string;
  llm: string;
  mmproj: string;
  /** 8 PNGs + answers.json */
  samples: string;
  /** 200 PNGs never trained on + answers.json */
  testset: string;
  referenceTokens: string;
}

/** Paths of the files of the bundled tiny-shapes model. */
export function tinyShapesPaths(): TinyShapesPaths {
  const dir = tinyShapesDir();
  return {
    dir,
    llm: join(dir, 'tiny-shapes-llm.gguf'),
    mmproj: join(dir, 'mmproj-tiny-shapes.gguf'),
    samples: join(dir, 'samples'),
    testset: join(dir, 'testset'),
    referenceTokens: join(dir, 'reference_tokens.json'),
  };
}
