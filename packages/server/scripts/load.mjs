#!/usr/bin/env node
// Bounded load test for `mm serve`, loopback only, stops by itself.
//
//   node packages/server/scripts/load.mjs [--requests 64] [--clients 8] [--parallel 1,8]
//                                         [--threads N] [--engine batch|slots] [--timeout 600] [--json]
//
// For each --parallel value it starts a server (a child process running @mm/server's
// startServer on 127.0.0.1, random port) with the tiny-shapes model from @mm/demo, sends
// --requests chat completions about the sample images from --clients concurrent clients,
// checks every answer against samples/answers.json, and prints p50/p99 latency and aggregate
// completion tokens per second. Exits 1 if any request is lost or wrong.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const tinyDir = join(dirname(require.resolve('@mm/demo/package.json')), 'models', 'tiny-shapes');
const model = join(tinyDir, 'tiny-shapes-llm.gguf');
const mmproj = join(tinyDir, 'mmproj-tiny-shapes.gguf');

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '64' },
    clients: { type: 'string', default: '8' },
    parallel: { type: 'string', default: '1,8' },
    threads: { type: 'string', default: String(availableParallelism()) },
    engine: { type: 'string', default: 'batch' },
    timeout: { type: 'string', default: '600' },
    json: { type: 'boolean', default: false },
    'serve-child': { type: 'string' },
  },
});

if (values['serve-child'] !== undefined) {
  // Child: serve until the parent says stop (or goes away).
  const { startServer } = await import('../dist/index.js');
  const server = await startServer({
    model,
    mmproj,
    port: 0,
    parallel: Number(values['serve-child']),
    threads: Number(values.threads),
    engine: values.engine,
    limits: { maxQueue: 1024 },
    staticDir: false,
  });
  process.send?.({ url: server.url, modelId: server.modelId });
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.on('message', (m) => m === 'stop' && stop());
  process.on('disconnect', stop);
} else {
  await main();
}

function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function runOne(parallel, jobs, clients, threads) {
  const child = fork(
    fileURLToPath(import.meta.url),
    ['--serve-child', String(parallel), '--threads', String(threads), '--engine', values.engine],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    const { url, modelId } = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) =>
        reject(new Error(`the server exited (${code}) before listening`)),
      );
    });
    const post = async (job) => {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: modelId,
          temperature: 0,
          max_tokens: 32,
          messages: [
            {
              role: 'user',
              content: [
                { type: 'image_url', image_url: { url: job.image } },
                { type: 'text', text: job.question },
              ],
            },
          ],
        }),
      });
      const body = await res.json();
      const ms = performance.now() - t0;
      if (res.status !== 200)
        return { ok: false, ms, why: `HTTP ${res.status} ${JSON.stringify(body)}` };
      const text = body.choices[0].message.content.trim();
      if (text !== job.answer)
        return {
          ok: false,
          ms,
          why: `got ${JSON.stringify(text)}, want ${JSON.stringify(job.answer)}`,
        };
      return { ok: true, ms, tokens: body.usage.completion_tokens };
    };
    // Warm-up: one request per slot (each slot encodes each image once; the cache is per slot).
    await Promise.all(Array.from({ length: parallel }, (_, i) => post(jobs[i % jobs.length])));
    const results = new Array(jobs.length);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (;;) {
          const i = next++;
          if (i >= jobs.length) return;
          try {
            results[i] = await post(jobs[i]);
          } catch (e) {
            results[i] = { ok: false, ms: 0, why: String(e) };
          }
        }
      }),
    );
    const wallMs = performance.now() - t0;
    const health = await (await fetch(`${url}/health`)).json();
    const avgBatch = health.batch ? health.batch.tokens / Math.max(health.batch.steps, 1) : null;
    const ok = results.filter((r) => r?.ok);
    const failures = results
      .map((r, i) => (r?.ok ? null : `#${i}: ${r?.why ?? 'lost'}`))
      .filter(Boolean);
    const lat = ok.map((r) => r.ms).sort((a, b) => a - b);
    const tokens = ok.reduce((n, r) => n + r.tokens, 0);
    return {
      parallel,
      requests: jobs.length,
      answered: ok.length,
      failures,
      wallMs,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      tokens,
      tokensPerSecond: (tokens * 1000) / wallMs,
      requestsPerSecond: (ok.length * 1000) / wallMs,
      avgBatch,
      maxBatch: health.batch?.max_batch ?? null,
    };
  } finally {
    if (child.connected) child.send('stop');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

async function main() {
  const nRequests = Number(values.requests);
  const clients = Number(values.clients);
  const threads = Number(values.threads);
  const parallels = values.parallel.split(',').map(Number);
  const deadline = setTimeout(() => {
    console.error(`load: gave up after ${values.timeout} s`);
    process.exit(1);
  }, Number(values.timeout) * 1000);
  deadline.unref();

  const { items } = JSON.parse(readFileSync(join(tinyDir, 'samples', 'answers.json'), 'utf8'));
  const all = items.flatMap((item) => {
    const image = `data:image/png;base64,${readFileSync(join(tinyDir, 'samples', item.image)).toString('base64')}`;
    return item.questions.map((q) => ({ image, question: q.question, answer: q.answer }));
  });
  // Spread over images and question kinds, deterministically.
  const jobs = Array.from({ length: nRequests }, (_, i) => all[(i * 7) % all.length]);

  const rows = [];
  for (const p of parallels) rows.push(await runOne(p, jobs, clients, threads));
  const base = rows[0];
  if (values.json) {
    console.log(JSON.stringify({ threads, clients, rows }, null, 2));
  } else {
    console.log(
      `mm serve load: ${nRequests} requests, ${clients} clients, ${threads} threads, engine ${values.engine}, tiny-shapes, loopback`,
    );
    console.log(
      'parallel  answered  p50 ms  p99 ms  req/s   tok/s   tok/s vs first  rows/step (max)',
    );
    for (const r of rows) {
      console.log(
        `${String(r.parallel).padStart(8)}  ${`${r.answered}/${r.requests}`.padStart(8)}  ${r.p50Ms.toFixed(1).padStart(6)}  ${r.p99Ms.toFixed(1).padStart(6)}  ${r.requestsPerSecond.toFixed(1).padStart(5)}  ${r.tokensPerSecond.toFixed(1).padStart(6)}  ${(r.tokensPerSecond / base.tokensPerSecond).toFixed(2)}×  ${r.avgBatch === null ? '-' : `${r.avgBatch.toFixed(2)} (${r.maxBatch})`}`,
      );
      for (const f of r.failures) console.log(`  failed ${f}`);
    }
  }
  clearTimeout(deadline);
  process.exit(rows.every((r) => r.failures.length === 0) ? 0 : 1);
}
