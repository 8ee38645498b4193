import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadImage, MultimodalModel } from '@mm/core';
import { ErrorCode, MmError } from '@mm/errors';
import { systemInfo } from '@mm/native';
import { inspectFused, inspectMmproj } from '@mm/projectors';
import { type CliIo, ExitCode, UsageError } from '../io.js';
import { bundledModel } from '../model-options.js';
import { benchAudioHelp, runAudioBench } from './bench-audio.js';

const exec = promisify(execFile);

export const benchHelp = `mm bench [-m <model.gguf> --mmproj <mmproj.gguf> --image <file>] [-p <question>] [options]
mm bench --audio <file> -m <model.gguf> --mmproj <mmproj.gguf> [options]

Runs mm and llama.cpp's own code side by side on the same model, image, question and threads,
interleaved (A B A B ...) after one warm-up each, and prints medians with ours/reference ratios:
image encode (encoder + projector, vs libmtmd in one process), prefill, decode, time to first
token, peak RSS (fresh processes), the time to first token of a second question about the same
image (served from the embedding and KV caches) and the event-loop lag while streaming, each with
the spread (min–max) of its reps. llama-mtmd-cli's prompt-eval timer starts once it has read and
decoded the file and tokenized the prompt: ours is timed from decoded pixels alike (template,
tokenizing and preprocessing still counted), and from the file on a row of its own; its eval
timer counts llama_decode only, and so does the decode row (the steps' compute), with sampling and
the hand-over to JS on a row of its own.
Any family mm runs with its own graphs (mlp, mlp_norm, ldp, ldpv2 with or without LLaVA-1.6's
pinpoints, qwen2vl_merger, qwen2.5vl_merger, gemma3, idefics3, resampler); a picture that gives
several chunks (tiles, slices), or a graph sized by the picture (Qwen-VL), is encoded whole on both
sides. Files on the fused path (libmtmd's own encoder + projector) have nothing of mm's to
compare. Defaults: the bundled tiny-shapes model and its first sample. Needs the test-only
reference tools: npm run build:oracle -w @mm/native.
  -t, --threads <n>    threads for both sides (default: all cores but one)
  -g, --n-gpu-layers <n|all>
                       backbone layers on the GPU for both sides (llama-mtmd-cli's -ngl)
                       (default 0: everything on the CPU, also in a GPU build); with layers on
                       the GPU, both sides' encoder and projector go there too, unless
                       MM_OWN_GRAPHS_GPU=0 keeps them on the CPU on both sides (llama-mtmd-cli
                       then gets --no-mmproj-offload)
  -r, --reps <n>       repetitions, at least 10 (default 10)
      --json           the same figures as JSON

${benchAudioHelp}`;

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..', '..');
const toolsDir = join(repo, 'native', 'build', 'bin');

