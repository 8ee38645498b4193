import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MmError } from '@mm/errors';
import type { NativeAddon } from './addon-types.js';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where mm.node is looked for, in order. `MM_NATIVE_PATH` overrides everything. */
export function addonCandidates(): string[] {
  const fromEnv = process.env.MM_NATIVE_PATH;
  return [
    ...(fromEnv ? [fromEnv] : []),
    join(packageDir, 'build', 'Release', 'mm.node'),
    join(packageDir, 'build', 'mm.node'),
  ];
}

let cached: NativeAddon | undefined;

/**
 * Loads mm.node once. Fails with MM_NATIVE_LOAD and a diagnosis: what was looked for, why
 * loading failed, the platform, and how to rebuild.
 */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const candidates = addonCandidates();
  const found = candidates.find((p) => existsSync(p));
  const facts = `platform ${process.platform}-${process.arch}, Node ${process.version}, N-API ${process.versions.napi}`;
  if (!found) {
    throw new MmError(
      ErrorCode.MM_NATIVE_LOAD,
      [
        'The mm native addon (mm.node) was not found. Looked for:',
        ...candidates.map((c) => `  - ${c}`),
        `(${facts})`,
        'Build it with `npm run build -w @mm/native` (needs CMake >= 3.19 and a C++17 compiler;',
        'MM_GPU=cuda adds CUDA), or point MM_NATIVE_PATH at an existing mm.node.',
      ].join('\n'),
      { details: { candidates } },
    );
  }
  try {
    const require = createRequire(import.meta.url);
    cached = require(found) as NativeAddon;
    return cached;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new MmError(
      ErrorCode.MM_NATIVE_LOAD,
      [
        `The mm native addon at ${found} could not be loaded: ${reason}`,
        `(${facts})`,
        'It was probably built for another platform or Node ABI, or a shared library it needs is',
        'missing. Rebuild with `npm run build -w @mm/native`.',
      ].join('\n'),
      { cause, details: { path: found } },
    );
  }
}
