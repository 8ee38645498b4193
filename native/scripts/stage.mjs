// Stages the files a prebuilt addon needs at run time (mm.node, llama/ggml shared libraries, every
// dynamically loaded ggml backend) from a build folder into its platform package,
// native/platforms/<platform>-<arch>[-gpu] (git-ignored), and writes that package's package.json. The
// same code serves the release workflow on every platform (see .github/workflows/release.yml).
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Every platform package @mm/native can pick up, as `<platform>-<arch>[-gpu]`. Built by the release
 * workflow (.github/workflows/release.yml); only linux-x64 is built and tested in this repository's CI.
 */
export const PLATFORMS = [
  'linux-x64',
  'linux-x64-cuda',
  'linux-arm64',
  'darwin-arm64',
  'win32-x64',
];

/** The runtime files of a build: the addon, and llama's, libmtmd's and ggml's libraries and backends. */
export const runtimeFile =
  /^(mm\.node|(lib)?(llama|llama-common|mtmd|ggml|ggml-[a-z0-9_.-]+)\.(so|dylib|dll))$/;

/** `linux-x64`, `linux-x64-cuda`, ...: the folder under native/platforms and the package's suffix. */
export function platformId(platform = process.platform, arch = process.arch, gpu = '') {
  return `${platform}-${arch}${gpu ? `-${gpu}` : ''}`;
}

export function stagePrebuilt({
  binDir,
  gpu = '',
  platform = process.platform,
  arch = process.arch,
  log = () => {},
}) {
  const dir = join(nativeDir, 'platforms', platformId(platform, arch, gpu));
  const native = JSON.parse(readFileSync(join(nativeDir, 'package.json'), 'utf8'));
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true });
  const files = readdirSync(binDir)
    .filter((f) => runtimeFile.test(f))
    .sort();
  let bytes = 0;
  const strip = platform === 'linux' && hasStrip();
  for (const f of files) {
    copyFileSync(join(binDir, f), join(dir, f));
    if (strip) execFileSync('strip', ['--strip-unneeded', join(dir, f)]);
    bytes += statSync(join(dir, f)).size;
  }
  const variants = files
    .map((f) => /^(lib)?ggml-cpu-?(.*)\.(so|dll)$/.exec(f))
    .filter((m) => m !== null)
    .map((m) => m[2] || 'cpu');
  const pkg = platformPackageJson({ platform, arch, gpu, native });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const lock = JSON.parse(readFileSync(join(nativeDir, 'vendor.lock.json'), 'utf8'));
  writeFileSync(
    join(dir, 'build.json'),
    `${JSON.stringify({ platform, arch, gpu: gpu || null, cpuVariants: variants, llamaCommit: lock.commit, napi: 8, builtWith: process.version }, null, 2)}\n`,
  );
  log(`${pkg.name}: ${files.join(' ')}`);
  return { dir, files, bytes, name: pkg.name };
}

/** The package.json of a platform package; its version is always @mm/native's (lockstep). */
export function platformPackageJson({ platform, arch, gpu = '', native }) {
  const id = platformId(platform, arch, gpu);
  return {
    name: `@mm/native-${id}`,
    version: native.version,
    description: `The mm native addon prebuilt for ${id}${gpu ? ` with ${gpu}` : ''}: mm.node, llama.cpp/ggml, and every ggml CPU variant, chosen at run time`,
    license: native.license,
    os: [platform],
    cpu: [arch],
    engines: native.engines,
    files: ['build.json', 'mm.node', '*.so', '*.dylib', '*.dll'],
  };
}

function hasStrip() {
  try {
    execFileSync('strip', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
