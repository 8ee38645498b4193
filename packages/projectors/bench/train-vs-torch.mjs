#!/usr/bin/env node
// Training speed side by side: samples/s of mm's projector training (ggml, ProjectorTrainer) and of
// the same recipe in PyTorch (bench/train_torch.py: Debian's python3-torch, 2 threads), on the same
// prepared data (TINY_SHAPES_RECIPE's PT stage: the same laid-out sequences, cached encoder
// features and initial weights), alternating runs. Prints the medians, the ratio and its spread.
//
//   npm run bench:train-torch -w @mm/projectors -- [--threads 2] [--steps 40] [--reps 3]
//                                                  [--python /usr/bin/python3] [--matmul onednn,blas]
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { tinyShapesPaths } from '@mm/testing';
import { batchAt, ProjectorTrainer, trainProjector } from '../dist/index.js';
import { recipeData, TINY_SHAPES_RECIPE } from '../dist/train-recipe.test-util.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '40' },
    reps: { type: 'string', default: '3' },
    python: { type: 'string', default: '/usr/bin/python3' },
    matmul: { type: 'string', default: 'onednn,blas' },
    data: { type: 'string', default: join(tmpdir(), 'mm-train-recipe') },
  },
});
const threads = Number(values.threads);
const steps = Number(values.steps);
const reps = Number(values.reps);
mkdirSync(values.data, { recursive: true });
const tiny = tinyShapesPaths();
const data = await recipeData(values.data);
const prepared = join(values.data, 'prepared');
// lay out + encode once, exactly as trainProjector does, and write the prepared run
await trainProjector({
  model: tiny.llm,
  mmproj: tiny.mmproj,
  out: join(values.data, 'prepare-only.gguf'),
  stages: [{ kind: 'pt', data: data.pt, steps: 1 }],
  batchSize: TINY_SHAPES_RECIPE.batchSize,
  seed: TINY_SHAPES_RECIPE.seed,
  threads,
  exportPrepared: prepared,
});
const recipe = JSON.parse(await readFile(join(prepared, 'prepared.json'), 'utf8'));
const features = new Float32Array((await readFile(join(prepared, 'features.f32'))).buffer.slice(0));
const init = new Float32Array((await readFile(join(prepared, 'init.f32'))).buffer.slice(0));
const stage = recipe.stages[0];
const samples = stage.samples.map((s) => ({
  image: s.image,
  imagePos: s.imagePos,
  tokens: Int32Array.from(s.tokens),
  targets: Int32Array.from(s.targets),
}));

async function ours() {
  const t = await ProjectorTrainer.create({
    model: recipe.model,
    projector: recipe.projector,
    nEmbdV: recipe.nEmbdV,
    nHidden: recipe.nHidden,
    threads,
  });
  t.setData(features, recipe.nImages, recipe.nPatches, samples);
  let at = 0;
  for (const p of t.params) {
    const n = p.ne.reduce((a, b) => a * b, 1);
    t.setParam(p.name, init.slice(at, at + n));
    at += n;
  }
  const t0 = performance.now();
  let n = 0;
  let loss = 0;
  for (let s = 0; s < steps; s++) {
    const batch = batchAt(recipe.seed, 0, samples.length, recipe.batchSize, s);
    const r = await t.step(batch, { lr: stage.lr, weightDecay: recipe.weightDecay });
    n += batch.length;
    loss = r.loss;
  }
  const seconds = (performance.now() - t0) / 1000;
  t.dispose();
  return { samplesPerSec: n / seconds, loss };
}

async function torch(matmul) {
  const { stdout } = await run(
    values.python,
    [
      join(import.meta.dirname, 'train_torch.py'),
      prepared,
      '--threads',
      String(threads),
      '--steps',
      String(steps),
      '--matmul',
      matmul,
    ],
    { maxBuffer: 16 << 20 },
  );
  const last = JSON.parse(stdout.trim().split('\n').pop());
  return { samplesPerSec: last.samplesPerSec };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const modes = values.matmul.split(',');
const mm = [];
const py = Object.fromEntries(modes.map((m) => [m, []]));
for (let r = 0; r < reps; r++) {
  for (const m of modes) {
    mm.push((await ours()).samplesPerSec);
    py[m].push((await torch(m)).samplesPerSec);
    console.error(
      `rep ${r + 1}: mm ${mm.at(-1).toFixed(1)} samples/s, torch (${m}) ${py[m].at(-1).toFixed(1)} samples/s`,
    );
  }
}
console.log(
  `projector training, tiny-shapes PT (batch ${recipe.batchSize}, ${steps} steps, ${threads} threads, ${reps} alternating runs per side):`,
);
console.log('| side | samples/s median (min–max) | ratio mm / side (median of pairs, min–max) |');
console.log('|---|---|---|');
const fmt = (xs) =>
  `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
console.log(`| mm (ggml) | ${fmt(mm)} | |`);
for (const m of modes) {
  const pairs = py[m].map((x, i) => mm[i * modes.length + modes.indexOf(m)] / x);
  console.log(
    `| PyTorch ${m} | ${fmt(py[m])} | ${median(pairs).toFixed(2)}× (${Math.min(...pairs).toFixed(2)}–${Math.max(...pairs).toFixed(2)}) |`,
  );
}
