import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MmError } from '@mm/errors';
import type { NativeAddon } from './addon-types.js';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/** Where an addon candidate comes from, in the order they are tried. */
export type AddonSource = 'env' | 'prebuilt' | 'local-build';

export interface AddonCandidate {
  source: AddonSource;
  /** The npm package, for prebuilt candidates (e.g. `@mm/native-linux-x64`). */
  package?: string;
  /** Where mm.node is (or would be). */
  path: string;
  /** False when the candidate is not installed / not built. */
  present: boolean;
}

/** The prebuilt packages that fit this machine, best first: a GPU build, then the CPU one. */
export function prebuiltPackageNames(
  platform: string = process.platform,
  arch: string = process.arch,
): string[] {
  const base = `@mm/native-${platform}-${arch}`;
  return platform === 'linux' || platform === 'win32' ? [`${base}-cuda`, base] : [base];
}

function resolvePackageDir(name: string): string | undefined {
  try {
    return dirname(require.resolve(`${name}/package.json`));
  } catch {
    return undefined;
  }
}

/**
 * Where mm.node is looked for, in order: `MM_NATIVE_PATH`, the prebuilt platform packages
 * (`@mm/native-<platform>-<arch>[-cuda]`, installed as optional dependencies), then a local build
 * of this package in `build/bin` (`npx @mm/native build` in a project; `npm run build` in the mm
 * repository, which builds the same files the prebuilt package ships).
 */
export function addonCandidates(): AddonCandidate[] {
  const out: AddonCandidate[] = [];
  const fromEnv = process.env.MM_NATIVE_PATH;
  if (fromEnv) out.push({ source: 'env', path: fromEnv, present: existsSync(fromEnv) });
  for (const name of prebuiltPackageNames()) {
    const dir = resolvePackageDir(name);
    const path = dir ? join(dir, 'mm.node') : `${name}/mm.node`;
    out.push({
      source: 'prebuilt',
      package: name,
      path,
      present: dir !== undefined && existsSync(path),
    });
  }
  const local = join(packageDir, 'build', 'bin', 'mm.node');
  out.push({ source: 'local-build', path: local, present: existsSync(local) });
  return out;
}

/** The CPU features that matter to ggml's variants, as the OS reports them (Linux), else []. */
export function machineCpuFeatures(): string[] {
  if (process.platform !== 'linux') return [];
  try {
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    const wanted =
      /^(sse4_2|avx|avx2|fma|f16c|bmi2|avx_vnni|avx512f|avx512bw|avx512vbmi|avx512_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16|asimd|sve|sve2)$/;
    return flags
      .trim()
      .split(/\s+/)
      .filter((f) => wanted.test(f));
  } catch {
    return [];
  }
}

/** The command that builds the addon from source in the user's project. */
export const sourceBuildCommand = 'npx @mm/native build';

let cached: NativeAddon | undefined;
let loadedFrom: AddonCandidate | undefined;

/** Which candidate the loaded addon came from (undefined before the first load). */
export function addonLoadedFrom(): AddonCandidate | undefined {
  return loadedFrom;
}

/**
 * Loads mm.node once: the first present candidate of `addonCandidates()`. Fails with
 * MM_NATIVE_LOAD and a diagnosis: what was looked for, why loading failed, the machine, and the
 * one command that builds from source.
 */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const candidates = addonCandidates();
  const found = candidates.find((c) => c.present);
  const features = machineCpuFeatures();
  const facts = `platform ${process.platform}-${process.arch}, Node ${process.version}, N-API ${process.versions.napi}${features.length ? `, CPU ${features.join(' ')}` : ''}`;
  if (!found) {
    throw new MmError(
      ErrorCode.MM_NATIVE_LOAD,
      [
        'The mm native addon (mm.node) was not found. Looked for:',
        ...candidates.map(
          (c) => `  - ${c.package ? `the prebuilt package ${c.package} (not installed)` : c.path}`,
        ),
        `(${facts})`,
        `No prebuilt package fits this machine, or optional dependencies were not installed. Build it from`,
        `source in your project with \`${sourceBuildCommand}\` (needs CMake >= 3.19 and a C++17 compiler;`,
        'MM_GPU=cuda adds CUDA), or point MM_NATIVE_PATH at an existing mm.node.',
      ].join('\n'),
      { details: { candidates, cpuFeatures: features } },
    );
  }
  try {
    cached = require(found.path) as NativeAddon;
    loadedFrom = found;
    return cached;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new MmError(
      ErrorCode.MM_NATIVE_LOAD,
      [
        `The mm native addon at ${found.path} could not be loaded: ${reason}`,
        `(${facts})`,
        'It was probably built for another platform or Node ABI, or a shared library it needs is',
        `missing beside it. Reinstall the package, or build from source with \`${sourceBuildCommand}\`.`,
      ].join('\n'),
      { cause, details: { path: found.path, source: found.source } },
    );
  }
}
