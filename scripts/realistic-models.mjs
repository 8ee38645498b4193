#!/usr/bin/env node
// Writes (once, into @mm/testing's benchDir(): ~/.cache/mm/bench or $MM_BENCH_DIR) the realistic
// shape the benchmarks use: a CLIP ViT-L/14-336 mmproj (mlp projector to 2048) and BENCH_LLAMA_1B
// (16 layers, n_embd 2048, ~0.7B parameters, F16), both with random weights, and a 336×336 test
// picture. Prints the flags for `mm bench` / `mm run` / `mm serve`:
//
//   npx mm bench $(node scripts/realistic-models.mjs) -t 2
//
// Needs `npm run build` first (it imports @mm/testing's dist). Takes a minute the first time.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BENCH_LLAMA_1B,
  benchDir,
  benchLlama,
  benchMmproj,
  encodePng,
  REALISTIC_CLIP_L14_336,
  syntheticImage,
} from '@mm/testing';

const mmproj = await benchMmproj({
  ...REALISTIC_CLIP_L14_336,
  projectionDim: BENCH_LLAMA_1B.nEmbd,
  hiddenDim: BENCH_LLAMA_1B.nEmbd,
});
const model = await benchLlama(BENCH_LLAMA_1B);
const image = join(benchDir(), 'realistic-336.png');
writeFileSync(image, encodePng(syntheticImage(336, 336, 1)));
process.stdout.write(`-m ${model} --mmproj ${mmproj} --image ${image}\n`);
