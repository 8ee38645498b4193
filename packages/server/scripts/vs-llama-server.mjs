#!/usr/bin/env node
// `mm serve` and llama.cpp's llama-server side by side: same model files, same requests (images as
// data URLs), same slots, threads and context, greedy. Loopback only; stops both servers and exits.
//
//   node packages/server/scripts/vs-llama-server.mjs [--scenario distinct,repeat | realistic | decode | all]
//        [--requests 64] [--clients 1,4,8] [--parallel 8] [--threads N] [--max-tokens 32]
//        [--repeats 30] [--pairs 4] [--rounds 3] [--ctx N] [--seed 1] [--timeout 3600]
//        [--weights f16|q8_0] [--json]
//
// Scenarios:
//   distinct   tiny-shapes, --requests questions about as many distinct pictures (@mm/testing's
//              tinyShapesItems, PNG data URLs), streamed (SSE), sent by each --clients count in turn.
//              One server runs at a time (a fresh start per count, so no cache carries over), mm
//              first then llama-server, then the other way round for the next count. Prints
//              aggregate completion tok/s, TTFT p50/p99, latency p50/p95, errors, mm / llama-server
//              ratios; checks every answer: same as the other server, same as its own 1-client
//              answer, right for the scene; mm's event-loop lag (GET /health event_loop) idle
//              and under load; and "same picture after another system prompt" (--pairs pictures,
//              each asked twice with different system prompts: TTFT of the second, encode time).
//   repeat     tiny-shapes, both servers up at once, one client, the same picture and question
//              --repeats times, alternating mm / llama-server request by request (ABBA), not
//              streamed: median and worst latency of each, ratios.
//   realistic  a CLIP ViT-L/14-336 mmproj (projection to 2048) and BENCH_LLAMA_1B, random F16
//              weights made by @mm/testing into benchDir() (once), distinct 336x336 pictures,
//              otherwise as distinct (default --clients 1,8, --ctx 1024 per slot). --weights q8_0
//              makes the llama's 2-D weights Q8_0 (quantized by @mm/gguf's writer), for this
//              scenario and decode.
//   decode     the realistic models, batched decode: mm serve gets, for each --clients count
//              (default 1,8), that many requests with distinct pictures at once (max_tokens
//              --max-tokens, 64 unless given); its aggregate decode tok/s is the tokens that
//              streamed while ALL of them were generating (after the last first token, before the
//              first end) over that window. Each of --rounds rounds then runs llama.cpp's
//              llama-batched-bench on the same model (same prompt length, tokens and counts): its
//              S_TG is llama.cpp's own figure for N sequences decoding together.
//
// Tokens are the generated tokens without the end-of-generation one (llama-server's
// completion_tokens counts it, mm's does not), so tok/s compare the same tokens.
//
// Exit status 1 when an answer is lost (an HTTP error, a broken stream, a time-out) on either
// side, or when mm's answers differ from its own 1-client answers, or (tiny-shapes) from
// llama-server's; llama-server's own differences are printed, not counted.
import { spawn } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  BENCH_LLAMA_1B,
  encodePng,
  oracleTool,
  startLlamaServer,
  stopChild,
  syntheticImage,
  tinyShapesItems,
} from '@mm/testing';
import {
  intOption,
  median,
  printHelpAndExit,
  realisticPair,
  spawnMmServe,
  tinyDir,
  weightsOption,
} from './script-kit.mjs';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'distinct,repeat' },
    requests: { type: 'string' },
    clients: { type: 'string' },
    parallel: { type: 'string', default: '8' },
    threads: { type: 'string', default: String(availableParallelism()) },
    'max-tokens': { type: 'string' },
    rounds: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '30' },
    pairs: { type: 'string', default: '4' },
    ctx: { type: 'string' },
    seed: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '3600' },
    'request-timeout': { type: 'string', default: '300' },
    weights: { type: 'string', default: 'f16' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) printHelpAndExit(import.meta.url);

const int = (name, min = 1) => intOption(values, name, min);
const scenarios = new Set(
  values.scenario === 'all'
    ? ['distinct', 'repeat', 'realistic', 'decode']
    : values.scenario.split(','),
);
for (const s of scenarios) {
  if (!['distinct', 'repeat', 'realistic', 'decode'].includes(s)) {
    console.error(
      `--scenario takes distinct, repeat, realistic, decode (comma-separated) or all, got '${s}'`,
    );
    process.exit(2);
  }
}
const parallel = int('parallel');
const threads = int('threads');
const maxTokensGiven = values['max-tokens'] !== undefined;
if (!maxTokensGiven) values['max-tokens'] = '32';
const maxTokens = int('max-tokens');
const seed = int('seed', 0);
const requestTimeoutMs = int('request-timeout') * 1000;

// Every child server, so that a time-out or Ctrl-C stops them all.
const children = new Set();
const stopAll = () => Promise.all([...children].map((c) => c.stop()));
const deadline = setTimeout(async () => {
  console.error(`vs-llama-server: gave up after ${values.timeout} s`);
  await stopAll();
  process.exit(1);
}, int('timeout') * 1000);
deadline.unref();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await stopAll();
    process.exit(130);
  });
}
const log = (msg) => process.stderr.write(`[vs] ${msg}\n`);

// --- servers -----------------------------------------------------------------------------

