#!/usr/bin/env node
// Builds mm.node (and, with --oracle, the test-only reference tools) with cmake-js.
//   --prebuilt       every CPU variant (portable; MM_CPU=all), then stage the runtime files into the
//                    platform package native/platforms/<platform>-<arch>[-gpu] (what gets published)
//   MM_CPU=native|all  CPU backend: this machine's (default for a source build) or every variant
//   MM_GPU=cuda      add the CUDA backend (Metal is on by default on macOS); MM_CUDA_ARCHS=list
//                    sets CMAKE_CUDA_ARCHITECTURES (default: this machine's GPU)
//   MM_BUILD_DIR=D   build folder (default native/build)
//   MM_BUILD_JOBS=N  parallel compile jobs (default: all cores)
// Only what changed is rebuilt (CMake + Ninja, ccache when installed). Ninja prints [n/total]
// progress lines while compiling.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stagePrebuilt } from './stage.mjs';
import { vendor } from './vendor.mjs';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = process.env.MM_BUILD_DIR
  ? resolve(process.env.MM_BUILD_DIR)
  : join(nativeDir, 'build');
const prebuilt = process.argv.includes('--prebuilt');
export const oracleTargets = [
  'mm-ref-generate',
  'llama-mtmd-cli',
  'llama-tts',
  'llama-server',
  'llama-batched-bench',
  'mm-ref-mtmd-embed',
  'mm-ref-mtmd-gen',
  'mm-ref-stb-decode',
  'mm-ref-mtmd-mel',
  'mm-ref-mtmd-audio-decode',
  'mm-bench-vision',
  'mm-bench-audio',
  'mm-bench-gen',
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

// Runs a compile, turning ninja's "[n/total] ..." lines into a progress bar on stderr (redrawn in
// place on a terminal, a line per 10% elsewhere); other output passes through, and the last lines
// are repeated if the build fails.
async function runWithProgress(cmd, args, what) {
  const tty = process.stderr.isTTY === true;
  const child = spawn(cmd, args, { cwd: nativeDir, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = [];
  let lastDecile = -1;
  let partial = '';
  const t0 = Date.now();
  const onLine = (line) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    const m = /^\[(\d+)\/(\d+)\]/.exec(line);
    if (!m) {
      if (/error|FAILED/i.test(line)) process.stderr.write(`${line}\n`);
      return;
    }
    const [done, total] = [Number(m[1]), Number(m[2])];
    const frac = total > 0 ? done / total : 1;
    const width = 30;
    const bar = `${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}`;
    const secs = ((Date.now() - t0) / 1000).toFixed(0);
    const text = `[mm build] ${what} [${bar}] ${done}/${total} ${(frac * 100).toFixed(0)}% ${secs}s`;
    if (tty) process.stderr.write(`\r${text}`);
    else if (Math.floor(frac * 10) > lastDecile || done === total) {
      lastDecile = Math.floor(frac * 10);
      process.stderr.write(`${text}\n`);
    }
  };
  const feed = (chunk) => {
    partial += chunk.toString('utf8');
    const lines = partial.split(/\r?\n/);
    partial = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  const code = await new Promise((res) => child.on('close', res));
  if (partial) onLine(partial);
  if (tty) process.stderr.write('\n');
  if (code !== 0) {
    process.stderr.write(`${tail.join('\n')}\n`);
    log(`FAILED: ${cmd} ${args.join(' ')}`);
    process.exit(code ?? 1);
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
const cpu = prebuilt ? 'all' : (process.env.MM_CPU ?? 'native');
if (cpu !== 'native' && cpu !== 'all') {
  log(`MM_CPU='${cpu}' is not supported: use 'native' (this machine) or 'all' (every variant)`);
  process.exit(2);
}
if (!has('cmake')) {
  log(
    'cmake was not found on PATH: install CMake >= 3.19 (apt-get install cmake / brew install cmake)',
  );
  process.exit(1);
}
log(
  `building mm.node: ${jobs} jobs, backend ${gpu || 'cpu'}, CPU ${cpu === 'all' ? 'every variant' : 'native'}${has('ccache') ? ', ccache' : ''}${has('ninja') ? ', ninja' : ''}`,
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
  `--CDMM_CPU=${cpu}`,
];
// CUDA architectures for a portable GPU build (e.g. '75-virtual;80-virtual;86-real;89-real;90-real');
// default: the GPU of the building machine.
if (process.env.MM_CUDA_ARCHS)
  args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.MM_CUDA_ARCHS}`);
if (has('ninja')) args.push('--generator', 'Ninja');
// cmake-js only configures when there is no CMakeCache.txt; a configure that failed half-way
// leaves one behind without build files, so configure explicitly in that case.
// A change of MM_CPU / MM_GPU needs a new configure too.
const configFile = join(buildDir, '.mm-config.json');
const config = JSON.stringify({ cpu, gpu, cudaArchs: process.env.MM_CUDA_ARCHS ?? '' });
const configured = existsSync(configFile) && readFileSync(configFile, 'utf8') === config;
const generated = ['build.ninja', 'Makefile'].some((f) => existsSync(join(buildDir, f)));
if (!generated || !configured)
  run(process.execPath, [
    args[0],
    'configure',
    ...args.slice(2).filter((a, i, all) => a !== '--target' && all[i - 1] !== '--target'),
  ]);
writeFileSync(configFile, config);
await runWithProgress(process.execPath, args, 'mm.node');

if (process.argv.includes('--oracle')) {
  log(`building test-only reference tools: ${oracleTargets.join(', ')}`);
  await runWithProgress(
    'cmake',
    ['--build', buildDir, '--parallel', String(jobs), '--target', ...oracleTargets],
    'reference tools',
  );
}
const addon = join(buildDir, 'bin', 'mm.node');
if (!existsSync(addon)) {
  log(`the build finished but ${addon} is missing`);
  process.exit(1);
}
if (prebuilt) {
  const staged = stagePrebuilt({ binDir: join(buildDir, 'bin'), gpu, log });
  log(
    `staged ${staged.files.length} files (${(staged.bytes / 2 ** 20).toFixed(1)} MiB) into ${staged.dir}`,
  );
}
log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${addon}`);
