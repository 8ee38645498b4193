// What the load scripts beside it share: where `mm` and the tiny-shapes files are, their --help
// (the comment block at the top of the script), integer options, starting `mm serve`, and the
// realistic model pair.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_LLAMA_1B, benchLlama, benchMmproj, REALISTIC_CLIP_L14_336 } from '@mm/testing';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The `mm` CLI of this checkout. */
export const mmBin = join(here, '..', '..', '..', 'apps', 'cli', 'bin', 'mm.js');

/** The bundled tiny-shapes model (one copy, in @mm/demo). */
export const tinyDir = join(
  dirname(require.resolve('@mm/demo/package.json')),
  'models',
  'tiny-shapes',
);

/** Prints the `//` comment block at the top of the script at `url` (its --help) and exits 0. */
export function printHelpAndExit(url) {
  const lines = readFileSync(fileURLToPath(url), 'utf8').split('\n').slice(1);
  const head = lines.slice(
    0,
    lines.findIndex((l) => !l.startsWith('//')),
  );
  console.log(head.map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}

/** `values[name]` as an integer >= min, or a message and exit 2. */
export function intOption(values, name, min = 1) {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got '${values[name]}'`);
    process.exit(2);
  }
  return n;
}

/**
 * `node [nodeArgs] mm.js serve <args>` on a free port: resolves { child, url, argv } once it
 * listens (argv: what follows `node`, for printing), rejects if it exits first.
 */
export async function spawnMmServe(args, { nodeArgs = [], stdout = 'ignore' } = {}) {
  const argv = [mmBin, 'serve', ...args, '--port', '0'];
  const child = spawn(process.execPath, [...nodeArgs, ...argv], {
    stdio: ['ignore', stdout, 'pipe'],
  });
  let err = '';
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      err += d.toString('utf8');
      const found = /mm serve: \S+ on (http:\/\/\S+)/.exec(err);
      if (found) resolve(found[1]);
    });
    child.once('exit', (code, sig) =>
      reject(new Error(`mm serve exited (${sig ?? code}) before listening:\n${err}`)),
    );
  });
  return { child, url, argv: argv.slice(1) };
}

/**
 * The realistic pair, written into benchDir() once (minutes the first time): a CLIP ViT-L/14-336
 * mmproj projecting to BENCH_LLAMA_1B's width, and that llama (random F16 weights).
 */
export async function realisticPair(weightType = 'F16') {
  const mmproj = await benchMmproj({
    ...REALISTIC_CLIP_L14_336,
    projectionDim: BENCH_LLAMA_1B.nEmbd,
    hiddenDim: BENCH_LLAMA_1B.nEmbd,
  });
  return { model: await benchLlama({ ...BENCH_LLAMA_1B, weightType }), mmproj };
}

/** --weights of the scripts that run the realistic shape: the llama's 2-D weights, F16 or Q8_0. */
export function weightsOption(values) {
  const w = String(values.weights ?? 'f16').toUpperCase();
  if (w !== 'F16' && w !== 'Q8_0') {
    console.error(`--weights takes f16 or q8_0, got '${values.weights}'`);
    process.exit(2);
  }
  return w;
}

/** The median of the finite values of `xs` (NaN when there are none). */
export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
