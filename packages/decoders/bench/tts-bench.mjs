#!/usr/bin/env node
// Side-by-side speed of mm's text-to-speech against llama.cpp's (BENCH.md), for Qwen3-TTS and
// Pocket TTS:
//
// 1. whole runs: @mm/core's SpeechModel (talker through @mm/backbone-gguf + @mm/decoders' output
//    projector and audio decoder, in this process, loaded once) against llama-tts (llama.cpp's own
//    tool: libllama + libmtmd's gen pipeline, a child process per run, its own "timings:" line read,
//    so its model load and voice encoding are not counted; ours gets the voice encoded beforehand),
//    same text, seed, frame budget, voice and threads, interleaved
//    A B B A after one warm-up each. Prints frames/s, the real-time factor (seconds of audio per
//    second of compute) and the ratios, and checks that both wrote the same WAV bytes.
// 2. per stage: native/tools/gen-bench.cpp (mm-bench-gen): GEN_CODE per frame, GEN_WAV per window
//    and the speaker encoder, ours against mtmd_gen_audio_process in one process (same threads).
//
//   npm run bench -w @mm/decoders -- [--pipelines qwen3tts,pockettts] [--size realistic|tiny]
//                                    [--threads 2] [--reps 5] [--frames 24] [--stage-reps 10]
//                                    [--no-whole] [--no-stages] [--json]
//
// --size realistic (default): the real models' shapes for the mmproj parts (REALISTIC_QWEN3TTS,
// REALISTIC_POCKETTTS in @mm/testing: random F32 weights, a 2-layer talker of the real width),
// written once into the bench cache outside the repo (benchDir()). --size tiny: the test fixtures
// (fixed overheads only).
//
// Threads: SpeechModel runs every part on --threads; llama-tts runs its talker on -t --threads and
// libmtmd's gen graphs on mtmd_context_params_default()'s 4 threads (tools/tts/tts.cpp never sets
// them). The per-stage table gives both sides the same --threads.
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs, promisify } from 'node:util';
// @mm/core composes @mm/decoders (it depends on this package): resolved from the workspace root, not
// a dependency here (that would be a cycle).
import { SpeechModel } from '@mm/core';
import { toWav } from '@mm/decoders';
import { systemInfo } from '@mm/native';
import {
  benchPocketTtsPair,
  benchQwen3TtsPair,
  llamaTts,
  oracleTool,
  synthWavFixture,
  tinyPocketTtsFixture,
  tinyQwen3TtsPair,
} from '@mm/testing';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    pipelines: { type: 'string', default: 'qwen3tts,pockettts' },
    size: { type: 'string', default: 'realistic' },
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '5' },
    frames: { type: 'string', default: '24' },
    'stage-reps': { type: 'string', default: '10' },
    'no-whole': { type: 'boolean', default: false },
    'no-stages': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    text: { type: 'string', default: 'Hello world, this is a test of speech generation.' },
    seed: { type: 'string', default: '42' },
  },
});
const threads = Number(values.threads);
const reps = Math.max(1, Number(values.reps));
const maxFrames = Math.max(1, Number(values.frames));
const seed = Number(values.seed);
const log = (s) => process.stderr.write(`${s}\n`);
if (values.size !== 'realistic' && values.size !== 'tiny') {
  throw new Error(`--size takes realistic or tiny, got ${values.size}`);
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? 0 : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const series = (v) => ({ median: median(v), min: Math.min(...v), max: Math.max(...v) });

async function pairFor(pipeline) {
  if (pipeline === 'qwen3tts') {
    return values.size === 'tiny' ? tinyQwen3TtsPair() : benchQwen3TtsPair();
  }
  if (pipeline === 'pockettts') {
    return values.size === 'tiny' ? tinyPocketTtsFixture({ eosBias: -40 }) : benchPocketTtsPair();
  }
  throw new Error(`unknown pipeline ${pipeline} (qwen3tts, pockettts)`);
}

// "timings: prompt eval 0.12s + generation 1.23s + vocoder 0.45s = total 1.80s", "generated N frames"
function parseLlamaTts(stderr) {
  const t =
    /timings: prompt eval ([\d.]+)s \+ generation ([\d.]+)s \+ vocoder ([\d.]+)s = total ([\d.]+)s/.exec(
      stderr,
    );
  const f = /generated (\d+) frames/.exec(stderr);
  if (!t || !f) throw new Error(`llama-tts printed no timings:\n${stderr.slice(-2000)}`);
  return { totalMs: Number(t[4]) * 1000, frames: Number(f[1]) };
}

async function whole(pipeline, pair, voice) {
  log(
    `[bench] ${pipeline}: SpeechModel vs llama-tts, ${threads} threads, ${maxFrames} frames max, ${reps} reps...`,
  );
  const model = await SpeechModel.load({ model: pair.model, mmproj: pair.mmproj, threads });
  // encoded once: llama-tts encodes its --tts-speaker-file before its timers start
  const rows = await model.encodeVoice(voice);
  const ours = { ms: [], frames: 0, seconds: 0 };
  const ref = { ms: [], wallMs: [], frames: 0, seconds: 0 };
  let identical = true;
  let maxSampleDiff = 0;
  const runOurs = async (record) => {
    const r = await model.speakAll(values.text, { voice: rows, maxFrames, sampling: { seed } });
    if (record) ours.ms.push(r.totalMs);
    ours.frames = r.frames;
    ours.seconds = r.pcm.length / r.sampleRate;
    return toWav(r.pcm, r.sampleRate);
  };
  const runRef = async (record) => {
    const r = await llamaTts({
      model: pair.model,
      mmproj: pair.mmproj,
      prompt: values.text,
      voice,
      seed,
      maxFrames,
      threads,
    });
    const t = parseLlamaTts(r.stderr);
    if (record) {
      ref.ms.push(t.totalMs);
      ref.wallMs.push(r.wallMs);
    }
    ref.frames = t.frames;
    ref.seconds = r.pcm16.length / r.sampleRate;
    return r.wav;
  };
  const check = (a, b) => {
    if (!Buffer.from(a).equals(b)) identical = false;
    const n = Math.min(a.length, b.length);
    const da = Buffer.from(a);
    for (let i = 44; i + 1 < n; i += 2) {
      maxSampleDiff = Math.max(maxSampleDiff, Math.abs(da.readInt16LE(i) - b.readInt16LE(i)));
    }
    if (a.length !== b.length) maxSampleDiff = Number.POSITIVE_INFINITY;
  };
  try {
    check(await runOurs(false), await runRef(false));
    for (let r = 0; r < reps; r++) {
      if (r % 2 === 0) check(await runOurs(true), await runRef(true));
      else {
        const b = await runRef(true);
        check(await runOurs(true), b);
      }
    }
  } finally {
    model.dispose();
  }
  const o = series(ours.ms);
  const f = series(ref.ms);
  return {
    frames: ours.frames,
    refFrames: ref.frames,
    audioSeconds: ours.seconds,
    ours: {
      ms: o,
      framesPerSecond: (ours.frames * 1000) / o.median,
      realTimeFactor: (ours.seconds * 1000) / o.median,
    },
    ref: {
      ms: f,
      processWallMs: series(ref.wallMs),
      framesPerSecond: (ref.frames * 1000) / f.median,
      realTimeFactor: (ref.seconds * 1000) / f.median,
    },
    ratio: o.median / f.median,
    pairRatio: series(ours.ms.map((x, i) => x / ref.ms[i])),
    wavIdentical: identical,
    maxSampleDiff,
  };
}

async function stages(pair) {
  const args = ['--model', pair.model, '--mmproj', pair.mmproj, '-t', String(threads)];
  args.push('-n', values['stage-reps'], '--json');
  log(`[bench]   = ${oracleTool('mm-bench-gen')} ${args.join(' ')}`);
  const { stdout } = await run(oracleTool('mm-bench-gen'), args, { maxBuffer: 1 << 24 });
  return JSON.parse(stdout);
}

const voice = await synthWavFixture(3, { sampleRate: 24000 });
const results = [];
for (const pipeline of values.pipelines.split(',')) {
  log(`[bench] making the ${values.size} ${pipeline} pair (once, cached)...`);
  const pair = await pairFor(pipeline);
  const r = { pipeline, model: pair.model, mmproj: pair.mmproj };
  if (!values['no-whole']) r.whole = await whole(pipeline, pair, voice);
  if (!values['no-stages']) r.stages = await stages(pair);
  results.push(r);
}

const si = systemInfo();
const load = loadavg();
if (values.json) {
  console.log(
    JSON.stringify(
      {
        date: new Date().toISOString(),
        cpu: si.cpuModel,
        hardwareThreads: si.hardwareThreads,
        llamaCommit: si.llamaCommit,
        loadAverage: load,
        threads,
        size: values.size,
        text: values.text,
        seed,
        maxFrames,
        results,
      },
      null,
      2,
    ),
  );
} else {
  const f = (s, d = 1) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  console.log(
    `mm speech bench, ${new Date().toISOString().slice(0, 10)}, CPU ${si.cpuModel} (${si.hardwareThreads} threads), llama.cpp ${si.llamaCommit.slice(0, 8)}, ${threads} threads, ${values.size} shapes, load average ${load.map((x) => x.toFixed(2)).join(' ')}`,
  );
  console.log(
    'ms, median (min–max); ratio = ours / reference of the medians (< 1: ours is faster)\n',
  );
  if (results.some((r) => r.whole)) {
    console.log(
      `Whole runs ("${values.text}", seed ${seed}, at most ${maxFrames} frames, 3 s voice): SpeechModel vs llama-tts (its timings line: prompt + generation + vocoder)\n`,
    );
    console.log(
      '| pipeline | frames | audio s | ours ms | llama-tts ms | ratio | per-pair ratio | ours frames/s | llama-tts frames/s | ours RTF | llama-tts RTF | same WAV |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const { pipeline, whole: w } of results) {
      if (!w) continue;
      console.log(
        `| ${pipeline} | ${w.frames}${w.refFrames !== w.frames ? ` (llama-tts ${w.refFrames})` : ''} | ${w.audioSeconds.toFixed(2)} ` +
          `| ${f(w.ours.ms, 0)} | ${f(w.ref.ms, 0)} | **${w.ratio.toFixed(3)}** | ${f(w.pairRatio, 3)} ` +
          `| ${w.ours.framesPerSecond.toFixed(2)} | ${w.ref.framesPerSecond.toFixed(2)} ` +
          `| ${w.ours.realTimeFactor.toFixed(3)} | ${w.ref.realTimeFactor.toFixed(3)} ` +
          `| ${w.wavIdentical ? 'yes' : `no (max sample diff ${w.maxSampleDiff})`} |`,
      );
    }
    console.log('');
  }
  if (results.some((r) => r.stages)) {
    console.log(
      'Per stage (mm-bench-gen: ours vs mtmd_gen_audio_process in one process, same threads)\n',
    );
    console.log(
      '| pipeline | stage | ours ms | libmtmd ms | ratio | per-pair ratio | ours rate | libmtmd rate | parity |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const { pipeline, stages: s } of results) {
      if (!s) continue;
      for (const [name, st] of Object.entries(s.stages)) {
        const label =
          name === 'code'
            ? 'GEN_CODE, per frame'
            : name === 'wav'
              ? `GEN_WAV, per ${s.wavFrames}-frame window`
              : `speaker encoder, ${s.speakerSeconds} s`;
        const rate = (ms) =>
          name === 'code'
            ? `${(1000 / ms).toFixed(1)} frames/s`
            : name === 'wav'
              ? `RTF ${((s.windowSeconds * 1000) / ms).toFixed(2)}`
              : '';
        const parity =
          name === 'code'
            ? `codes ${st.codesEqual ? 'equal' : 'DIFFER'}, max abs diff ${st.maxAbsDiff}, embd ${st.embdMaxAbsDiff}`
            : `max abs diff ${st.maxAbsDiff}`;
        console.log(
          `| ${pipeline} | ${label} | ${f(st.oursMs, 2)} | ${f(st.refMs, 2)} | **${st.ratio.toFixed(3)}** ` +
            `| ${f(st.pairRatio, 3)} | ${rate(st.oursMs.median)} | ${rate(st.refMs.median)} | ${parity} (${st.calls} calls) |`,
        );
      }
      console.log(`\n${pipeline} shapes: ${s.shape}`);
    }
  }
}
