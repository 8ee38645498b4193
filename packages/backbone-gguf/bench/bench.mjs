#!/usr/bin/env node
// Side-by-side benchmark of @mm/backbone-gguf against llama.cpp's own generation loop
// (native/tools/ref-generate.cpp, libllama from the same vendored tree), same model, prompt,
// threads and token counts, interleaved A B A B after one warm-up each (BENCH.md).
//
//   npm run bench -w @mm/backbone-gguf -- [--models tiny,1b] [--threads 2] [--prompt 128]
//                                          [--gen 32] [--reps 10] [--json]
import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { systemInfo } from '@mm/native';
import { BENCH_LLAMA_1B, benchLlama, oracleTool, tinyShapesPaths } from '@mm/testing';
import { Backbone } from '../dist/index.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'tiny,1b' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '128' },
    gen: { type: 'string', default: '32' },
    reps: { type: 'string', default: '10' },
    json: { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
const promptTokens = Number(values.prompt);
const gen = Number(values.gen);
const reps = Math.max(10, Number(values.reps));
const log = (s) => process.stderr.write(`${s}\n`);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const min = (xs) => Math.min(...xs);

async function modelPath(name) {
  if (name === 'tiny') return tinyShapesPaths().llm;
  if (name === '1b') {
    log('[bench] making the ~1B random F16 model (once, cached outside the repo)...');
    return benchLlama(BENCH_LLAMA_1B);
  }
  return name;
}

/** A prompt of exactly n tokens (plus BOS) in this vocabulary. */
function makePrompt(backbone, n) {
  const words = 'the red circle on the left of a blue square near green shapes at the top '.split(
    ' ',
  );
  let text = '';
  let i = 0;
  while (backbone.tokenize(text).length < n + 1) text += `${words[i++ % words.length]} `;
  while (backbone.tokenize(text).length > n + 1) text = text.slice(0, -1);
  return text;
}

async function benchModel(name) {
  const path = await modelPath(name);
  const backbone = await Backbone.load(path);
  const prompt = makePrompt(backbone, promptTokens);
  const nPrompt = backbone.tokenize(prompt).length;
  const contextSize = Math.max(256, nPrompt + gen + 16);
  const ctx = await backbone.createContext({ contextSize, threads, batchSize: 512 });
  const refArgs = [
    '-m',
    path,
    '-p',
    prompt,
    '-n',
    String(gen),
    '-t',
    String(threads),
    '-c',
    String(contextSize),
    '--ignore-eog',
  ];
  const refTool = oracleTool('mm-ref-generate');

  const ours = async (clear = true) => {
    if (clear) ctx.clear();
    const t0 = performance.now();
    let first = 0;
    let n = 0;
    const g = ctx.generate({ prompt, maxTokens: gen, ignoreEndOfGeneration: true });
    for await (const _ of g) {
      if (n++ === 0) first = performance.now();
    }
    const end = performance.now();
    const r = await g.result;
    if (r.tokens.length !== gen)
      throw new Error(`generated ${r.tokens.length} tokens, expected ${gen}`);
    return {
      prefillMs: r.prefillMs,
      decodeMs: r.decodeMs,
      jsPrefillMs: first - t0,
      jsDecodeMs: end - first,
      tokens: r.tokens,
    };
  };
  const ref = async () => {
    const { stdout } = await run(refTool, refArgs, { maxBuffer: 16 << 20 });
    const r = JSON.parse(stdout);
    return { prefillMs: r.prefill_ms, decodeMs: r.decode_ms, tokens: r.tokens };
  };

  log(`[bench] ${name}: warm-up`);
  const w1 = await ours();
  const w2 = await ref();
  const same = JSON.stringify(w1.tokens) === JSON.stringify(w2.tokens);
  const A = [];
  const B = [];
  for (let i = 0; i < reps; i++) {
    log(`[bench] ${name}: rep ${i + 1}/${reps}`);
    A.push(await ours());
    B.push(await ref());
  }
  // Event-loop lag in separate runs: a 1 ms timer wakes the JS thread 1000 times a second,
  // which would itself slow the timed runs on a machine with few cores.
  let maxGap = 0;
  const gapsDuring = async (fn) => {
    let gap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      gap = Math.max(gap, now - last - 1);
      last = now;
    }, 1);
    await fn();
    clearInterval(timer);
    return gap;
  };
  // The machine's own noise floor: the same timer while llama.cpp generates in a child process
  // and this JS thread has nothing to do.
  let floorGap = 0;
  for (let i = 0; i < 3; i++) {
    ctx.clear(); // outside the measured window: a synchronous KV memset, not generation
    maxGap = Math.max(maxGap, await gapsDuring(() => ours(false)));
    floorGap = Math.max(floorGap, await gapsDuring(ref));
  }
  ctx.dispose();
  backbone.dispose();

  const tps = (n, ms) => (n * 1000) / ms;
  const row = (metric, a, b, higherIsBetter) => {
    const ma = median(a);
    const mb = median(b);
    return {
      metric,
      ours: { median: ma, min: higherIsBetter ? Math.max(...a) : min(a) },
      reference: { median: mb, min: higherIsBetter ? Math.max(...b) : min(b) },
      ratio: ma / mb,
    };
  };
  return {
    model: name,
    path,
    promptTokens: nPrompt,
    generatedTokens: gen,
    sameTokens: same,
    rows: [
      row(
        'prefill tok/s (native timers)',
        A.map((x) => tps(nPrompt, x.prefillMs)),
        B.map((x) => tps(nPrompt, x.prefillMs)),
        true,
      ),
      row(
        'decode tok/s (native timers)',
        A.map((x) => tps(gen - 1, x.decodeMs)),
        B.map((x) => tps(gen - 1, x.decodeMs)),
        true,
      ),
      row(
        'prefill tok/s (ours from JS, incl. tokenize + first token)',
        A.map((x) => tps(nPrompt, x.jsPrefillMs)),
        B.map((x) => tps(nPrompt, x.prefillMs)),
        true,
      ),
      row(
        'decode tok/s (ours from JS, tokens as received)',
        A.map((x) => tps(gen - 1, x.jsDecodeMs)),
        B.map((x) => tps(gen - 1, x.decodeMs)),
        true,
      ),
    ],
    eventLoop: { maxGapMs: maxGap, idleFloorMaxGapMs: floorGap },
  };
}