/** `mm serve` as a user starts it (the CLI), on a free port; resolves when /health answers. */
async function startMm({ model, mmproj, ctxPerSlot }) {
  const { child, url, argv } = await spawnMmServe([
    ...['-m', model, '--mmproj', mmproj, '--parallel', String(parallel), '--no-demo'],
    ...['--threads', String(threads), '-c', String(ctxPerSlot), '--max-queue', '1024'],
    ...['--timeout', String(requestTimeoutMs / 1000)],
  ]);
  const server = {
    name: 'mm',
    url,
    argv,
    stop: async () => {
      children.delete(server);
      await stopChild(child);
    },
  };
  children.add(server);
  server.modelId = await modelIdOf(url);
  return server;
}

/** llama-server from the vendored tree (test-only build), same files, slots, threads, context. */
async function startLlama({ model, mmproj, ctxPerSlot, llamaArgs }) {
  const s = await startLlamaServer({
    model,
    mmproj,
    parallel,
    threads,
    contextSize: ctxPerSlot * parallel,
    args: llamaArgs,
  });
  const server = {
    name: 'llama-server',
    countsEndToken: true,
    url: s.url,
    argv: s.argv,
    stop: async () => {
      children.delete(server);
      await s.stop();
    },
  };
  children.add(server);
  server.modelId = await modelIdOf(s.url);
  return server;
}

async function modelIdOf(url) {
  const r = await fetch(`${url}/v1/models`);
  const body = await r.json();
  return body.data?.[0]?.id ?? 'model';
}

const starters = { mm: startMm, 'llama-server': startLlama };

// --- requests ----------------------------------------------------------------------------

function messagesOf(job, system) {
  const messages = [];
  if (system !== undefined) messages.push({ role: 'system', content: system });
  messages.push({
    role: 'user',
    content: [
      { type: 'image_url', image_url: { url: job.image } },
      { type: 'text', text: job.question },
    ],
  });
  return messages;
}

/**
 * One chat completion. Streamed: TTFT is the first chunk with content; latency is the whole
 * stream. Returns { ok, ms, ttftMs, text, tokens, timings } or { ok: false, why }.
 */
async function ask(server, job, { stream, system, tokens: limit = maxTokens } = {}) {
  const t0 = performance.now();
  const at = (ms) => (ms === null ? null : t0 + ms);
  const body = {
    model: server.modelId,
    temperature: 0,
    max_tokens: limit,
    messages: messagesOf(job, system),
    ...(stream && { stream: true, stream_options: { include_usage: true } }),
  };
  let retries = 0;
  try {
    const signal = AbortSignal.timeout(requestTimeoutMs);
    let res;
    for (;;) {
      try {
        res = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal,
        });
        break;
      } catch (e) {
        // A kept-alive connection the server closed as it was reused (llama-server's HTTP library
        // drops idle connections after 5 s; on a busy machine the client can pick one just then):
        // nothing was answered, and OpenAI's own client retries such a request too. Counted.
        const code = e?.cause?.code;
        if (retries >= 2 || !(code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')) throw e;
        retries++;
      }
    }
    if (res.status !== 200) {
      const text = await res.text();
      return { ok: false, ms: performance.now() - t0, retries, why: `HTTP ${res.status} ${text}` };
    }
    // llama-server counts the end-of-generation token it sampled in completion_tokens, mm does not:
    // both are counted without it.
    const generated = (n, finish) => n - (server.countsEndToken && finish === 'stop' ? 1 : 0);
    if (!stream) {
      const r = await res.json();
      const ms = performance.now() - t0;
      const text = r.choices?.[0]?.message?.content;
      if (typeof text !== 'string') return { ok: false, ms, why: 'no message content' };
      return {
        ok: true,
        ms,
        ttftMs: null,
        retries,
        text,
        tokens: generated(r.usage?.completion_tokens ?? 0, r.choices[0].finish_reason),
        timings: r.timings,
      };
    }
    let text = '';
    let ttftMs = null;
    let tokens = null;
    let promptTokens = null;
    let finish = null;
    let timings;
    const pieceAt = []; // performance.now() of every piece with content
    let done = false;
    let pending = '';
    const decoder = new TextDecoder();
    const onEvent = (data) => {
      if (data === '[DONE]') {
        done = true;
        return;
      }
      const c = JSON.parse(data);
      if (c.error) throw new Error(`stream error ${JSON.stringify(c.error)}`);
      const piece = c.choices?.[0]?.delta?.content;
      if (typeof piece === 'string' && piece.length > 0) {
        const now = performance.now();
        if (ttftMs === null) ttftMs = now - t0;
        pieceAt.push(now);
        text += piece;
      }
      if (c.choices?.[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) {
        tokens = c.usage.completion_tokens;
        promptTokens = c.usage.prompt_tokens;
      }
      if (c.timings) timings = c.timings;
    };
    for await (const chunk of res.body) {
      pending += decoder.decode(chunk, { stream: true });
      let i = pending.indexOf('\n');
      while (i >= 0) {
        const line = pending.slice(0, i).replace(/\r$/, '');
        pending = pending.slice(i + 1);
        if (line.startsWith('data:')) onEvent(line.slice(5).trim());
        i = pending.indexOf('\n');
      }
    }
    const ms = performance.now() - t0;
    if (!done) return { ok: false, ms, why: 'the stream ended without [DONE]' };
    if (tokens === null) return { ok: false, ms, why: 'no usage in the stream' };
    return {
      ok: true,
      ms,
      ttftMs: ttftMs ?? ms,
      // when the first piece and the end came (performance.now()), for the decode-phase figure
      firstAt: at(ttftMs ?? ms),
      endAt: at(ms),
      pieceAt,
      promptTokens,
      retries,
      text,
      tokens: generated(tokens, finish),
      timings,
    };
  } catch (e) {
    const cause = e?.cause ? ` (${e.cause.code ?? ''} ${e.cause.message ?? e.cause})` : '';
    return { ok: false, ms: performance.now() - t0, retries, why: `${e?.message ?? e}${cause}` };
  }
}

/** mm's scheduler counters (GET /health batch); null for llama-server. */
async function batchOf(server) {
  if (server.name !== 'mm') return null;
  return (await (await fetch(`${server.url}/health`)).json()).batch ?? null;
}

async function lagOf(server, reset) {
  if (server.name !== 'mm') return null;
  const h = await (await fetch(`${server.url}/health${reset ? '?reset_lag=1' : ''}`)).json();
  return h.event_loop ?? null;
}

/** `jobs` sent by `clients` concurrent clients; results in job order, wall time. */
async function load(server, jobs, clients, stream) {
  const results = new Array(jobs.length);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (;;) {
        const i = next++;
        if (i >= jobs.length) return;
        results[i] = await ask(server, jobs[i], { stream });
      }
    }),
  );
  return { results, wallMs: performance.now() - t0 };
}

