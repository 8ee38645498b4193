#!/usr/bin/env node
// Issue 13's recipe, timed: the tiny-shapes projector thrown away (re-initialised at random), the
// encoder and the LLM frozen, PT on descriptions then IT on questions (TINY_SHAPES_RECIPE), on
// ggml with 2 threads; then llama-mtmd-cli scores the written mmproj — after PT alone and after
// PT + IT — on MODEL.md's 800 test cases. Prints the loss curve, the time and the accuracies.
//
//   npm run bench:train -w @mm/projectors -- [--threads 2] [--data DIR] [--json]
//
// The data (3000 generated 48x48 PNGs) is written once into DIR (default: the OS temp folder).
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  formatScore,
  runRecipe,
  scoreWithMtmdCli,
  TINY_SHAPES_RECIPE,
} from '../dist/train-recipe.test-util.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    data: { type: 'string', default: join(tmpdir(), 'mm-train-recipe') },
    json: { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
mkdirSync(values.data, { recursive: true });
const out = join(values.data, 'trained.gguf');
console.log(`recipe: ${JSON.stringify(TINY_SHAPES_RECIPE)}, threads ${threads}`);
let lastPhase = '';
const { result, seconds } = await runRecipe({
  dir: values.data,
  out,
  threads,
  onProgress: (p) => {
    if (p.phase !== lastPhase) console.error(`[${(p.elapsedMs / 1000).toFixed(1)} s] ${p.phase}`);
    lastPhase = p.phase;
  },
});
console.log(
  `trainProjector: ${seconds.toFixed(1)} s wall (encode ${result.encodeSeconds.toFixed(1)} s of ${result.pictures} pictures, train ${result.trainSeconds.toFixed(1)} s)`,
);
for (const s of result.stages) {
  console.log(
    `\n${s.kind}: ${s.steps} steps x ${TINY_SHAPES_RECIPE.batchSize}, ${s.samplesPerSec.toFixed(0)} samples/s, ${s.seconds.toFixed(1)} s`,
  );
  console.log('| step | loss | answer-token accuracy |');
  console.log('|---|---|---|');
  for (const c of s.curve.filter((c, i) => i === 0 || c.step % 10 === 0)) {
    console.log(`| ${c.step} | ${c.loss.toFixed(4)} | ${(100 * c.tokenAccuracy).toFixed(1)}% |`);
  }
}
const afterPt = await scoreWithMtmdCli(result.stages[0].out, 2);
console.log(`\nllama-mtmd-cli after PT alone: ${formatScore(afterPt)}`);
const final = await scoreWithMtmdCli(out, 2);
console.log(`llama-mtmd-cli after PT + IT:  ${formatScore(final)}`);
if (final.wrong.length) console.log(`wrong: ${final.wrong.slice(0, 10).join('; ')}`);
if (values.json) {
  console.log(
    JSON.stringify({ recipe: TINY_SHAPES_RECIPE, threads, seconds, result, afterPt, final }),
  );
}
