#!/usr/bin/env node
// Builds mm.node (and, with --oracle, the test-only reference tools) with cmake-js.
//   MM_GPU=cuda      add the CUDA backend (Metal is on by default on macOS)
//   MM_BUILD_JOBS=N  parallel compile jobs (default: all cores)
// Only what changed is rebuilt (CMake + Ninja, ccache when installed). Ninja prints [n/total]
// progress lines while compiling.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vendor } from './vendor.mjs';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = join(nativeDir, 'build');
export const oracleTargets = [
  'mm-ref-generate',
  'llama-mtmd-cli',
  'mm-ref-mtmd-embed',
  'mm-bench-vision',
  'mm-peak-rss',
];

function log(msg) {
  process.stderr.write(`[mm build] ${msg}\n`);
}

function has(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: nativeDir, stdio: 'inherit' });
  if (r.status !== 0) {
    log(`FAILED: ${cmd} ${args.join(' ')}`);
    process.exit(r.status ?? 1);
  }
}

// One build at a time per build folder: concurrent ninja runs in one folder corrupt it.
function lock() {
  const dir = join(buildDir, '.mm-build-lock');
  mkdirSync(buildDir, { recursive: true });
  for (let waited = 0; ; waited++) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      const release = () => rmSync(dir, { recursive: true, force: true });
      process.on('exit', release);
      for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
      return;
    } catch {
      let holder = 0;
      try {
        holder = Number(readFileSync(join(dir, 'pid'), 'utf8'));
        process.kill(holder, 0);
      } catch {
        if (holder || waited > 5) rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (waited % 30 === 0) log(`waiting for another build (pid ${holder}) to finish...`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
    }
  }
}

// ccache keys on paths; relative to the repo they match across clones (CI builds a fresh one).
process.env.CCACHE_BASEDIR ??= join(nativeDir, '..');
process.env.CCACHE_NOHASHDIR ??= 'true';

const started = Date.now();
lock();
vendor();
const jobs = Number(process.env.MM_BUILD_JOBS) || availableParallelism();
const gpu = process.env.MM_GPU ?? '';
if (!has('cmake')) {
  log(
    'cmake was not found on PATH: install CMake >= 3.19 (apt-get install cmake / brew install cmake)',
  );
  process.exit(1);
}
log(
  `building mm.node: ${jobs} jobs, backend ${gpu || 'cpu'}${has('ccache') ? ', ccache' : ''}${has('ninja') ? ', ninja' : ''}`,
);
const cmakeJs = join(
  dirname(fileURLToPath(import.meta.resolve('cmake-js/package.json'))),
  'bin',
  'cmake-js',
);
const args = [
  cmakeJs,
  'build',
  '--out',
  buildDir,
  '--target',
  'mm',
  '--parallel',
  String(jobs),
  `--CDMM_GPU=${gpu}`,
];
if (process.env.MM_PORTABLE) args.push('--CDMM_PORTABLE=ON');
if (has('ninja')) args.push('--generator', 'Ninja');
// cmake-js only configures when there is no CMakeCache.txt; a configure that failed half-way
// leaves one behind without build files, so configure explicitly in that case.
const generated = ['build.ninja', 'Makefile'].some((f) => existsSync(join(buildDir, f)));
if (!generated)
  run(process.execPath, [
    args[0],
    'configure',
    ...args.slice(2).filter((a, i, all) => a !== '--target' && all[i - 1] !== '--target'),
  ]);
run(process.execPath, args);

if (process.argv.includes('--oracle')) {
  log(`building test-only reference tools: ${oracleTargets.join(', ')}`);
  run('cmake', ['--build', buildDir, '--parallel', String(jobs), '--target', ...oracleTargets]);
}
const addon = [join(buildDir, 'Release', 'mm.node'), join(buildDir, 'mm.node')].find(existsSync);
if (!addon) {
  log('the build finished but mm.node was not found under build/');
  process.exit(1);
}
log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${addon}`);