// --- statistics --------------------------------------------------------------------------

function percentile(xs, p) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const same = (a, b) => a.trim() === b.trim();

/**
 * Aggregate decode tok/s: the tokens after each answer's first, over the time during which at
 * least one answer was between its first piece and its end (the union of those spans), so that
 * prompt processing with nothing to decode does not count. One client: its decode rate.
 */
function decodeRate(ok) {
  const spans = ok
    .filter((r) => r.firstAt !== undefined && r.firstAt !== null && r.tokens > 1)
    .map((r) => [r.firstAt, r.endAt])
    .sort((a, b) => a[0] - b[0]);
  let busy = 0;
  let end = Number.NEGATIVE_INFINITY;
  for (const [a, b] of spans) {
    if (a > end) {
      busy += b - a;
      end = b;
    } else if (b > end) {
      busy += b - end;
      end = b;
    }
  }
  const tokens = ok.reduce((n, r) => n + Math.max(0, r.tokens - 1), 0);
  return busy > 0 ? (tokens * 1000) / busy : Number.NaN;
}

function summarise(results, wallMs) {
  const ok = results.filter((r) => r?.ok);
  const tokens = ok.reduce((n, r) => n + r.tokens, 0);
  return {
    decodeTokPerS: decodeRate(ok),
    requests: results.length,
    answered: ok.length,
    errors: results
      .map((r, i) => (r?.ok ? null : `#${i}: ${r?.why ?? 'lost'}`))
      .filter((x) => x !== null),
    wallMs,
    tokens,
    retries: results.reduce((n, r) => n + (r?.retries ?? 0), 0),
    tokPerS: (tokens * 1000) / wallMs,
    ttftP50: percentile(
      ok.map((r) => r.ttftMs),
      50,
    ),
    ttftP99: percentile(
      ok.map((r) => r.ttftMs),
      99,
    ),
    latP50: percentile(
      ok.map((r) => r.ms),
      50,
    ),
    latP95: percentile(
      ok.map((r) => r.ms),
      95,
    ),
  };
}

