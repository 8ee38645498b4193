#!/usr/bin/env node
// The prebuilt addon (every ggml CPU variant, chosen at run time: native/platforms/<platform>) against
// a source build for this machine (-march=native: MM_CPU=native, in native/build-native), at a
// realistic shape: CLIP-L/14-336 encoder + projector and a ~0.7B-parameter llama (16 layers,
// n_embd 2048), random F16 weights made by @mm/testing. Two builds cannot share one process (their
// libraries have the same names), so each measurement is a child process (bench/worker.mjs) and
// the two alternate, A B A B, after one warm-up round; each child warms up once and then measures
// --inner times. Prints medians, spreads (min–max) and prebuilt/native ratios (BENCH.md: > 1 = the
// prebuilt is slower for times).
//
//   node native/bench/prebuilt-vs-native.mjs [--rounds 6] [--inner 2] [--threads 2] [--prompt 128]
//                                            [--gen 32] [--json] [--prebuilt P/mm.node] [--native N/mm.node]
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { BENCH_LLAMA_1B, benchLlama, benchMmproj, encodePng, syntheticImage } from '@mm/testing';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const nativeDir = join(here, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    inner: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '32' },
    json: { type: 'boolean', default: false },
    prebuilt: { type: 'string' },
    native: { type: 'string' },
  },
});
const log = (s) => process.stderr.write(`${s}\n`);

const prebuilt =
  values.prebuilt ?? join(nativeDir, 'platforms', `${process.platform}-${process.arch}`, 'mm.node');
const nativeBuildDir = join(nativeDir, 'build-native');
const nativeAddon = values.native ?? join(nativeBuildDir, 'bin', 'mm.node');
if (!existsSync(prebuilt)) {
  log(`no prebuilt at ${prebuilt}: run \`npm run build -w @mm/native\` first`);
  process.exit(1);
}
if (!existsSync(nativeAddon)) {
  log('[bench] building the -march=native source build into native/build-native (once)...');
  const r = spawnSync(process.execPath, [join(nativeDir, 'scripts', 'build.mjs')], {
    stdio: 'inherit',
    env: { ...process.env, MM_CPU: 'native', MM_BUILD_DIR: nativeBuildDir },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

log('[bench] making the models (once, cached outside the repo)...');
const mmproj = await benchMmproj();
const model = await benchLlama(BENCH_LLAMA_1B);
const image = join(tmpdir(), 'mm-bench-336.png');
writeFileSync(image, encodePng(syntheticImage(336, 336, 7)));

const builds = [
  { name: 'prebuilt', addon: prebuilt },
  { name: 'native', addon: nativeAddon },
];
const args = [
  join(here, 'worker.mjs'),
  '--mmproj',
  mmproj,
  '--model',
  model,
  '--image',
  image,
  '--threads',
  values.threads,
  '--prompt',
  values.prompt,
  '--gen',
  values.gen,
  '--inner',
  values.inner,
];
async function measure(b) {
  const { stdout } = await run(process.execPath, args, {
    env: { ...process.env, MM_NATIVE_PATH: b.addon },
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop());
}

const samples = { prebuilt: [], native: [] };
const facts = {};
const rounds = Number(values.rounds);
for (let round = 0; round <= rounds; round++) {
  for (const b of round % 2 ? [...builds].reverse() : builds) {
    log(`[bench] ${round === 0 ? 'warm-up' : `round ${round}/${rounds}`}: ${b.name}`);
    const r = await measure(b);
    facts[b.name] = { variant: r.variant, build: r.build, addon: r.addon };
    if (round > 0) samples[b.name].push(r);
  }
}

const flat = (name, key) => samples[name].flatMap((r) => r[key]);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const stat = (xs) => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
  n: xs.length,
});
const gen = Number(values.gen);
const prompt = Number(values.prompt);
const rows = [
  { what: 'encode + project (ms)', key: 'encodeMs', rate: null },
  { what: `prefill ${prompt} tok (tok/s)`, key: 'prefillMs', rate: prompt },
  { what: `decode ${gen} tok (tok/s)`, key: 'decodeMs', rate: gen },
].map(({ what, key, rate }) => {
  const conv = (ms) => (rate ? (rate * 1000) / ms : ms);
  const a = stat(flat('prebuilt', key).map(conv));
  const b = stat(flat('native', key).map(conv));
  // Speed ratio: prebuilt's speed / native's speed (>= 1 means the prebuilt is as fast or faster).
  const speed = rate ? a.median / b.median : b.median / a.median;
  // The same, paired within each round (the two children ran back to back), which cancels slow
  // drifts of a shared machine: median and spread of the per-round ratios.
  const paired = samples.prebuilt.map((r, i) => {
    const pa = median(r[key].map(conv));
    const pb = median(samples.native[i][key].map(conv));
    return rate ? pa / pb : pb / pa;
  });
  return { what, prebuilt: a, native: b, speedRatio: speed, pairedRatio: stat(paired) };
});
const result = {
  threads: Number(values.threads),
  rounds,
  inner: Number(values.inner),
  builds: facts,
  rows,
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} else {
  const f = (s) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
  process.stdout.write(
    `prebuilt: ${facts.prebuilt.variant} variant (${facts.prebuilt.build}); native: ${facts.native.variant} (${facts.native.build}); threads ${values.threads}, ${rounds} rounds × ${values.inner}\n\n` +
      '| what | prebuilt median (min–max) | native median (min–max) | speed prebuilt/native (of medians) | per-round ratio, median (min–max) |\n|---|---|---|---|---|\n' +
      rows
        .map(
          (r) =>
            `| ${r.what} | ${f(r.prebuilt)} | ${f(r.native)} | ${r.speedRatio.toFixed(3)} | ${r.pairedRatio.median.toFixed(3)} (${r.pairedRatio.min.toFixed(3)}–${r.pairedRatio.max.toFixed(3)}) |`,
        )
        .join('\n') +
      '\n',
  );
}