export function tool(name: string): string {
  const p = join(toolsDir, name);
  if (!existsSync(p)) {
    throw new MmError(
      ErrorCode.MM_FILE_NOT_FOUND,
      `${p} is missing: mm bench compares against llama.cpp's own tools; build them with \`npm run build:oracle -w @mm/native\``,
    );
  }
  return p;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? (s[m] as number)
      : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

interface RefRun {
  encodeMs: number;
  imageDecodeMs: number;
  promptEvalMs: number;
  decodeTps: number;
  text: string;
}

function parseMtmdTimings(stdout: string, stderr: string): RefRun {
  const num = (re: RegExp) => {
    const m = re.exec(stderr);
    if (!m) throw new Error(`llama-mtmd-cli output lacks ${re}`);
    return Number(m[1]);
  };
  // every batch of the image span (whole milliseconds, as llama-mtmd-cli logs them)
  const decoded = [...stderr.matchAll(/image decoded \(batch \d+\/\d+\) in (\d+) ms/g)];
  if (decoded.length === 0) throw new Error('llama-mtmd-cli output lacks its image decode line');
  return {
    encodeMs: num(/mtmd batch encoding done in (\d+) ms/),
    imageDecodeMs: decoded.reduce((sum, m) => sum + Number(m[1]), 0),
    promptEvalMs: num(/prompt eval time =\s+([\d.]+) ms/),
    // ": eval time", not ": prompt eval time"
    decodeTps: num(/:\s+eval time =.*?([\d.]+) tokens per second/),
    text: stdout.trim(),
  };
}

/**
 * mm bench compares mm's own encoder and projector graphs with libmtmd's: a file on the fused path
 * (libmtmd's own graphs, the long tail) has nothing of mm's to compare, which is said plainly.
 */
async function checkOwnGraphs(mmproj: string): Promise<void> {
  try {
    await inspectMmproj(mmproj);
  } catch (e) {
    if (!MmError.isInstance(e) || e.code !== ErrorCode.MM_UNSUPPORTED_FAMILY) throw e;
    const fused = await inspectFused(mmproj); // MM_UNSUPPORTED_FAMILY when libmtmd has none either
    throw new MmError(
      ErrorCode.MM_UNSUPPORTED_FAMILY,
      `mm bench compares mm's own encoder and projector graphs with libmtmd's; projector type '${fused.projectorType}' runs on libmtmd's own graphs (the fused path), so there is nothing of mm's to compare (mm run, chat and serve take it)`,
    );
  }
}

export async function runBench(io: CliIo, values: Record<string, unknown>): Promise<number> {
  if (values.audio !== undefined) return runAudioBench(io, values, tool);
  const v = values as Record<string, string | undefined>;
  const b = v.model ? undefined : bundledModel();
  const model = v.model ?? (b?.model as string);
  const mmproj = v.mmproj ?? b?.mmproj;
  const image =
    (values.image as string[] | undefined)?.[0] ??
    (b ? join(b.samples, 'sample_000.png') : undefined);
  if (!mmproj || !image)
    throw new UsageError(`--mmproj and --image are needed with -m\n\n${benchHelp}`);
  const q1 = v.prompt ?? 'Describe the image.';
  const q2 = 'What color is the shape?';
  // One core stays free for the JS thread (and the OS): on small machines this matters more than a
  // compute thread (ggml's threads spin-wait and suffer from any neighbour).
  const threads = Number(v.threads ?? Math.max(1, availableParallelism() - 1));
  const reps = Math.max(10, Number(v.reps ?? 10));
  if (!Number.isInteger(threads) || threads < 1)
    throw new UsageError('--threads must be an integer >= 1');
  const g = v['n-gpu-layers'];
  const gpuLayers: number | 'all' = g === undefined ? 0 : g === 'all' ? 'all' : Number(g);
  if (gpuLayers !== 'all' && (!Number.isInteger(gpuLayers) || gpuLayers < 0))
    throw new UsageError("--n-gpu-layers must be an integer >= 0 or 'all'");
  const gpu = gpuLayers !== 0;
  // mm's own graphs go to the GPU in a GPU build unless MM_OWN_GRAPHS_GPU=0 (native
  // src/graph/runtime.cpp): libmtmd's encoder is placed alike
  const encodersOnGpu = gpu && process.env.MM_OWN_GRAPHS_GPU !== '0';
  const json = values.json === true;
  const log = (s: string) => {
    if (!json) io.err(`${s}\n`);
  };
  const cli = tool('llama-mtmd-cli');
  const mtmdArgs = [
    '-m',
    model,
    '--mmproj',
    mmproj,
    '--image',
    image,
    '-p',
    q1,
    '--temp',
    '0',
    '-n',
    '32',
    '-t',
    String(threads),
    // the same placement as ours: llama-mtmd-cli's default would offload whatever fits, and with
    // -ngl 0 a GPU build still sends large prompt batches to the GPU (op offload)
    '-ngl',
    String(gpuLayers),
    ...(encodersOnGpu ? [] : ['--no-mmproj-offload']),
    ...(gpu ? [] : ['--no-op-offload']),
    '-v',
  ];

  await checkOwnGraphs(mmproj);

  // 1. Encoder + projector against libmtmd, in one process (mm-bench-vision).
  log('[bench] image encode: mm vs libmtmd in one process...');
  const vb = JSON.parse(
    (
      await exec(
        tool('mm-bench-vision'),
        [
          '--mmproj',
          mmproj,
          '--text-model',
          model,
          '--image',
          image,
          '-t',
          String(threads),
          '-n',
          String(reps),
          '--json',
        ],
        // MM_BENCH_GPU: both sides' encoder + projector on the GPU
        {
          maxBuffer: 1 << 24,
          env: encodersOnGpu ? { ...process.env, MM_BENCH_GPU: '1' } : process.env,
        },
      )
    ).stdout,
  );

  // 2. The whole pipeline, ours in-process and llama-mtmd-cli, interleaved.
  const m = await MultimodalModel.load({ model, mmproj, threads, gpuLayers });
  // llama-mtmd-cli reads and decodes the file, renders the template and tokenizes (preprocessing
  // the picture) before its prompt-eval timer starts: ours is timed from decoded pixels for the
  // like-for-like rows (still paying template, tokenizing and preprocessing), and once more from
  // the file.
  const pixels = await loadImage(image, {});
  const question = (text: string, from: string | typeof pixels = pixels) => [
    {
      role: 'user',
      content: [
        { type: 'image' as const, image: from },
        { type: 'text' as const, text },
      ],
    },
  ];
  const ask = (text: string, from?: string) => m.chat(question(text, from), { maxTokens: 32 });
  // the first question right after llama-mtmd-cli's process finds colder caches than the one after
  // it: the pixels and the file take turns at going first
  let turn = 0;
  const ours = async () => {
    const pixelsFirst = turn++ % 2 === 0;
    await m.reset();
    m.imageCache.clear();
    const early = await ask(q1, pixelsFirst ? undefined : image);
    const second = await ask(q2, pixelsFirst ? undefined : image);
    await m.reset();
    m.imageCache.clear();
    const late = await ask(q1, pixelsFirst ? image : undefined);
    return pixelsFirst
      ? { first: early, second, fromFile: late }
      : { first: late, second, fromFile: early };
  };
  const ref = async (): Promise<RefRun> => {
    for (let attempt = 0; ; attempt++) {
      const r = await exec(cli, mtmdArgs, { maxBuffer: 1 << 24 });
      try {
        return parseMtmdTimings(r.stdout, r.stderr);
      } catch (e) {
        if (attempt >= 5) throw e; // mtmd-cli's logger sometimes loses lines at exit; retry
      }
    }
  };
  log('[bench] warm-up');
  await ours();
  await ref();
  const A: Awaited<ReturnType<typeof ours>>[] = [];
  const B: RefRun[] = [];
  for (let i = 0; i < reps; i++) {
    log(`[bench] rep ${i + 1}/${reps}`);
    A.push(await ours());
    B.push(await ref());
  }

  // 3. Event-loop lag while streaming (separate runs: the 1 ms timer itself costs CPU).
  let maxGap = 0;
  for (let i = 0; i < 3; i++) {
    await m.reset();
    m.imageCache.clear();
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last - 1);
      last = now;
    }, 1);
    const s = m.stream(question(q1), { maxTokens: 32 });
    for await (const _ of s);
    clearInterval(timer);
  }
  m.dispose();

  // 4. Peak RSS of a fresh process doing one answer, each side.
  log('[bench] peak RSS (fresh processes)...');
  const rss = async (cmd: string[]) => {
    const r = await exec(tool('mm-peak-rss'), cmd, { maxBuffer: 1 << 24 });
    const mm = /mm-peak-rss: (\d+)/.exec(r.stderr);
    if (!mm) throw new Error('mm-peak-rss printed no figure');
    return Number(mm[1]) / 1024;
  };
  const mmBin = join(here, '..', '..', 'bin', 'mm.js');
  const ourCmd = [
    process.execPath,
    mmBin,
    'run',
    '-m',
    model,
    '--mmproj',
    mmproj,
    '--image',
    image,
    '-p',
    q1,
    // as many tokens as llama-mtmd-cli's -n (an answer that never ends would run to the context)
    '-n',
    '32',
    '-q',
    '-t',
    String(threads),
    '-g',
    String(gpuLayers),
  ];
  const rssOf = async (cmd: string[]) => median([await rss(cmd), await rss(cmd), await rss(cmd)]);
  const rssOurs = await rssOf(ourCmd);
  const rssRef = await rssOf([cli, ...mtmdArgs]);

  // llama.cpp's prompt-eval timer loses the batches decoded right after a switch of causal attention
  // (sched_reserve synchronizes and restarts it): with a non-causal image span (Gemma 3) it counts the
  // text before the picture and the encode, not the span itself nor the text after it. The span's
  // decode is added back from its "image decoded" log line; the few text tokens after it stay untimed.
  const refTimerSkipsSpan = vb.causal === false;
  const lostByRefTimer = (x: RefRun) => (refTimerSkipsSpan ? x.imageDecodeMs : 0);
  const f = A.map((a) => a.first.stats);
  const s2 = A.map((a) => a.second.stats);
  const ff = A.map((a) => a.fromFile.stats);
  const refTtft = B.map((x) => x.promptEvalMs + lostByRefTimer(x));
  // llama.cpp's eval timer counts llama_decode only: ours alike, from the decode steps' compute
  const decodeRate = (x: (typeof f)[number]) =>
    x.decodeComputeMs !== undefined && x.decodeComputeMs > 0
      ? ((x.generatedTokens - 1) * 1000) / x.decodeComputeMs
      : x.tokensPerSecond;
  // each row: the medians, their ratio, and the spread (min–max) of each side's reps
  const row = (metric: string, ours: number[], ref: number[], lowerIsBetter: boolean) => ({
    metric,
    ours: median(ours),
    ref: median(ref),
    lowerIsBetter,
    oursRange: [Math.min(...ours), Math.max(...ours)] as [number, number],
    refRange: [Math.min(...ref), Math.max(...ref)] as [number, number],
  });
  // llama-mtmd-cli logs its pipeline encode in whole milliseconds: each reading is
  // floor(t1) - floor(t0) of a millisecond clock, which is off by up to 1 ms but right on average
  // (the clock's phase is random), so that side takes the mean of its readings, not the median. A
  // tiny model's encode can read 0 in every rep: below the log's resolution there is no ratio.
  const wholeMsRow = (metric: string, ours: number[], refReadings: number[]) => {
    const r = row(metric, ours, refReadings, true);
    const ref = refReadings.reduce((a, b) => a + b, 0) / refReadings.length;
    return { ...r, ref, refStat: 'mean of whole-ms log readings' as const, refResolutionMs: 1 };
  };
  const rows = [
    {
      metric: 'image encode: encoder + projector (ms)',
      ours: vb.ours.encoderProjectorMs.median,
      ref: vb.ref.encoderProjectorMs.median,
      lowerIsBetter: true,
      oursRange: [vb.ours.encoderProjectorMs.min, vb.oursMaxMs] as [number, number],
      refRange: [vb.ref.encoderProjectorMs.min, vb.refMaxMs] as [number, number],
    },
    wholeMsRow(
      'image encode in the pipeline (ms)',
      f.map((x) => x.encodeMs),
      B.map((x) => x.encodeMs),
    ),
    row(
      'prefill: image span + text (ms)',
      f.map((x) => x.prefillMs),
      B.map((x) => x.promptEvalMs - x.encodeMs + lostByRefTimer(x)),
      true,
    ),
    row(
      'decode (tok/s)',
      f.map((x) => decodeRate(x)),
      B.map((x) => x.decodeTps),
      false,
    ),
    row(
      '  ours incl. sampling and hand-over to JS',
      f.map((x) => x.tokensPerSecond),
      B.map((x) => x.decodeTps),
      false,
    ),
    row(
      'time to first token, new image (ms)',
      f.map((x) => x.timeToFirstTokenMs),
      refTtft,
      true,
    ),
    row(
      '  ours from the file (read + decode it too)',
      ff.map((x) => x.timeToFirstTokenMs),
      refTtft,
      true,
    ),
    {
      metric: 'peak RSS, fresh process (MiB)',
      ours: rssOurs,
      ref: rssRef,
      lowerIsBetter: true,
      oursRange: [rssOurs, rssOurs] as [number, number],
      refRange: [rssRef, rssRef] as [number, number],
    },
  ].map((r) => ({ ...r, ratio: r.ref > 0 ? r.ours / r.ref : null }));
  const second = {
    encodeMs: median(s2.map((x) => x.encodeMs)),
    cacheHits: s2.every((x) => x.imageCacheHits === 1),
    cachedTokens: median(s2.map((x) => x.cachedTokens)),
    timeToFirstTokenMs: median(s2.map((x) => x.timeToFirstTokenMs)),
    ratioToFirst:
      median(s2.map((x) => x.timeToFirstTokenMs)) / median(f.map((x) => x.timeToFirstTokenMs)),
  };
  const si = systemInfo();
  const report = {
    date: new Date().toISOString(),
    conditions: {
      model,
      mmproj,
      image,
      question: q1,
      threads,
      gpuLayers,
      encoders: encodersOnGpu ? 'gpu' : 'cpu',
      reps,
      backend: si.backends.join('+'),
      llamaCommit: si.llamaCommit,
      cpu: si.cpuModel,
      imageEncodeMaxAbsDiff: vb.maxAbsDiff,
      // see lostByRefTimer: llama.cpp's prefill and TTFT add its image span's decode from its log
      refImageSpanFromLog: refTimerSkipsSpan,
    },
    rows,
    // mm-bench-vision's figures for the encode row: what was encoded (dynamic-resolution families
    // such as Qwen-VL size the graph, chunks and rows from the picture) and the spread.
    imageEncode: {
      projectorType: vb.projectorType,
      chunks: vb.chunks,
      rows: vb.rows,
      nEmbd: vb.nEmbd,
      oursMs: { ...vb.ours.encoderProjectorMs, max: vb.oursMaxMs },
      refMs: { ...vb.ref.encoderProjectorMs, max: vb.refMaxMs },
      ratio: vb.ratio,
      pairRatio: vb.pairRatio,
      maxAbsDiff: vb.maxAbsDiff,
    },
    secondQuestion: second,
    eventLoopMaxLagMs: maxGap,
    sameAnswer: A.every(
      (a, i) => a.first.text.trim() === B[i]?.text.trim() && a.fromFile.text === a.first.text,
    ),
  };
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return ExitCode.ok;
  }
  const c = report.conditions;
  io.out(
    `mm bench: ${c.model.split('/').pop()} + ${c.mmproj.split('/').pop()}, ${c.image.split('/').pop()}, "${c.question}"\n`,
  );
  io.out(
    `threads ${c.threads}, GPU layers ${c.gpuLayers}, encoders on the ${c.encoders.toUpperCase()} (both sides), backend ${c.backend}, llama.cpp ${c.llamaCommit.slice(0, 8)}, CPU ${c.cpu}, ${c.reps} interleaved reps (medians)\n\n`,
  );
  io.out(
    `${'metric'.padEnd(46)}${'mm'.padStart(11)}${'llama.cpp'.padStart(11)}${'ratio'.padStart(8)}   spread (min–max): mm | llama.cpp\n`,
  );
  const range = (x: [number, number]) => `${x[0].toFixed(2)}–${x[1].toFixed(2)}`;
  for (const r of rows) {
    io.out(
      `${r.metric.padEnd(46)}${r.ours.toFixed(2).padStart(11)}${`${r.ref.toFixed(2)}${'refStat' in r ? '*' : ''}`.padStart(11)}${(r.ratio === null ? '—' : r.ratio.toFixed(3)).padStart(8)}   ${range(r.oursRange)} | ${range(r.refRange)}\n`,
    );
  }
  io.out(
    '\n* llama-mtmd-cli logs its pipeline encode in whole milliseconds: the mean of its readings (each is off by up to 1 ms, right on average); no ratio where every reading is 0\n',
  );
  io.out(
    "llama.cpp's prompt-eval timer starts after it read and decoded the file, rendered the template and tokenized (preprocessing the picture); ours runs from decoded pixels (template, tokenizing and preprocessing included), and from the file on the row below it. Its eval timer counts llama_decode only: ours alike (the decode steps' compute), and with sampling and the hand-over to JS on the row below it\n",
  );
  const ie = report.imageEncode;
  io.out(
    `\nimage encode (${ie.projectorType}, ${ie.chunks} chunk${ie.chunks === 1 ? '' : 's'}, ${ie.rows} x ${ie.nEmbd}): ` +
      `mm ${ie.oursMs.median.toFixed(2)} ms (${ie.oursMs.min.toFixed(2)}–${ie.oursMs.max.toFixed(2)}), ` +
      `libmtmd ${ie.refMs.median.toFixed(2)} ms (${ie.refMs.min.toFixed(2)}–${ie.refMs.max.toFixed(2)}); ` +
      `ratio of each interleaved pair ${ie.pairRatio.median.toFixed(3)} (${ie.pairRatio.min.toFixed(3)}–${ie.pairRatio.max.toFixed(3)})\n`,
  );
  io.out(
    `second question, same image: encoder ${second.encodeMs.toFixed(2)} ms (cache hit: ${second.cacheHits}), ` +
      `${second.cachedTokens} prompt positions reused, time to first token ${second.timeToFirstTokenMs.toFixed(2)} ms ` +
      `= ${second.ratioToFirst.toFixed(3)}× the first question's\n`,
  );
  io.out(`event-loop lag while streaming: max ${maxGap.toFixed(2)} ms\n`);
  if (refTimerSkipsSpan) {
    io.out(
      "non-causal image span: llama.cpp's prompt-eval timer skips the span and the text after it; its prefill and time to first token add the span's logged decode time (the text after it stays untimed)\n",
    );
  }
  io.out(
    `same answer as llama-mtmd-cli in every rep: ${report.sameAnswer}; encoder output max |diff| vs libmtmd: ${vb.maxAbsDiff}\n`,
  );
  return ExitCode.ok;
}