// --- printing ----------------------------------------------------------------------------

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : Number.NaN);
const fmtRatio = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}×` : '-');

function table(title, rows) {
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  console.log(title);
  for (const [i, r] of rows.entries()) {
    console.log(
      `  ${String(r[0]).padEnd(widths[0])}  ${[1, 2, 3].map((c) => String(r[c] ?? '').padStart(widths[c])).join('  ')}`,
    );
    if (i === 0) console.log(`  ${'-'.repeat(widths.reduce((a, b) => a + b + 2, 0))}`);
  }
}

// --- scenarios ---------------------------------------------------------------------------

function tinyModels() {
  return {
    name: 'tiny-shapes (apps/demo/models/tiny-shapes)',
    model: join(tinyDir, 'tiny-shapes-llm.gguf'),
    mmproj: join(tinyDir, 'mmproj-tiny-shapes.gguf'),
    ctxPerSlot: values.ctx ? int('ctx') : 256,
    tiny: true,
  };
}

/** Distinct tiny-shapes pictures, one question each (cycling through the 13 kinds). */
function tinyJobs(n, s) {
  return tinyShapesItems(n, s).map((item, i) => {
    const q = item.questions[(i * 5) % item.questions.length];
    return {
      image: `data:image/png;base64,${Buffer.from(encodePng(item.image)).toString('base64')}`,
      question: q.question,
      answer: q.answer,
    };
  });
}

/** Distinct 336x336 pictures for the realistic shape (answers are whatever random weights say). */
function realisticJobs(n, s) {
  return Array.from({ length: n }, (_, i) => ({
    image: `data:image/png;base64,${Buffer.from(encodePng(syntheticImage(336, 336, s * 1000 + i))).toString('base64')}`,
    question: 'Describe the image.',
    answer: null,
  }));
}

/**
 * The throughput scenario shared by distinct and realistic: for each client count, each server
 * in turn (fresh start, warm-up, the load), then the "same picture after another system prompt"
 * pairs on the first count's servers.
 */
async function throughput(scenario, models, makeJobs, clientsList) {
  const nRequests = values.requests ? int('requests') : 64;
  const jobs = makeJobs(nRequests, seed);
  const warm = makeJobs(Math.max(parallel, 2), seed + 7919);
  const pairJobs = makeJobs(int('pairs'), seed + 104729);
  const systems = [
    'You are a helpful assistant.',
    'You answer questions about pictures in a few words.',
  ];
  const runs = [];
  const serial = {};
  const pairs = {};
  const lag = { idle: null };
  const argv = {};
  for (const [k, clients] of clientsList.entries()) {
    const order = k % 2 === 0 ? ['mm', 'llama-server'] : ['llama-server', 'mm'];
    const run = { clients };
    for (const name of order) {
      log(`${scenario}: ${name}, ${clients} client(s), ${jobs.length} requests...`);
      const server = await starters[name](models);
      argv[name] = server.argv;
      try {
        await load(server, warm.slice(0, Math.max(2, Math.min(clients, parallel))), clients, true);
        let idle = null;
        if (name === 'mm') {
          await lagOf(server, true);
          await new Promise((r) => setTimeout(r, 2000));
          idle = await lagOf(server, true);
        }
        const before = await batchOf(server);
        const { results, wallMs } = await load(server, jobs, clients, true);
        const busy = await lagOf(server, true);
        const after = await batchOf(server);
        const s = summarise(results, wallMs);
        // mm's steps that carried generating rows only: rows per second of their compute time
        if (before && after) {
          const rows = after.decode_only_rows - before.decode_only_rows;
          const ms = after.decode_only_ms - before.decode_only_ms;
          s.decodeOnly = {
            steps: after.decode_only_steps - before.decode_only_steps,
            rows,
            ms,
            tokPerS: ms > 0 ? (rows * 1000) / ms : Number.NaN,
          };
        }
        s.results = results;
        s.lag = busy;
        s.idleLag = idle;
        if (idle) lag.idle = idle;
        run[name] = s;
        if (k === 0) {
          serial[name] = results;
          // The same picture asked twice, after two different system prompts, one at a time.
          const rows = [];
          for (const job of pairJobs) {
            const first = await ask(server, job, { stream: true, system: systems[0] });
            const second = await ask(server, job, { stream: true, system: systems[1] });
            rows.push({ first, second });
          }
          pairs[name] = rows;
        }
      } finally {
        await server.stop();
      }
    }
    // Answers: against the other server, against the 1st count's (serial) answers, against the scene.
    const mm = run.mm.results;
    const ll = run['llama-server'].results;
    const checks = { mmVsLlama: [], mmVsSerial: [], llamaVsSerial: [], wrong: { mm: 0, ll: 0 } };
    for (let i = 0; i < jobs.length; i++) {
      const a = mm[i];
      const b = ll[i];
      if (a?.ok && b?.ok && !same(a.text, b.text))
        checks.mmVsLlama.push(
          `#${i}: mm ${JSON.stringify(a.text)} | llama ${JSON.stringify(b.text)}`,
        );
      if (k > 0) {
        const sa = serial.mm[i];
        const sb = serial['llama-server'][i];
        if (a?.ok && sa?.ok && !same(a.text, sa.text))
          checks.mmVsSerial.push(
            `#${i}: ${JSON.stringify(a.text)} vs serial ${JSON.stringify(sa.text)}`,
          );
        if (b?.ok && sb?.ok && !same(b.text, sb.text))
          checks.llamaVsSerial.push(
            `#${i}: ${JSON.stringify(b.text)} vs serial ${JSON.stringify(sb.text)}`,
          );
      }
      if (jobs[i].answer !== null) {
        if (a?.ok && !same(a.text, jobs[i].answer)) checks.wrong.mm++;
        if (b?.ok && !same(b.text, jobs[i].answer)) checks.wrong.ll++;
      }
    }
    run.checks = checks;
    runs.push(run);
  }
  return { scenario, models, requests: nRequests, runs, pairs, lag, systems, argv };
}

