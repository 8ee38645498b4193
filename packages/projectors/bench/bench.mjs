#!/usr/bin/env node
// Side-by-side benchmark of mm's vision path (@mm/encoders + @mm/projectors) against libmtmd's
// encode of the same image (BENCH.md). The ratio comes from native/tools/vision-bench.cpp: ours and
// libmtmd in ONE process, same threads and backend, interleaved A B B A after one warm-up each.
// Then the same encode through the Node API (N-API worker + JS) is timed, with the event loop's
// largest lag while encoding.
//
//   npm run bench -w @mm/projectors -- [--models tiny,clip-l] [--threads 2] [--reps 10] [--json]
//                                     [--image path] [--skip-api]
//
// Models: tiny (the bundled tiny-shapes), clip-l (REALISTIC_CLIP_L14_336, mlp), qwen2.5vl-3b
// (REALISTIC_QWEN25VL_3B on a 448x448 picture: 256 tokens), qwen2vl-2b (QWEN2VL_2B below, same
// picture), gemma3-4b (REALISTIC_GEMMA3_SIGLIP: 896 px, 256 tokens), minicpmv-2.6
// (REALISTIC_MINICPMV26 on an 896x448 picture: overview + 2 slices of 1024 patches, 64 tokens each),
// llava16-7b (REALISTIC_LLAVA16_7B on a 672x336 picture: 2 slices + overview, 576 tokens each),
// smolvlm-500m (REALISTIC_SMOLVLM_SIGLIP on a 2048x512 picture: 4 tiles + global, 64 tokens each),
// the tiny generated fixtures qwen2vl-tiny, qwen2.5vl-tiny, gemma3-tiny, minicpmv-tiny, or a path to
// an mmproj. Random f16 weights, written
// once into the bench cache outside the repo.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { Image, VisionEncoder } from '@mm/encoders';
import { systemInfo } from '@mm/native';
import {
  benchGemma3Pair,
  benchIdefics3Pair,
  benchLlava16Mmproj,
  benchMinicpmvPair,
  benchMmproj,
  benchQwenVlPair,
  oracleTool,
  REALISTIC_CLIP_L14_336,
  REALISTIC_QWEN25VL_3B,
  repoRoot,
  syntheticPngFixture,
  tinyGemma3Pair,
  tinyMinicpmvPair,
  tinyQwenVlPair,
} from '@mm/testing';
import { Projector } from '../dist/index.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'tiny,clip-l' },
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '10' },
    image: { type: 'string' },
    json: { type: 'boolean', default: false },
    // only the side-by-side ratio (mm-bench-vision), not the Node API timing after it
    'skip-api': { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
const reps = Math.max(10, Number(values.reps));
const log = (s) => process.stderr.write(`${s}\n`);
const tinyDir = join(repoRoot(), 'apps', 'demo', 'models', 'tiny-shapes');
const vendoredJpeg = join(
  repoRoot(),
  'native',
  'vendor',
  'llama.cpp',
  'tools',
  'mtmd',
  'test-1.jpeg',
);

// A Qwen2-VL-2B-shaped ViT (width 1280, 16 heads, fc1/fc2 FFN 5120 with quick GELU, LayerNorm,
// full attention in every block, merger to 1536), random f16 weights; 8 of its 32 blocks, as
// REALISTIC_QWEN25VL_3B keeps 8.
const QWEN2VL_2B = {
  ...REALISTIC_QWEN25VL_3B,
  family: 'qwen2vl_merger',
  nFf: 5120,
  nWaPattern: 0,
  projectionDim: 1536,
  name: 'qwen2vl-2b-vit-random',
};

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function model(name) {
  if (name === 'tiny') {
    return {
      mmproj: join(tinyDir, 'mmproj-tiny-shapes.gguf'),
      image: values.image ?? join(tinyDir, 'samples', 'sample_000.png'),
    };
  }
  if (name === 'clip-l') {
    log(
      '[bench] making the CLIP ViT-L/14-336 + mlp random F16 mmproj (once, cached outside the repo)...',
    );
    const image =
      values.image ??
      (existsSync(vendoredJpeg) ? vendoredJpeg : join(tinyDir, 'samples', 'sample_000.png'));
    return { mmproj: await benchMmproj(REALISTIC_CLIP_L14_336), image };
  }
  // Families whose chunks libmtmd wraps in marker tokens: mtmd_tokenize needs the text model's
  // vocabulary (mm-bench-vision --text-model loads only that).
  if (name === 'qwen2.5vl-3b' || name === 'qwen2vl-2b') {
    log(`[bench] making the ${name}-shaped random F16 mmproj (once, cached outside the repo)...`);
    const p = await benchQwenVlPair(name === 'qwen2vl-2b' ? QWEN2VL_2B : REALISTIC_QWEN25VL_3B);
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(448, 448)),
    };
  }
  if (name === 'gemma3-4b') {
    log(
      '[bench] making the Gemma-3-4B-shaped SigLIP random F16 mmproj (once, cached outside the repo)...',
    );
    const p = await benchGemma3Pair();
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(640, 480)),
    };
  }
  if (name === 'llava16-7b') {
    log('[bench] making the LLaVA-1.6-shaped random F16 mmproj (once, cached outside the repo)...');
    // 672x336: the 672x336 candidate, 2 slices of 336x336, and the overview (3 x 576 tokens)
    return {
      mmproj: await benchLlava16Mmproj(),
      image: values.image ?? (await syntheticPngFixture(672, 336)),
    };
  }
  if (name === 'smolvlm-500m') {
    log('[bench] making the SmolVLM-shaped random F16 mmproj (once, cached outside the repo)...');
    const p = await benchIdefics3Pair();
    // 2048x512 at a 2048 longest edge: 4x1 tiles of 512x512 and the global image (5 x 64 tokens)
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(2048, 512)),
    };
  }
  if (name === 'minicpmv-2.6') {
    log(
      '[bench] making the MiniCPM-V-2.6-shaped random F16 mmproj (once, cached outside the repo)...',
    );
    const p = await benchMinicpmvPair();
    // 896x448: an overview and 2 slices of 448x448 (1024 patches each)
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(896, 448)),
    };
  }
  if (name === 'minicpmv-tiny') {
    const p = await tinyMinicpmvPair();
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(200, 150)),
    };
  }
  if (name === 'qwen2vl-tiny' || name === 'qwen2.5vl-tiny') {
    const p = await tinyQwenVlPair({
      family: name === 'qwen2vl-tiny' ? 'qwen2vl_merger' : 'qwen2.5vl_merger',
    });
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(90, 61)),
    };
  }
  if (name === 'gemma3-tiny') {
    const p = await tinyGemma3Pair();
    return {
      mmproj: p.mmproj,
      textModel: p.llm,
      image: values.image ?? (await syntheticPngFixture(90, 61)),
    };
  }
  return { mmproj: name, image: values.image ?? join(tinyDir, 'samples', 'sample_000.png') };
}

