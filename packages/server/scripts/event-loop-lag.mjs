#!/usr/bin/env node
// `mm serve`'s event-loop lag under load, beside its idle noise floor. Loopback only; stops the
// server and exits.
//
//   node packages/server/scripts/event-loop-lag.mjs [--shape tiny | realistic] [--clients 8]
//        [--requests 64] [--rounds 5] [--warm N] [--parallel 8] [--threads N] [--max-tokens 32]
//        [--client-nice 10] [--idle-ms 2000] [--json]
//
// Starts one mm serve (tiny-shapes, or the realistic CLIP ViT-L/14-336 + BENCH_LLAMA_1B pair that
// @mm/testing writes into benchDir() once), sends --warm requests (default: as many as a round)
// so that the JIT and first-use costs are behind it, then runs --rounds rounds of:
//   idle   --idle-ms with no requests: GET /health?reset_lag=1 before and after, so the window
//          holds only the timer ticks of an idle server (the machine's own noise floor);
//   load   --requests distinct pictures (PNG data URLs), streamed, by --clients clients at once
//          (each sends its next request when its answer ends); the window is the load alone.
// Per round it prints the lag p99 / max of both windows (from `/health` `event_loop`: how late a
// 1 ms timer fired), and, on Linux, what the server's JS thread did over the load
// (/proc/<pid>/task/<pid>/schedstat): ms on a core, ms waiting for one, and the machine's steal
// time (a VM's vCPU not running). The summary gives medians and the worst.
//
// The load generator is this process, on the same cores as the server. --client-nice (default
// 10; 0 = the server's priority) lowers the priority of its threads once the server has started
// (Linux nice is per thread, and the server is a child started before), so that the figure is
// the server's own lag, as with a client on another machine; both settings are worth running.
//
// To see where a stall comes from: LAG_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=D' (or
// '--trace-gc' with LAG_SERVER_STDOUT=1) passes node flags to the server.
//
// Exit status 1 when an answer is lost.
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, setPriority } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodePng, stopChild, syntheticImage, tinyShapesItems } from '@mm/testing';
import {
  intOption,
  printHelpAndExit,
  realisticPair,
  spawnMmServe,
  tinyDir,
} from './script-kit.mjs';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'tiny' },
    clients: { type: 'string', default: '8' },
    requests: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    warm: { type: 'string' },
    parallel: { type: 'string', default: '8' },
    threads: { type: 'string' },
    'max-tokens': { type: 'string', default: '32' },
    'client-nice': { type: 'string', default: '10' },
    'idle-ms': { type: 'string', default: '2000' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) printHelpAndExit(import.meta.url);
const int = (name, min = 1) => intOption(values, name, min);
if (!['tiny', 'realistic'].includes(values.shape)) {
  console.error(`--shape takes tiny or realistic, got '${values.shape}'`);
  process.exit(2);
}
const tiny = values.shape === 'tiny';
values.requests ??= tiny ? '64' : '8';
values.threads ??= tiny ? '1' : String(availableParallelism());
values.warm ??= values.requests;
const clients = int('clients');
const nRequests = int('requests');
const rounds = int('rounds');
const nWarm = int('warm', 0);
const maxTokens = int('max-tokens');
const clientNice = int('client-nice', 0);
const idleMs = int('idle-ms', 0);
const log = (msg) => process.stderr.write(`[lag] ${msg}\n`);

// --- the server ---------------------------------------------------------------------------

async function models() {
  if (tiny) {
    return {
      name: 'tiny-shapes',
      model: join(tinyDir, 'tiny-shapes-llm.gguf'),
      mmproj: join(tinyDir, 'mmproj-tiny-shapes.gguf'),
      ctx: 256,
      jobs: (n, seed) =>
        tinyShapesItems(n, seed).map((item, i) => ({
          png: encodePng(item.image),
          question: item.questions[(i * 5) % item.questions.length].question,
        })),
    };
  }
  log('making the realistic models once into benchDir() (minutes the first time)...');
  return {
    name: 'CLIP ViT-L/14-336 + BENCH_LLAMA_1B (random F16)',
    ...(await realisticPair()),
    ctx: 1024,
    jobs: (n, seed) =>
      Array.from({ length: n }, (_, i) => ({
        png: encodePng(syntheticImage(336, 336, seed * 1000 + i)),
        question: 'Describe the image.',
      })),
  };
}

async function startServer(m) {
  const { child, url, argv } = await spawnMmServe(
    [
      ...['-m', m.model, '--mmproj', m.mmproj, '--no-demo', '--parallel', values.parallel],
      ...['--threads', values.threads, '-c', String(m.ctx), '--max-queue', '1024'],
    ],
    {
      nodeArgs: (process.env.LAG_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean),
      stdout: process.env.LAG_SERVER_STDOUT ? 'inherit' : 'ignore',
    },
  );
  const list = await (await fetch(`${url}/v1/models`)).json();
  return { child, url, argv, modelId: list.data[0].id };
}

// --- the load -----------------------------------------------------------------------------

/** One streamed answer, read to its end; false when it was lost. */
async function ask(server, job) {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: server.modelId,
      temperature: 0,
      max_tokens: maxTokens,
      stream: true,
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
  if (res.status !== 200) return false;
  let text = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
  return text.endsWith('data: [DONE]\n\n');
}

/** `jobs` by `n` clients at once; the number lost. */
async function load(server, jobs, n) {
  let next = 0;
  let lost = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < jobs.length) {
        const ok = await ask(server, jobs[next++]).catch(() => false);
        if (!ok) lost++;
      }
    }),
  );
  return lost;
}