function printThroughput(r) {
  const first = r.runs[0];
  console.log(
    `\n== ${r.scenario}: ${r.models.name}, ${r.requests} requests with distinct pictures, --parallel ${parallel}, ${threads} threads, max_tokens ${maxTokens}, greedy, streamed`,
  );
  console.log(`   mm: mm ${r.argv.mm.join(' ')}`);
  console.log(`   llama-server: llama-server ${r.argv['llama-server'].join(' ')}`);
  for (const run of r.runs) {
    const a = run.mm;
    const b = run['llama-server'];
    const rows = [
      [`${run.clients} client(s)`, 'mm serve', 'llama-server', 'mm/llama'],
      ['answered', `${a.answered}/${a.requests}`, `${b.answered}/${b.requests}`, ''],
      ['aggregate tok/s', fmt(a.tokPerS), fmt(b.tokPerS), fmtRatio(ratio(a.tokPerS, b.tokPerS))],
      [
        'aggregate decode tok/s (while decoding)',
        fmt(a.decodeTokPerS),
        fmt(b.decodeTokPerS),
        fmtRatio(ratio(a.decodeTokPerS, b.decodeTokPerS)),
      ],
      ['TTFT p50 ms', fmt(a.ttftP50), fmt(b.ttftP50), fmtRatio(ratio(a.ttftP50, b.ttftP50))],
      ['TTFT p99 ms', fmt(a.ttftP99), fmt(b.ttftP99), fmtRatio(ratio(a.ttftP99, b.ttftP99))],
      ['latency p50 ms', fmt(a.latP50), fmt(b.latP50), fmtRatio(ratio(a.latP50, b.latP50))],
      ['latency p95 ms', fmt(a.latP95), fmt(b.latP95), fmtRatio(ratio(a.latP95, b.latP95))],
      ['tokens', String(a.tokens), String(b.tokens), ''],
      ['errors', String(a.errors.length), String(b.errors.length), ''],
      ['requests resent (connection closed)', String(a.retries), String(b.retries), ''],
    ];
    if (run !== first) {
      rows.push([
        `tok/s vs ${first.clients} client(s)`,
        fmtRatio(ratio(a.tokPerS, first.mm.tokPerS)),
        fmtRatio(ratio(b.tokPerS, first['llama-server'].tokPerS)),
        '',
      ]);
      rows.push([
        `decode tok/s vs ${first.clients} client(s)`,
        fmtRatio(ratio(a.decodeTokPerS, first.mm.decodeTokPerS)),
        fmtRatio(ratio(b.decodeTokPerS, first['llama-server'].decodeTokPerS)),
        '',
      ]);
    }
    if (a.decodeOnly) {
      const d = a.decodeOnly;
      rows.push([
        'mm decode-only steps: rows/s (steps)',
        `${fmt(d.tokPerS)} (${d.steps})`,
        '',
        run === first
          ? ''
          : `${fmtRatio(ratio(d.tokPerS, first.mm.decodeOnly?.tokPerS))} of ${first.clients}`,
      ]);
    }
    if (a.lag) {
      rows.push([
        'mm event-loop lag p99 / max ms',
        `${fmt(a.lag.p99_ms, 2)} / ${fmt(a.lag.max_ms, 2)}`,
        '',
        '',
      ]);
      rows.push([
        '  idle, before the load',
        `${fmt(a.idleLag?.p99_ms, 2)} / ${fmt(a.idleLag?.max_ms, 2)}`,
        '',
        '',
      ]);
    }
    table('', rows);
    const c = run.checks;
    const n = r.requests;
    let line = `  answers: mm = llama-server in ${Math.min(a.answered, b.answered) - c.mmVsLlama.length}/${n}`;
    if (run !== first) {
      line += `; same as ${first.clients}-client: mm ${a.answered - c.mmVsSerial.length}/${n}, llama-server ${b.answered - c.llamaVsSerial.length}/${n}`;
    }
    if (r.models.tiny)
      line += `; right for the scene: mm ${a.answered - c.wrong.mm}/${n}, llama-server ${b.answered - c.wrong.ll}/${n}`;
    console.log(line);
    for (const m of c.mmVsLlama.slice(0, 8)) console.log(`    differ ${m}`);
    for (const m of c.mmVsSerial.slice(0, 8)) console.log(`    mm not serial ${m}`);
    for (const m of c.llamaVsSerial.slice(0, 8)) console.log(`    llama-server not serial ${m}`);
    for (const e of a.errors.slice(0, 8)) console.log(`    mm lost ${e}`);
    for (const e of b.errors.slice(0, 8)) console.log(`    llama-server lost ${e}`);
  }
  // Same picture after another system prompt.
  const p = r.pairs;
  const ttft = (name, which) =>
    median(
      p[name]
        .map((x) => x[which])
        .filter((x) => x.ok)
        .map((x) => x.ttftMs),
    );
  const enc = (name, which) =>
    median(
      p[name]
        .map((x) => x[which])
        .filter((x) => x.ok && x.timings)
        .map((x) => x.timings.encode_ms ?? Number.NaN),
    );
  const hits = p.mm.filter(
    (x) => x.second.ok && (x.second.timings?.image_cache_hits ?? 0) > 0,
  ).length;
  const promptN = (which) =>
    median(
      p['llama-server']
        .map((x) => x[which])
        .filter((x) => x.ok && x.timings)
        .map((x) => x.timings.prompt_n ?? Number.NaN),
    );
  const cacheN = median(
    p['llama-server']
      .map((x) => x.second)
      .filter((x) => x.ok && x.timings)
      .map((x) => x.timings.cache_n ?? Number.NaN),
  );
  const lost = [...p.mm, ...p['llama-server']]
    .flatMap((x) => [x.first, x.second])
    .filter((x) => !x.ok);
  const k = p.mm.length;
  table(
    `  same picture after another system prompt (${k} pictures, 1 client, ${r.runs[0].clients}-client servers, medians)`,
    [
      ['', 'mm serve', 'llama-server', 'mm/llama'],
      [
        'TTFT, 1st ask ms',
        fmt(ttft('mm', 'first')),
        fmt(ttft('llama-server', 'first')),
        fmtRatio(ratio(ttft('mm', 'first'), ttft('llama-server', 'first'))),
      ],
      [
        'TTFT, 2nd ask ms',
        fmt(ttft('mm', 'second')),
        fmt(ttft('llama-server', 'second')),
        fmtRatio(ratio(ttft('mm', 'second'), ttft('llama-server', 'second'))),
      ],
      [
        '2nd / 1st',
        fmtRatio(ratio(ttft('mm', 'second'), ttft('mm', 'first'))),
        fmtRatio(ratio(ttft('llama-server', 'second'), ttft('llama-server', 'first'))),
        '',
      ],
      [
        'encode ms, 1st / 2nd (mm timings)',
        `${fmt(enc('mm', 'first'), 2)} / ${fmt(enc('mm', 'second'), 2)}`,
        '',
        '',
      ],
      ['2nd asks with an image cache hit (mm)', `${hits}/${k}`, '', ''],
      [
        'prompt tokens evaluated, 1st / 2nd (llama)',
        '',
        `${fmt(promptN('first'), 0)} / ${fmt(promptN('second'), 0)}`,
        '',
      ],
      ['prompt tokens reused on the 2nd (llama cache_n)', '', fmt(cacheN, 0), ''],
    ],
  );
  for (const x of lost) console.log(`    lost ${x.why}`);
}

