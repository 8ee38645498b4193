#!/usr/bin/env node
// Side-by-side benchmark of mm's audio path (@mm/encoders AudioEncoder + @mm/projectors audio
// projector) against libmtmd's, at a Whisper-large-like shape (REALISTIC_WHISPER_LARGE: width 1280,
// 20 heads, FFN 5120, 128 mel bins, 4 blocks, random F16 weights, projecting to 2048) on a
// synthesised WAV. The figures come from native/tools/audio-bench.cpp (mm-bench-audio), the tool
// `mm bench --audio` runs, with the same arguments: ours and libmtmd in ONE process, same samples,
// threads and backend, interleaved A B B A after one warm-up each.
//
//   npm run bench:audio -w @mm/projectors -- [--projectors qwen2a,ultravox] [--threads 2]
//                                            [--reps 10] [--seconds 29] [--json]
//
// 29 s: one 30 s chunk (libmtmd's padding makes 30 s two). The fixtures are written once into the
// bench cache outside the repo (benchDir()).
import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { systemInfo } from '@mm/native';
import { benchAudioPair, oracleTool, synthWavFixture } from '@mm/testing';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    projectors: { type: 'string', default: 'qwen2a,ultravox' },
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '29' },
    json: { type: 'boolean', default: false },
  },
});
const threads = Number(values.threads);
const reps = Math.max(1, Number(values.reps));
const log = (s) => process.stderr.write(`${s}\n`);

const wav = await synthWavFixture(Number(values.seconds));
const results = [];
for (const projector of values.projectors.split(',')) {
  log(
    `[bench] making the Whisper-large-shaped ${projector} mmproj (once, cached outside the repo)...`,
  );
  const p = await benchAudioPair(projector);
  log(`[bench] ${projector}: ours vs libmtmd in one process, ${threads} threads, ${reps} reps...`);
  log(
    `[bench]   = mm bench --audio ${wav} -m ${p.llm} --mmproj ${p.mmproj} -t ${threads} -r ${reps}`,
  );
  const { stdout } = await run(
    oracleTool('mm-bench-audio'),
    [
      '--mmproj',
      p.mmproj,
      '--text-model',
      p.llm,
      '--audio',
      wav,
      '-t',
      String(threads),
      '-n',
      String(reps),
      '--json',
    ],
    { maxBuffer: 1 << 24 },
  );
  results.push(JSON.parse(stdout));
}

const si = systemInfo();
if (values.json) {
  console.log(
    JSON.stringify(
      {
        date: new Date().toISOString(),
        cpu: si.cpuModel,
        hardwareThreads: si.hardwareThreads,
        llamaCommit: si.llamaCommit,
        results,
      },
      null,
      2,
    ),
  );
} else {
  const f = (s, d = 1) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  console.log(
    `mm audio bench, ${new Date().toISOString().slice(0, 10)}, CPU ${si.cpuModel} (${si.hardwareThreads} threads), llama.cpp ${si.llamaCommit.slice(0, 8)}, ${basename(wav)}`,
  );
  console.log(
    'ms, median (min–max); ours and libmtmd interleaved in one process, same samples and threads; ratio = ours / libmtmd of the medians, and of each interleaved pair\n',
  );
  console.log(
    '| projector | encoder | audio | out | threads | reps | FA | mel ours | mel libmtmd | mel ratio | encoder + projector ours | libmtmd | encode ratio | per-pair ratio | max abs diff |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.projectorType} | ${r.encoderWidth} wide, ${r.encoderHeads} heads, ${r.encoderBlocks} blocks, ${r.nMel} mels ` +
        `| ${r.seconds.toFixed(0)} s, ${r.chunks} chunk${r.chunks === 1 ? '' : 's'} | ${r.rows} x ${r.nEmbd} | ${r.threads} | ${r.reps} ` +
        `| ${r.flashAttn ? 'on' : 'off'} | ${f(r.ours.melMs)} | ${f(r.ref.melMs)} | ${r.melRatio.toFixed(3)} ` +
        `| ${f(r.ours.encoderProjectorMs, 0)} | ${f(r.ref.encoderProjectorMs, 0)} | **${r.ratio.toFixed(3)}** ` +
        `| ${f(r.pairRatio, 3)} | ${r.maxAbsDiff} |`,
    );
  }
}