const si = systemInfo();
const results = [];
for (const m of values.models.split(',')) results.push(await benchModel(m.trim()));
const report = {
  date: new Date().toISOString(),
  conditions: {
    threads,
    backend: si.backends.join('+'),
    llamaCommit: si.llamaCommit,
    cpu: si.cpuModel,
    hardwareThreads: si.hardwareThreads,
    reps,
    promptTokens,
    generatedTokens: gen,
  },
  results,
};
if (values.json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const c = report.conditions;
  console.log(`@mm/backbone-gguf vs llama.cpp (${c.reps} interleaved reps after warm-up; medians)`);
  console.log(
    `threads ${c.threads}, backend ${c.backend}, llama.cpp ${c.llamaCommit.slice(0, 8)}, CPU ${c.cpu} (${c.hardwareThreads} threads)`,
  );
  for (const r of results) {
    console.log(
      `\n${r.model}: ${r.path.split('/').pop()}, prompt ${r.promptTokens} tokens, ${r.generatedTokens} generated, same tokens as llama.cpp: ${r.sameTokens}`,
    );
    console.log(
      `${'metric'.padEnd(58)} ${'ours'.padStart(10)} ${'llama.cpp'.padStart(10)} ${'ratio'.padStart(7)}`,
    );
    for (const row of r.rows) {
      console.log(
        `${row.metric.padEnd(58)} ${row.ours.median.toFixed(1).padStart(10)} ${row.reference.median.toFixed(1).padStart(10)} ${row.ratio.toFixed(3).padStart(7)}`,
      );
    }
    console.log(
      `event-loop lag while generating (1 ms timer): max gap ${r.eventLoop.maxGapMs.toFixed(2)} ms; ` +
        `machine noise floor (same timer while llama.cpp runs in a child): ${r.eventLoop.idleFloorMaxGapMs.toFixed(2)} ms`,
    );
  }
}