async function repeat() {
  const models = tinyModels();
  const n = int('repeats');
  const [job] = tinyJobs(1, seed + 31337);
  log(`repeat: starting both servers (--parallel ${parallel}, ${threads} threads)...`);
  const servers = { mm: await startMm(models), 'llama-server': await startLlama(models) };
  try {
    for (const s of Object.values(servers)) {
      await ask(s, job);
      await ask(s, job);
    }
    await lagOf(servers.mm, true);
    const out = { mm: [], 'llama-server': [] };
    for (let i = 0; i < n; i++) {
      const order = i % 2 === 0 ? ['mm', 'llama-server'] : ['llama-server', 'mm'];
      for (const name of order) out[name].push(await ask(servers[name], job));
    }
    const lag = await lagOf(servers.mm, true);
    return {
      scenario: 'repeat',
      models,
      job: { question: job.question, answer: job.answer },
      n,
      out,
      lag,
    };
  } finally {
    await stopAll();
  }
}

function printRepeat(r) {
  const a = r.out.mm.filter((x) => x.ok).map((x) => x.ms);
  const b = r.out['llama-server'].filter((x) => x.ok).map((x) => x.ms);
  const [ma, mb] = [median(a), median(b)];
  const [wa, wb] = [Math.max(...a), Math.max(...b)];
  console.log(
    `\n== repeat: ${r.models.name}, one client, the same picture and question ${r.n}× per server, alternating request by request (ABBA), not streamed, --parallel ${parallel}, ${threads} threads, max_tokens ${maxTokens}`,
  );
  table('', [
    ['latency ms', 'mm serve', 'llama-server', 'mm/llama'],
    ['median', fmt(ma), fmt(mb), fmtRatio(ratio(ma, mb))],
    [
      'min',
      fmt(Math.min(...a)),
      fmt(Math.min(...b)),
      fmtRatio(ratio(Math.min(...a), Math.min(...b))),
    ],
    [
      'p95',
      fmt(percentile(a, 95)),
      fmt(percentile(b, 95)),
      fmtRatio(ratio(percentile(a, 95), percentile(b, 95))),
    ],
    ['worst', fmt(wa), fmt(wb), fmtRatio(ratio(wa, wb))],
    ['answered', `${a.length}/${r.n}`, `${b.length}/${r.n}`, ''],
    [
      'requests resent (connection closed)',
      String(r.out.mm.reduce((n, x) => n + (x.retries ?? 0), 0)),
      String(r.out['llama-server'].reduce((n, x) => n + (x.retries ?? 0), 0)),
      '',
    ],
    [
      'mm event-loop lag p99 / max ms',
      r.lag ? `${fmt(r.lag.p99_ms, 2)} / ${fmt(r.lag.max_ms, 2)}` : '-',
      '',
      '',
    ],
  ]);
  const texts = new Set(
    [...r.out.mm, ...r.out['llama-server']].filter((x) => x.ok).map((x) => x.text.trim()),
  );
  console.log(
    `  answers: ${texts.size === 1 ? 'all identical' : `${texts.size} different`} (${[...texts].map((t) => JSON.stringify(t)).join(', ')}; the scene says ${JSON.stringify(r.job.answer)})`,
  );
  console.log(
    `  issue 14 targets: median ≤ 1.2× llama-server's: ${ma <= 1.2 * mb ? 'yes' : 'no'}; worst ≤ 2× llama-server's worst + 20 ms (${fmt(2 * wb + 20)}): ${wa <= 2 * wb + 20 ? 'yes' : 'no'}`,
  );
  for (const x of [...r.out.mm, ...r.out['llama-server']].filter((x) => !x.ok))
    console.log(`    lost ${x.why}`);
}

/**
 * Batched decode, per llama-batched-bench: over the time when all of `results`' streams were
 * generating (from the last first piece to the first last piece), the tokens that streamed. A piece
 * is usually one token; each stream's pieces are weighted by its tokens per piece (a token that ends
 * inside a UTF-8 character streams with the next one).
 */
function together(results) {
  const ok = results.filter((r) => r?.ok && r.pieceAt.length > 1 && r.tokens > 1);
  if (ok.length !== results.length) return null;
  const start = Math.max(...ok.map((r) => r.pieceAt[0]));
  const end = Math.min(...ok.map((r) => r.pieceAt[r.pieceAt.length - 1]));
  let tokens = 0;
  if (end > start) {
    for (const r of ok) {
      const inside = r.pieceAt.filter((t) => t > start && t <= end).length;
      tokens += (inside * (r.tokens - 1)) / (r.pieceAt.length - 1);
    }
  }
  return {
    windowMs: Math.max(0, end - start),
    tokens,
    tokPerS: end > start ? (tokens * 1000) / (end - start) : Number.NaN,
  };
}