const lagOf = async (server) =>
  (await (await fetch(`${server.url}/health?reset_lag=1`)).json()).event_loop;

/** The JS thread's [ns on a core, ns waiting for one] (Linux), or null. */
function schedstat(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ');
    return [Number(f[0]), Number(f[1])];
  } catch {
    return null;
  }
}

/** [steal, total] jiffies of the whole machine (Linux), or null. */
function cpuTimes() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1);
    const n = f.map(Number);
    return [n[7] ?? 0, n.reduce((a, b) => a + b, 0)];
  } catch {
    return null;
  }
}

/**
 * Every thread of this process at `nice` (Linux nice is per thread: the V8 and libuv workers
 * too, which build request bodies and collect garbage beside the server). Threads started later
 * inherit it from the thread that starts them.
 */
function lowerPriority(nice) {
  let tids = [0];
  try {
    tids = readdirSync('/proc/self/task').map(Number);
  } catch {}
  for (const tid of tids) {
    try {
      setPriority(tid, nice);
    } catch {}
  }
}

// --- main ---------------------------------------------------------------------------------

const dataUrls = (jobs) =>
  jobs.map((j) => ({
    image: `data:image/png;base64,${Buffer.from(j.png).toString('base64')}`,
    question: j.question,
  }));

const m = await models();
log(`starting mm serve (${m.name}, --parallel ${values.parallel}, ${values.threads} threads)...`);
const server = await startServer(m);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await stopChild(server.child);
    process.exit(130);
  });
}
let lostTotal = 0;
const out = [];
try {
  if (clientNice > 0) lowerPriority(Math.min(19, clientNice));
  if (nWarm > 0) {
    log(`warm-up: ${nWarm} requests by ${clients} clients...`);
    lostTotal += await load(server, dataUrls(m.jobs(nWarm, 7919)), clients);
  }
  for (let round = 0; round < rounds; round++) {
    const jobs = dataUrls(m.jobs(nRequests, round + 1)); // made before: the window holds the load alone
    await lagOf(server);
    await new Promise((r) => setTimeout(r, idleMs));
    const idle = await lagOf(server);
    const s0 = schedstat(server.child.pid);
    const c0 = cpuTimes();
    const t0 = performance.now();
    const lost = await load(server, jobs, clients);
    const ms = performance.now() - t0;
    const busy = await lagOf(server);
    const s1 = schedstat(server.child.pid);
    const c1 = cpuTimes();
    lostTotal += lost;
    const r = {
      round: round + 1,
      idle: { p99_ms: idle.p99_ms, max_ms: idle.max_ms },
      load: { p99_ms: busy.p99_ms, max_ms: busy.max_ms, samples: busy.samples },
      loadMs: Math.round(ms),
      lost,
      jsThread:
        s0 && s1
          ? { runMs: Math.round((s1[0] - s0[0]) / 1e6), waitMs: Math.round((s1[1] - s0[1]) / 1e6) }
          : null,
      stealPct: c0 && c1 ? round1((100 * (c1[0] - c0[0])) / Math.max(1, c1[1] - c0[1])) : null,
    };
    out.push(r);
    log(
      `round ${r.round}: idle p99/max ${r.idle.p99_ms}/${r.idle.max_ms} ms; load p99/max ` +
        `${r.load.p99_ms}/${r.load.max_ms} ms over ${r.loadMs} ms` +
        (r.jsThread
          ? `; JS thread ${r.jsThread.runMs} ms on a core, ${r.jsThread.waitMs} ms waiting`
          : '') +
        (r.stealPct !== null ? `; steal ${r.stealPct}%` : ''),
    );
  }
} finally {
  await stopChild(server.child);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? Number.NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
function round1(x) {
  return Math.round(x * 10) / 10;
}
const summary = {
  shape: m.name,
  argv: server.argv,
  clients,
  requests: nRequests,
  rounds,
  warm: nWarm,
  clientNice,
  rounds_: out,
  idle: {
    p99_ms: median(out.map((r) => r.idle.p99_ms)),
    max_ms: median(out.map((r) => r.idle.max_ms)),
    worst_max_ms: Math.max(...out.map((r) => r.idle.max_ms)),
  },
  load: {
    p99_ms: median(out.map((r) => r.load.p99_ms)),
    max_ms: median(out.map((r) => r.load.max_ms)),
    worst_p99_ms: Math.max(...out.map((r) => r.load.p99_ms)),
    worst_max_ms: Math.max(...out.map((r) => r.load.max_ms)),
  },
  lost: lostTotal,
};
if (values.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  console.log(
    `\n== mm serve event-loop lag: ${m.name}, ${clients} clients, ${nRequests} requests a round, ${rounds} rounds after ${nWarm} warm-up requests, load generator at nice +${clientNice}`,
  );
  console.log(`   mm ${server.argv.join(' ')}`);
  const f = (x) => x.toFixed(2);
  console.log(
    `   idle:  p99 ${f(summary.idle.p99_ms)} ms, max ${f(summary.idle.max_ms)} ms (medians of the rounds; worst max ${f(summary.idle.worst_max_ms)})`,
  );
  console.log(
    `   load:  p99 ${f(summary.load.p99_ms)} ms, max ${f(summary.load.max_ms)} ms (medians; worst p99 ${f(summary.load.worst_p99_ms)}, worst max ${f(summary.load.worst_max_ms)})`,
  );
  console.log(`   answers lost: ${lostTotal}`);
}
process.exit(lostTotal > 0 ? 1 : 0);
