#!/usr/bin/env node
// The backbone local vs. its layers on two ggml RPC workers on loopback (child processes started
// with startRpcWorker, what `mm rpc-worker` runs): same model, prompt, greedy tokens; interleaved
// A B A B after one warm-up each (BENCH.md). Checks that both sides generate the same tokens.
//
//   npm run bench:rpc -w @mm/backbone-gguf -- [--models tiny,1b] [--threads 2] [--prompt 64]
//                                              [--gen 32] [--reps 10] [--json]
// tiny: the bundled tiny-shapes LLM; 1b: @mm/testing's BENCH_LLAMA_1B (benchLlama, random F16).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { systemInfo } from '@mm/native';
import { BENCH_LLAMA_1B, benchLlama, tinyShapesPaths } from '@mm/testing';
import { Backbone } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'tiny,1b' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '64' },
    gen: { type: 'string', default: '32' },
    reps: { type: 'string', default: '10' },
    json: { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
const promptTokens = Number(values.prompt);
const gen = Number(values.gen);
const reps = Number(values.reps);
const log = (s) => process.stderr.write(`${s}\n`);
const here = dirname(fileURLToPath(import.meta.url));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startWorker() {
  const port = await freePort();
  const code = `import { startRpcWorker } from '@mm/backbone-gguf';
const w = await startRpcWorker({ port: ${port}, threads: ${threads} });
process.stdout.write('ready ' + w.endpoint + '\\n');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    cwd: here,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const endpoint = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /ready (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (c) => reject(new Error(`worker exited with ${c}`)));
  });
  return { child, endpoint };
}

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

async function side(path, rpc) {
  const backbone = await Backbone.load(path, rpc ? { rpc } : {});
  const prompt = makePrompt(backbone, promptTokens);
  const nPrompt = backbone.tokenize(prompt).length;
  const ctx = await backbone.createContext({
    contextSize: Math.max(256, nPrompt + gen + 16),
    threads,
    batchSize: 512,
  });
  const once = async () => {
    ctx.clear();
    const g = ctx.generate({ prompt, maxTokens: gen, ignoreEndOfGeneration: true });
    for await (const _ of g) {
    }
    const r = await g.result;
    return { prefillMs: r.prefillMs, decodeMs: r.decodeMs, tokens: r.tokens, nPrompt };
  };
  return {
    once,
    dispose: () => {
      ctx.dispose();
      backbone.dispose();
    },
  };
}

async function benchModel(name) {
  let path = name;
  if (name === 'tiny') path = tinyShapesPaths().llm;
  else if (name === '1b') {
    log('[rpc-bench] making the ~1B random F16 model (cached outside the repo)...');
    path = await benchLlama(BENCH_LLAMA_1B);
  }
  const workers = await Promise.all([startWorker(), startWorker()]);
  try {
    const local = await side(path, undefined);
    const t0 = performance.now();
    const remote = await side(
      path,
      workers.map((w) => w.endpoint),
    );
    const loadMs = performance.now() - t0;
    log(`[rpc-bench] ${name}: warm-up (remote load ${loadMs.toFixed(0)} ms)`);
    const w1 = await local.once();
    const w2 = await remote.once();
    const same = JSON.stringify(w1.tokens) === JSON.stringify(w2.tokens);
    const A = [];
    const B = [];
    for (let i = 0; i < reps; i++) {
      log(`[rpc-bench] ${name}: rep ${i + 1}/${reps}`);
      A.push(await local.once());
      B.push(await remote.once());
    }
    local.dispose();
    remote.dispose();
    const tps = (n, ms) => (n * 1000) / ms;
    const row = (metric, f) => {
      const a = A.map(f);
      const b = B.map(f);
      return {
        metric,
        local: { median: median(a), min: Math.min(...a), max: Math.max(...a) },
        rpc: { median: median(b), min: Math.min(...b), max: Math.max(...b) },
        ratio: median(b) / median(a),
      };
    };
    return {
      model: name,
      path,
      promptTokens: w1.nPrompt,
      generatedTokens: gen,
      sameTokens: same,
      remoteLoadMs: loadMs,
      rows: [
        row('prefill tok/s', (x) => tps(x.nPrompt, x.prefillMs)),
        row('decode tok/s', (x) => tps(gen - 1, x.decodeMs)),
      ],
    };
  } finally {
    for (const w of workers) w.child.kill('SIGKILL');
  }
}

const si = systemInfo();
const results = [];
for (const m of values.models.split(',')) results.push(await benchModel(m.trim()));
const report = {
  date: new Date().toISOString(),
  conditions: {
    threads: `${threads} (main process and each worker)`,
    workers: '2 on 127.0.0.1, layers split evenly (same free memory)',
    backend: si.backends.join('+'),
    llamaCommit: si.llamaCommit,
    cpu: si.cpuModel,
    reps,
  },
  results,
};
if (values.json) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} else {
  const c = report.conditions;
  process.stdout.write(
    `local vs 2 RPC workers on loopback: threads ${c.threads}, backend ${c.backend}, llama.cpp ${c.llamaCommit.slice(0, 8)}, CPU ${c.cpu}, ${c.reps} interleaved reps\n`,
  );
  for (const r of results) {
    process.stdout.write(
      `\n${r.model}: prompt ${r.promptTokens} tokens, ${r.generatedTokens} generated, same tokens: ${r.sameTokens ? 'yes' : 'NO'}, load on workers ${r.remoteLoadMs.toFixed(0)} ms\n`,
    );
    for (const x of r.rows) {
      const f = (v) => v.toFixed(1);
      process.stdout.write(
        `  ${x.metric.padEnd(14)} local ${f(x.local.median)} (${f(x.local.min)}–${f(x.local.max)})  rpc ${f(x.rpc.median)} (${f(x.rpc.min)}–${f(x.rpc.max)})  rpc/local ${x.ratio.toFixed(3)}\n`,
      );
    }
  }
}
if (results.some((r) => !r.sameTokens)) process.exitCode = 1;