/**
 * llama.cpp's own batched decode on the same model file (test-only build): llama-batched-bench with
 * a shared `npp`-token prompt, `ntg` tokens per sequence, for each count in `npl`; S_TG (generated
 * tokens over the decode time, every sequence decoding from the first step) per count.
 */
async function batchedBench(model, npp, ntg, npl) {
  const argv = ['-m', model, '-c', String(Math.max(...npl) * (npp + ntg + 16)), '-b', '2048'];
  argv.push('-ub', '512', '-npp', String(npp), '-ntg', String(ntg), '-npl', npl.join(','), '-pps');
  argv.push('-t', String(threads), '-tb', String(threads));
  const out = await new Promise((resolve, reject) => {
    const child = spawn(oracleTool('llama-batched-bench'), argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
    });
    child.stderr.resume();
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`llama-batched-bench exited ${code}`)),
    );
  });
  const rates = {};
  for (const line of out.split('\n')) {
    // | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
    const cols = line.split('|').map((c) => c.trim());
    if (cols.length < 10 || !/^\d+$/.test(cols[3] ?? '')) continue;
    rates[Number(cols[3])] = Number(cols[8]);
  }
  return { argv, rates };
}

/**
 * The decode scenario: mm serve (fresh, warmed up), --rounds rounds; a round sends each count of
 * --clients requests at once, then runs llama-batched-bench on the same model for those counts.
 */
async function decodeScenario(models, clientsList) {
  const nTokens = maxTokensGiven ? maxTokens : 64;
  const rounds = int('rounds');
  const top = Math.max(...clientsList);
  log(`decode: starting mm serve (--parallel ${parallel}, ${threads} threads)...`);
  const server = await startMm(models);
  try {
    // every slot used once, so that no first-use cost lands in a round
    const warm = models.makeJobs(parallel, seed + 7919);
    await Promise.all(warm.map((j) => ask(server, j, { stream: true, tokens: 4 })));
    const out = clientsList.map((clients) => ({ clients, mm: [], bench: [] }));
    let bench = null;
    let npp = 0;
    const runBench = async (round) => {
      log(`decode: llama-batched-bench, round ${round + 1}/${rounds}...`);
      bench = await batchedBench(
        models.model,
        npp || 600,
        nTokens,
        out.map((r) => r.clients),
      );
      for (const row of out) row.bench.push(bench.rates[row.clients] ?? Number.NaN);
    };
    // llama-batched-bench goes after mm in even rounds and before it in odd ones (after the first
    // round, which gives it mm's prompt length): a slow spell of the machine hits both alike
    for (let round = 0; round < rounds; round++) {
      const benchFirst = round % 2 === 1;
      if (benchFirst) await runBench(round);
      const jobs = models.makeJobs(top, seed + 1 + round);
      for (const row of out) {
        log(`decode: mm, ${row.clients} at once, round ${round + 1}/${rounds}...`);
        const before = await batchOf(server);
        const results = await Promise.all(
          jobs.slice(0, row.clients).map((j) => ask(server, j, { stream: true, tokens: nTokens })),
        );
        const after = await batchOf(server);
        const d = (k) => after[k] - before[k];
        row.mm.push({
          together: together(results),
          decodeOnly: (d('decode_only_rows') * 1000) / d('decode_only_ms'),
          mixedSteps: d('mixed_steps'),
          // each answer's longest pause between two pieces once it streams
          pauses: results
            .filter((r) => r?.ok && r.pieceAt.length > 1)
            .map((r) => Math.max(...r.pieceAt.slice(1).map((t, i) => t - r.pieceAt[i]))),
          texts: results.map((r) => (r?.ok ? r.text : null)),
          errors: results.filter((r) => !r?.ok).map((r) => r?.why ?? 'lost'),
        });
        // the prompt's length (picture rows included), for llama-batched-bench's
        npp = results[0]?.promptTokens ?? npp;
      }
      if (!benchFirst) await runBench(round);
    }
    return {
      scenario: 'decode',
      models,
      nTokens,
      rounds,
      out,
      argv: { mm: server.argv, bench: bench?.argv ?? [] },
    };
  } finally {
    await stopAll();
  }
}