async function nodeApi(mmproj, imagePath, n) {
  const encoder = await VisionEncoder.load(mmproj, { threads });
  const projector = await Projector.load(mmproj, { threads });
  const image = await Image.fromFile(imagePath);
  const once = async () => {
    const t0 = performance.now();
    const chunks = await encoder.encodeChunks(image);
    for (const f of chunks) {
      const e = await projector.project(f);
      f.dispose();
      e.dispose();
    }
    const ms = performance.now() - t0;
    return ms;
  };
  await once();
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const times = [];
  for (let i = 0; i < n; i++) times.push(await once());
  lag.disable();
  encoder.dispose();
  projector.dispose();
  return { median: median(times), min: Math.min(...times), maxLagMs: lag.max / 1e6 - 1 };
}

const si = systemInfo();
const results = [];
for (const name of values.models.split(',')) {
  const m = await model(name);
  log(`[bench] ${name}: ours vs libmtmd in one process, ${threads} threads, ${reps} reps...`);
  const { stdout } = await run(
    oracleTool('mm-bench-vision'),
    [
      '--mmproj',
      m.mmproj,
      ...(m.textModel ? ['--text-model', m.textModel] : []),
      '--image',
      m.image,
      '-t',
      String(threads),
      '-n',
      String(reps),
      '--json',
    ],
    { maxBuffer: 1 << 24 },
  );
  const side = JSON.parse(stdout);
  if (values['skip-api']) {
    results.push({ model: name, ...side });
    continue;
  }
  log(`[bench] ${name}: the same through the Node API...`);
  const api = await nodeApi(m.mmproj, m.image, reps);
  results.push({ model: name, ...side, nodeApi: api });
}

if (values.json) {
  console.log(
    JSON.stringify(
      { date: new Date().toISOString(), cpu: si.cpuModel, llamaCommit: si.llamaCommit, results },
      null,
      2,
    ),
  );
} else {
  console.log(
    `mm vision bench, ${new Date().toISOString().slice(0, 10)}, CPU ${si.cpuModel} (${si.hardwareThreads} threads), llama.cpp ${si.llamaCommit.slice(0, 8)}`,
  );
  console.log(
    'medians (min–max) in ms; ours and libmtmd interleaved in one process, same threads; ratio = ours / libmtmd of the medians, and of each interleaved pair\n',
  );
  console.log(
    '| model | projector | image | out | threads | reps | backend | FA | preprocess ours / mtmd | encoder + projector ours | libmtmd | ratio | per-pair ratio | Node API ours | event-loop lag | max abs diff |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const o = r.ours;
    const pr = r.pairRatio;
    console.log(
      `| ${r.model} | ${r.projectorType} | ${r.imageSize.join('x')} | ${r.chunks} x ${r.rows} x ${r.nEmbd} ` +
        `| ${r.threads} | ${r.reps} | ${r.backend} | ${r.flashAttn ? 'on' : 'off'} ` +
        `| ${o.preprocessMs.median.toFixed(3)} / ${r.ref.preprocessMs.median.toFixed(3)} ` +
        `| ${o.encoderProjectorMs.median.toFixed(3)} (${o.encoderProjectorMs.min.toFixed(3)}–${r.oursMaxMs.toFixed(3)}) ` +
        `| ${r.ref.encoderProjectorMs.median.toFixed(3)} (${r.ref.encoderProjectorMs.min.toFixed(3)}–${r.refMaxMs.toFixed(3)}) ` +
        `| **${r.ratio.toFixed(3)}** | ${pr.median.toFixed(3)} (${pr.min.toFixed(3)}–${pr.max.toFixed(3)}) ` +
        (r.nodeApi
          ? `| ${r.nodeApi.median.toFixed(3)} (${r.nodeApi.min.toFixed(3)}) | ${r.nodeApi.maxLagMs.toFixed(1)} `
          : '| – | – ') +
        `| ${r.maxAbsDiff} |`,
    );
  }
}
