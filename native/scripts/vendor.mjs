#!/usr/bin/env node
// Materialises llama.cpp into native/vendor/llama.cpp from the npm registry, pinned:
//   1. `npm pack <package>@<version>` into a cache folder (skipped when cached),
//   2. check the tarball's sha512 against vendor.lock.json,
//   3. extract llama/gitRelease.bundle, clone it, check out the pinned commit,
//   4. apply native/patches/*.patch, write a stamp.
// Idempotent, and offline once the tarball is cached. Fails loudly when anything differs.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const lock = JSON.parse(readFileSync(join(nativeDir, 'vendor.lock.json'), 'utf8'));
const vendorDir = join(nativeDir, 'vendor', 'llama.cpp');
const stampFile = join(nativeDir, 'vendor', '.stamp.json');
const patchesDir = join(nativeDir, 'patches');

export function cacheDir() {
  const base =
    process.env.MM_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mm');
  return join(base, 'vendor');
}

function log(msg) {
  process.stderr.write(`[mm vendor] ${msg}\n`);
}

function fail(msg) {
  log(`ERROR: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    ...opts,
  }).trim();
}

function patchList() {
  if (!existsSync(patchesDir)) return [];
  return readdirSync(patchesDir)
    .filter((f) => f.endsWith('.patch'))
    .sort()
    .map((f) => ({
      name: f,
      sha256: createHash('sha256')
        .update(readFileSync(join(patchesDir, f)))
        .digest('hex'),
    }));
}

function wantedStamp() {
  return { integrity: lock.integrity, commit: lock.commit, patches: patchList() };
}

function upToDate() {
  if (!existsSync(stampFile) || !existsSync(join(vendorDir, '.git'))) return false;
  try {
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
    if (JSON.stringify(stamp) !== JSON.stringify(wantedStamp())) return false;
    return run('git', ['-C', vendorDir, 'rev-parse', 'HEAD']) === lock.commit;
  } catch {
    return false;
  }
}

function sri(file) {
  const [algo] = lock.integrity.split('-');
  return `${algo}-${createHash(algo).update(readFileSync(file)).digest('base64')}`;
}

function fetchTarball() {
  const dir = cacheDir();
  mkdirSync(dir, { recursive: true });
  const tarball = join(dir, `${lock.package}-${lock.version}.tgz`);
  if (existsSync(tarball) && sri(tarball) === lock.integrity) {
    log(`using cached ${tarball}`);
    return tarball;
  }
  rmSync(tarball, { force: true });
  log(`fetching ${lock.package}@${lock.version} with npm pack (about 35 MB)...`);
  run('npm', ['pack', `${lock.package}@${lock.version}`, '--pack-destination', dir, '--silent'], {
    cwd: dir,
  });
  if (!existsSync(tarball)) fail(`npm pack did not produce ${tarball}`);
  const got = sri(tarball);
  if (got !== lock.integrity) {
    rmSync(tarball, { force: true });
    fail(
      `integrity mismatch for ${lock.package}@${lock.version}:\n  expected ${lock.integrity}\n  got      ${got}`,
    );
  }
  log('integrity ok');
  return tarball;
}

export function vendor() {
  if (upToDate()) {
    log(`llama.cpp ${lock.commit.slice(0, 8)} already in place`);
    return;
  }
  const tarball = fetchTarball();
  const work = join(cacheDir(), `extract-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    log('extracting the git bundle...');
    run('tar', ['-xzf', tarball, '-C', work, lock.bundle]);
    const bundle = join(work, lock.bundle);
    if (!existsSync(bundle)) fail(`${lock.bundle} is missing from the tarball`);
    // `git bundle verify` needs a repository to run in; a user's project may not be one.
    const scratch = join(work, 'verify');
    run('git', ['init', '--quiet', scratch]);
    run('git', ['-C', scratch, 'bundle', 'verify', bundle], { stdio: ['ignore', 'pipe', 'pipe'] });
    rmSync(vendorDir, { recursive: true, force: true });
    rmSync(stampFile, { force: true });
    mkdirSync(dirname(vendorDir), { recursive: true });
    log(`cloning into ${vendorDir}...`);
    run('git', ['clone', '--quiet', '--no-checkout', bundle, vendorDir]);
    run('git', [
      '-C',
      vendorDir,
      '-c',
      'advice.detachedHead=false',
      'checkout',
      '--quiet',
      '--detach',
      lock.commit,
    ]);
    const head = run('git', ['-C', vendorDir, 'rev-parse', 'HEAD']);
    if (head !== lock.commit) fail(`checked out ${head}, expected ${lock.commit}`);
    for (const { name } of patchList()) {
      log(`applying patch ${name}`);
      run('git', ['-C', vendorDir, 'apply', '--whitespace=nowarn', join(patchesDir, name)]);
    }
    writeFileSync(stampFile, `${JSON.stringify(wantedStamp())}\n`);
    log(`llama.cpp ${lock.commit} ready`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    vendor();
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
}
