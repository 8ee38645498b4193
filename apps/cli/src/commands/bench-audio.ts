import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCode, MmError } from '@mm/errors';
import { inspectMmproj } from '@mm/projectors';
import { type CliIo, ExitCode, UsageError } from '../io.js';

const exec = promisify(execFile);

export const benchAudioHelp = `mm bench --audio <file> -m <model.gguf> --mmproj <mmproj.gguf> [-t <n>] [-r <n>] [--json]

The audio counterpart: mm's audio encoder and projector against libmtmd's, in one process
(mm-bench-audio), on the same samples (the file decoded once by mm's decoder at the tower's rate),
same threads and backend, interleaved (A B B A ...) after one warm-up each. Prints medians and
min–max of the log-mel (mel ratio) and of encoder + projector over every 30 s chunk (the encode
ratio, the one that matters), the ratio of each interleaved pair, and how far the embeddings are
from libmtmd's (max |diff|, cosine). The mmproj's audio type must run on mm's own graphs (ultravox,
qwen2a); the model gives libmtmd's audio markers their tokens (only its vocabulary is loaded).
  -r, --reps <n>       interleaved pairs with --audio, at least 1 (default 10)`;

/** What mm-bench-audio --json prints. */
export interface AudioBenchReport {
  mmproj: string;
  audio: string;
  seconds: number;
  samples: number;
  sampleRate: number;
  threads: number;
  reps: number;
  backend: string;
  flashAttn: boolean;
  llamaCommit: string;
  cpu: string;
  projectorType: string;
  chunks: number;
  rows: number;
  nEmbd: number;
  encoderWidth: number;
  encoderHeads: number;
  encoderBlocks: number;
  nMel: number;
  maxAbsDiff: number;
  cosine: number;
  ours: { melMs: Spread; encoderMs: Spread; projectorMs: Spread; encoderProjectorMs: Spread };
  ref: { melMs: Spread; encoderProjectorMs: Spread };
  melRatio: number;
  ratio: number;
  melPairRatio: Spread;
  pairRatio: Spread;
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

/**
 * mm bench --audio compares mm's own audio graphs with libmtmd's: a file without an audio encoder,
 * or whose audio type runs on libmtmd's graphs (the fused path), is refused with the reason.
 */
async function checkOwnAudioGraphs(mmproj: string): Promise<void> {
  try {
    await inspectMmproj(mmproj, { audio: true });
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    if (e.code === ErrorCode.MM_MODALITY_UNSUPPORTED) {
      throw new MmError(
        ErrorCode.MM_MODALITY_UNSUPPORTED,
        `mm bench --audio needs an mmproj with an audio encoder: ${e.message}`,
      );
    }
    if (e.code === ErrorCode.MM_UNSUPPORTED_FAMILY) {
      throw new MmError(
        ErrorCode.MM_UNSUPPORTED_FAMILY,
        `mm bench --audio compares mm's own audio encoder and projector graphs with libmtmd's: ${e.message}. Other audio types run on libmtmd's own graphs (the fused path) when libmtmd knows them, so there is nothing of mm's to compare`,
      );
    }
    throw e;
  }
}

/** A typed error the tool printed as `MM_CODE: message` becomes that MmError. */
function toolError(stderr: string, fallback: unknown): unknown {
  const m = /^(MM_[A-Z_]+): (.*)$/m.exec(stderr);
  const code = m?.[1] as ErrorCode | undefined;
  if (m && code && (Object.values(ErrorCode) as string[]).includes(code)) {
    return new MmError(code, m[2] as string);
  }
  return fallback;
}

const fmt = (s: Spread, digits = 2) =>
  `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

export async function runAudioBench(
  io: CliIo,
  values: Record<string, unknown>,
  tool: (name: string) => string,
): Promise<number> {
  const v = values as Record<string, string | undefined>;
  const audio = (values.audio as string[] | string | undefined) ?? [];
  const files = Array.isArray(audio) ? audio : [audio];
  if (files.length !== 1)
    throw new UsageError(`mm bench takes one --audio file\n\n${benchAudioHelp}`);
  if ((values.image as string[] | undefined)?.length)
    throw new UsageError(
      `--audio and --image are separate benches: give one of them\n\n${benchAudioHelp}`,
    );
  if (!v.model || !v.mmproj)
    throw new UsageError(
      `--audio needs -m <model.gguf> and --mmproj <an audio mmproj>\n\n${benchAudioHelp}`,
    );
  const file = files[0] as string;
  for (const [what, p] of [
    ['model', v.model],
    ['mmproj', v.mmproj],
    ['audio file', file],
  ] as const) {
    if (!existsSync(p)) throw new MmError(ErrorCode.MM_FILE_NOT_FOUND, `${what} '${p}' not found`);
  }
  const threads = Number(v.threads ?? Math.max(1, availableParallelism() - 1));
  if (!Number.isInteger(threads) || threads < 1)
    throw new UsageError('--threads must be an integer >= 1');
  const reps = Number(v.reps ?? 10);
  if (!Number.isInteger(reps) || reps < 1)
    throw new UsageError('--reps must be an integer >= 1 with --audio');
  const json = values.json === true;

  await checkOwnAudioGraphs(v.mmproj);
  const bin = tool('mm-bench-audio');
  if (!json)
    io.err(`[bench] audio: mm vs libmtmd in one process, ${threads} threads, ${reps} reps...\n`);
  let stdout: string;
  try {
    stdout = (
      await exec(
        bin,
        [
          '--mmproj',
          v.mmproj,
          '--text-model',
          v.model,
          '--audio',
          file,
          '-t',
          String(threads),
          '-n',
          String(reps),
          '--json',
        ],
        { maxBuffer: 1 << 24 },
      )
    ).stdout;
  } catch (e) {
    throw toolError(String((e as { stderr?: unknown }).stderr ?? ''), e);
  }
  const r = JSON.parse(stdout) as AudioBenchReport;
  if (json) {
    io.out(`${JSON.stringify({ date: new Date().toISOString(), ...r }, null, 2)}\n`);
    return ExitCode.ok;
  }
  io.out(
    `mm bench --audio: ${basename(r.mmproj)} (${r.projectorType}: width ${r.encoderWidth}, ${r.encoderHeads} heads, ` +
      `${r.encoderBlocks} blocks, ${r.nMel} mel bins), ${basename(r.audio)} (${r.seconds.toFixed(2)} s at ${r.sampleRate} Hz: ` +
      `${r.chunks} chunk${r.chunks === 1 ? '' : 's'}, ${r.rows} x ${r.nEmbd} out)\n`,
  );
  io.out(
    `threads ${r.threads}, backend ${r.backend}, flash attention ${r.flashAttn ? 'on' : 'off'}, llama.cpp ${r.llamaCommit.slice(0, 8)}, ` +
      `CPU ${r.cpu}, ${r.reps} interleaved pairs (A B B A) after one warm-up each\n\n`,
  );
  const w = [24, 28, 28, 8, 24];
  const row = (cells: string[]) =>
    `${cells
      .map((c, i) => (i === 0 ? c.padEnd(w[0] as number) : c.padStart(w[i] as number)))
      .join('')
      .trimEnd()}\n`;
  io.out(row(['ms, median (min–max)', 'mm', 'libmtmd', 'ratio', 'per-pair ratio']));
  io.out(
    row([
      'mel',
      fmt(r.ours.melMs),
      fmt(r.ref.melMs),
      r.melRatio.toFixed(3),
      fmt(r.melPairRatio, 3),
    ]),
  );
  io.out(
    row([
      'encoder + projector',
      fmt(r.ours.encoderProjectorMs),
      fmt(r.ref.encoderProjectorMs),
      r.ratio.toFixed(3),
      fmt(r.pairRatio, 3),
    ]),
  );
  io.out(row(['  encoder', fmt(r.ours.encoderMs), '', '', '']));
  io.out(row(['  projector', fmt(r.ours.projectorMs), '', '', '']));
  io.out(
    `\nencode ratio (mm / libmtmd, encoder + projector): ${r.ratio.toFixed(3)}; per interleaved pair ${fmt(r.pairRatio, 3)}\n`,
  );
  io.out(
    `mel ratio (mm / libmtmd): ${r.melRatio.toFixed(3)}; per interleaved pair ${fmt(r.melPairRatio, 3)}\n`,
  );
  io.out(
    `embeddings vs libmtmd: max |diff| ${r.maxAbsDiff}, cosine ${r.cosine.toFixed(9)} (${r.chunks} chunk${r.chunks === 1 ? '' : 's'}, ${r.rows} rows)\n`,
  );
  return ExitCode.ok;
}