function printDecode(r) {
  console.log(
    `\n== decode: ${r.models.name}, N requests with distinct pictures sent at once to mm serve, then llama.cpp's llama-batched-bench on the same model, ${r.rounds} rounds, --parallel ${parallel}, ${threads} threads, max_tokens ${r.nTokens}, greedy, streamed`,
  );
  console.log(`   mm: mm ${r.argv.mm.join(' ')}`);
  console.log(`   llama.cpp: llama-batched-bench ${r.argv.bench.join(' ')}`);
  console.log(
    '   mm: tokens streamed while all N answers were generating, over that window; llama-batched-bench: S_TG (N sequences decoding together from the first step). Medians of the rounds [min-max]',
  );
  const spread = (xs) => `${fmt(median(xs))} [${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))}]`;
  const mmRate = (row) => row.mm.map((x) => x.together?.tokPerS ?? Number.NaN);
  const first = r.out[0];
  const rows = [['N at once', 'mm serve', 'llama-batched-bench', 'mm/llama']];
  for (const row of r.out) {
    const a = mmRate(row);
    rows.push([
      `${row.clients}: decode tok/s`,
      spread(a),
      spread(row.bench),
      fmtRatio(ratio(median(a), median(row.bench))),
    ]);
    if (row !== first) {
      rows.push([
        `   vs ${first.clients} at once`,
        fmtRatio(ratio(median(a), median(mmRate(first)))),
        fmtRatio(ratio(median(row.bench), median(first.bench))),
        '',
      ]);
    }
    rows.push([
      '   mm window ms; decode-only rows/s; mixed steps',
      `${fmt(median(row.mm.map((x) => x.together?.windowMs ?? Number.NaN)))}; ${fmt(median(row.mm.map((x) => x.decodeOnly)))}; ${fmt(median(row.mm.map((x) => x.mixedSteps)), 0)}`,
      '',
      '',
    ]);
  }
  for (const row of r.out) {
    const p = row.mm.flatMap((x) => x.pauses);
    rows.push([
      `${row.clients}: mm's longest pause in an answer ms, median / max`,
      `${fmt(median(p))} / ${fmt(Math.max(...p))}`,
      '',
      '',
    ]);
  }
  table('', rows);
  // mm's answers at N against its answers at the first N (same pictures, same round)
  let same = 0;
  let total = 0;
  const lost = [];
  for (const row of r.out) {
    for (const [k, x] of row.mm.entries()) {
      lost.push(...x.errors);
      if (row === first) continue;
      x.texts.forEach((t, i) => {
        const f = first.mm[k]?.texts[i];
        if (t !== null && f !== undefined && f !== null) {
          total++;
          if (t.trim() === f.trim()) same++;
        }
      });
    }
  }
  console.log(`  answers: mm at N = mm at ${first.clients} (same picture) in ${same}/${total}`);
  for (const e of lost.slice(0, 8)) console.log(`    mm lost ${e}`);
}

async function realisticModels() {
  log('realistic: making the models once into benchDir() (minutes the first time)...');
  const weights = weightsOption(values);
  const { model, mmproj } = await realisticPair(weights);
  return {
    name: `CLIP ViT-L/14-336 mmproj (projection ${BENCH_LLAMA_1B.nEmbd}) + BENCH_LLAMA_1B (16 layers, n_embd 2048), random ${weights === 'F16' ? 'F16' : 'F16 encoder, Q8_0 llama'}`,
    model,
    mmproj,
    ctxPerSlot: values.ctx ? int('ctx') : 1024,
    makeJobs: realisticJobs,
    tiny: false,
  };
}

// --- main --------------------------------------------------------------------------------

const clientsOf = (fallback) =>
  (values.clients ?? fallback).split(',').map((c) => {
    const n = Number(c);
    if (!Number.isInteger(n) || n < 1) {
      console.error(
        `--clients takes a comma-separated list of integers >= 1, got '${values.clients}'`,
      );
      process.exit(2);
    }
    return n;
  });

const report = { threads, parallel, maxTokens, cpu: cpus()[0]?.model ?? 'unknown', scenarios: [] };
let failed = false;
try {
  if (scenarios.has('distinct')) {
    const r = await throughput('distinct', tinyModels(), tinyJobs, clientsOf('1,4,8'));
    report.scenarios.push(r);
  }
  if (scenarios.has('repeat')) report.scenarios.push(await repeat());
  if (scenarios.has('realistic')) {
    const r = await throughput(
      'realistic',
      await realisticModels(),
      realisticJobs,
      clientsOf('1,8'),
    );
    report.scenarios.push(r);
  }
  if (scenarios.has('decode')) {
    report.scenarios.push(await decodeScenario(await realisticModels(), clientsOf('1,8')));
  }
} finally {
  await stopAll();
}

for (const r of report.scenarios) {
  if (r.scenario === 'repeat') {
    if ([...r.out.mm, ...r.out['llama-server']].some((x) => !x.ok)) failed = true;
    continue;
  }
  if (r.scenario === 'decode') {
    for (const row of r.out) {
      if (row.mm.some((x) => x.errors.length > 0)) failed = true;
    }
    continue;
  }
  for (const run of r.runs) {
    if (run.mm.errors.length > 0 || run['llama-server'].errors.length > 0) failed = true;
    if (run.checks.mmVsSerial.length > 0) failed = true;
    if (r.models.tiny && run.checks.mmVsLlama.length > 0) failed = true;
  }
  const p = r.pairs;
  if ([...p.mm, ...p['llama-server']].some((x) => !x.first.ok || !x.second.ok)) failed = true;
}

if (values.json) {
  // Per-request results are kept out of the JSON except texts of differing answers (in checks).
  const strip = (r) =>
    r.scenario === 'decode'
      ? r
      : r.scenario === 'repeat'
        ? {
            ...r,
            out: Object.fromEntries(
              Object.entries(r.out).map(([k, v]) => [
                k,
                v.map(({ ok, ms, text, why }) => ({ ok, ms, text, why })),
              ]),
            ),
          }
        : {
            ...r,
            runs: r.runs.map((run) => ({
              ...run,
              mm: { ...run.mm, results: undefined },
              'llama-server': { ...run['llama-server'], results: undefined },
            })),
          };
  console.log(
    JSON.stringify({ ...report, scenarios: report.scenarios.map(strip), failed }, null, 2),
  );
} else {
  console.log(
    `mm serve vs llama-server (llama.cpp from the vendored tree, test-only build), loopback, CPU ${report.cpu}`,
  );
  const printers = { repeat: printRepeat, decode: printDecode };
  for (const r of report.scenarios) (printers[r.scenario] ?? printThroughput)(r);
  console.log(failed ? '\nFAILED: answers lost or different (see above)' : '\nok: no answer lost');
}
clearTimeout(deadline);
process.exit(failed ? 1 : 0);
