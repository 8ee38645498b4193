import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { MultimodalModel } from '@mm/core';
import { Image } from '@mm/encoders';
import { ErrorCode, MmError } from '@mm/errors';
import {
  type DataProblem,
  readTrainData,
  type TrainCurvePoint,
  type TrainProgress,
  type TrainProjectorOptions,
  type TrainProjectorResult,
  type TrainStage,
  type TrainStageResult,
  trainProjector,
} from '@mm/projectors';
import { type CliIo, ExitCode, UsageError } from '../io.js';
import { float, int, interruptSignal, modelFlags } from '../model-options.js';

export const trainProjectorHelp = `mm train-projector -m <model.gguf> --mmproj <mmproj.gguf> --data <pt.jsonl> [--data-it <it.jsonl>] --out <new-mmproj.gguf> [options]

Trains an input projector between the frozen vision encoder of an mmproj and a frozen llama GGUF
on LLaVA-style JSONL files (one {"image", "conversations"} object per line, an <image> marker in
the first human turn; pictures relative to the file), in stages: pre-training on --data, then
instruction tuning on --data-it. The loss is on the answer tokens only (AdamW). Writes a new
mmproj (the encoder copied byte for byte, the trained projector as 'mlp') that mm run and
llama-mtmd-cli load with the model. Bad lines are reported with their numbers and skipped.
  -m, --model <file>        the frozen text model (a llama GGUF)
      --mmproj <file>       the mmproj whose vision encoder is kept
      --data <file>         pre-training data (stage pt)
      --data-it <file>      instruction-tuning data (stage it, after pt)
      --out <file>          the mmproj to write
      --projector <kind>    mlp (default; mm.0 -> GELU -> mm.2), linear (one matrix), ldpv2
                            (MobileVLM V2; needs a 24x24 patch grid), or from-mmproj (the
                            mmproj's own mlp or ldpv2 projector)
      --init <how>          random (default; seeded) or mmproj (start from its weights; the
                            default with --projector from-mmproj)
      --hidden <n>          mlp's hidden width (default: the model's embedding width)
      --steps-pt <n>        optimiser steps of stage pt (default: --epochs epochs)
      --steps-it <n>        optimiser steps of stage it (default: --epochs epochs)
      --epochs <n>          epochs of a stage without --steps-* (default 1)
      --lr <x>              peak learning rate (default 3e-3)
      --weight-decay <x>    AdamW weight decay (default 0.01)
      --warmup <n>          linear warm-up steps at the start of each stage (default 10)
      --schedule <s>        cosine (default; decays to 0 at the stage's end) or constant
      --batch <n>           samples per step (default 64)
      --seed <n>            initialisation and data order (default 1)
  -t, --threads <n>         CPU threads (default: all cores)
      --checkpoint <file>   checkpoint file (default: <out>.ckpt), written every
                            --checkpoint-every steps (default 50), at each stage's end and on
                            Ctrl-C
      --checkpoint-every <n>
      --resume              continue from the checkpoint (same flags and data needed)
      --eval <file>         after training, ask each line's first question about its picture
                            with the new mmproj (greedy) and count exact answers
      --jinja               render the chat template with llama.cpp's Jinja engine (as mm run
                            --jinja; use the same when running the result)
      --json                print the result (per-stage loss curves, bad lines, eval) as JSON

Progress goes to stderr; the summary (per stage: steps, samples/s, loss curve) to stdout.
Ctrl-C stops at the current step, writes the checkpoint and exits with 130; run the same command
with --resume to continue.`;

export const trainProjectorFlags = {
  model: modelFlags.model,
  mmproj: modelFlags.mmproj,
  threads: modelFlags.threads,
  jinja: modelFlags.jinja,
  data: { type: 'string' },
  'data-it': { type: 'string' },
  out: { type: 'string' },
  projector: { type: 'string' },
  init: { type: 'string' },
  hidden: { type: 'string' },
  'steps-pt': { type: 'string' },
  'steps-it': { type: 'string' },
  epochs: { type: 'string' },
  lr: { type: 'string' },
  'weight-decay': { type: 'string' },
  warmup: { type: 'string' },
  schedule: { type: 'string' },
  batch: { type: 'string' },
  seed: { type: 'string' },
  checkpoint: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  resume: { type: 'boolean' },
  eval: { type: 'string' },
  json: { type: 'boolean' },
} as const;

type Values = { [K in keyof typeof trainProjectorFlags]?: string | boolean };

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T))
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${String(v)}'`);
  return v as T;
}

function required(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '')
    throw new UsageError(`--${name} <file> is required\n\n${trainProjectorHelp}`);
  return v;
}

function nonNegative(name: string, v: string | undefined): number | undefined {
  const n = float(name, v);
  if (n !== undefined && n < 0) throw new UsageError(`--${name} must be >= 0, got '${v}'`);
  return n;
}

/** The flags as trainProjector's options (without signal and progress). */
export function trainOptions(values: Values): TrainProjectorOptions {
  const s = (k: keyof Values) => values[k] as string | undefined;
  const model = s('model');
  if (!model) throw new UsageError(`-m/--model <file.gguf> is required\n\n${trainProjectorHelp}`);
  const mmproj = required('mmproj', values.mmproj);
  const data = required('data', values.data);
  const out = required('out', values.out);
  if (resolve(out) === resolve(mmproj))
    throw new UsageError('--out must name a new file, not the --mmproj it reads');
  const dataIt = s('data-it');
  if (dataIt === '') throw new UsageError('--data-it needs a file');
  if (dataIt === undefined && s('steps-it') !== undefined)
    throw new UsageError('--steps-it needs --data-it');
  const epochs = int('epochs', s('epochs'), 1);
  const stage = (kind: 'pt' | 'it', file: string): TrainStage => {
    const steps = int(`steps-${kind}`, s(`steps-${kind}`), 1);
    return {
      kind,
      data: file,
      ...(steps !== undefined && { steps }),
      ...(steps === undefined && epochs !== undefined && { epochs }),
    };
  };
  const lr = nonNegative('lr', s('lr'));
  if (lr === 0) throw new UsageError("--lr must be > 0, got '0'");
  const weightDecay = nonNegative('weight-decay', s('weight-decay'));
  const warmup = int('warmup', s('warmup'), 0);
  const schedule = oneOf('schedule', values.schedule, ['cosine', 'constant'] as const);
  const projector = oneOf('projector', values.projector, [
    'mlp',
    'linear',
    'ldpv2',
    'from-mmproj',
  ] as const);
  const init = oneOf('init', values.init, ['random', 'mmproj'] as const);
  const hidden = int('hidden', s('hidden'), 1);
  const batchSize = int('batch', s('batch'), 1);
  const seed = int('seed', s('seed'), 0);
  const threads = int('threads', s('threads'), 1);
  const checkpointEvery = int('checkpoint-every', s('checkpoint-every'), 1);
  const checkpoint = s('checkpoint') || `${out}.ckpt`;
  const optimizer = {
    ...(lr !== undefined && { lr }),
    ...(weightDecay !== undefined && { weightDecay }),
    ...(warmup !== undefined && { warmup }),
    ...(schedule !== undefined && { schedule }),
  };
  return {
    model,
    mmproj,
    out,
    stages: [stage('pt', data), ...(dataIt !== undefined ? [stage('it', dataIt)] : [])],
    ...(projector !== undefined && { projector }),
    ...(init !== undefined && { init }),
    ...(hidden !== undefined && { hidden }),
    ...(Object.keys(optimizer).length > 0 && { optimizer }),
    ...(batchSize !== undefined && { batchSize }),
    ...(seed !== undefined && { seed }),
    ...(threads !== undefined && { threads }),
    checkpoint,
    ...(checkpointEvery !== undefined && { checkpointEvery }),
    ...(values.resume === true && { resume: true }),
    ...(values.jinja === true && { jinja: true }),
  };
}

/** `0:41`, `12:05`, `1:02:03`. */
export function formatClock(ms: number): string {
  const t = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function formatSeconds(s: number): string {
  return s >= 60 ? formatClock(s * 1000) : `${s.toFixed(s >= 10 ? 1 : 2)} s`;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const fmtLoss = (x: number) => (x >= 100 ? x.toFixed(1) : x.toPrecision(4));

/**
 * The progress line on stderr: on a terminal one line redrawn in place; elsewhere a line at each
 * phase, every 10 steps (and a stage's first and last), every ~10% of the encoding, and at each
 * checkpoint.
 */
export function trainProgressLine(
  io: CliIo,
  stages: readonly TrainStage[],
  tty = process.stderr.isTTY === true,
) {
  let drawn = '';
  let phase = '';
  let encodeTenth = -1;
  let trainStage: number | undefined;
  const where = (stageIndex: number, step: number) =>
    stageIndex >= stages.length
      ? `the end of stage ${stages.at(-1)?.kind}`
      : `stage ${stages[stageIndex]?.kind} step ${step}`;
  const draw = (line: string, print: boolean) => {
    if (tty) {
      if (line !== drawn) io.err(`\r\x1b[K${line}`);
      drawn = line;
    } else if (print) io.err(`${line}\n`);
  };
  return {
    /** The last checkpoint written: its stage index and step. */
    lastCheckpoint: undefined as { stageIndex: number; step: number } | undefined,
    /** Where training stood at the last progress report. */
    last: undefined as TrainProgress | undefined,
    where,
    onProgress(p: TrainProgress) {
      this.last = p;
      const first = p.phase !== phase;
      phase = p.phase;
      if (p.checkpoint !== undefined) {
        const at = { stageIndex: p.stageIndex ?? 0, step: p.step ?? 0 };
        const again =
          this.lastCheckpoint?.stageIndex === at.stageIndex && this.lastCheckpoint.step === at.step;
        this.lastCheckpoint = at;
        if (!tty && !again)
          io.err(`checkpoint ${p.checkpoint} at ${where(at.stageIndex, at.step)}\n`);
        return;
      }
      switch (p.phase) {
        case 'prepare':
          draw('preparing: loading the model and the encoder, reading the data', true);
          return;
        case 'encode': {
          const total = p.total ?? 0;
          const done = p.done ?? 0;
          const tenth = total > 0 ? Math.floor((done / total) * 10) : 10;
          draw(`encoding pictures ${done}/${total}`, first || tenth > encodeTenth);
          encodeTenth = tenth;
          return;
        }
        case 'train': {
          const step = p.step ?? 0;
          const steps = p.steps ?? 0;
          const line =
            `stage ${p.stage} ${step}/${steps}` +
            (p.loss !== undefined ? ` loss ${p.loss.toFixed(4)}` : '') +
            (p.tokenAccuracy !== undefined ? ` acc ${pct(p.tokenAccuracy)}` : '') +
            (p.samplesPerSec !== undefined ? ` ${Math.round(p.samplesPerSec)} samples/s` : '') +
            (p.etaMs !== undefined ? ` ETA ${formatClock(p.etaMs)}` : '');
          // a stage's first step in this run (1, or the one after a resume's checkpoint)
          const firstOfStage = p.stageIndex !== trainStage;
          trainStage = p.stageIndex;
          draw(line, firstOfStage || step % 10 === 0 || step === steps);
          return;
        }
        case 'write':
          draw('writing the mmproj', true);
          return;
      }
    },
    /** Ends a redrawn line (before other output on stderr). */
    end() {
      if (tty && drawn) io.err('\n');
      drawn = '';
    },
  };
}

/** `pt.jsonl line 7: missing_image — the picture 'a.png' does not exist`. */
export function formatProblem(file: string, p: DataProblem): string {
  return `${basename(file)} line ${p.line}: ${p.kind} — ${p.message.replace(/^line \d+: /, '')}`;
}

/** Prints bad lines on stderr, each once, at most `cap` in all; `finish` says how many more. */
function problemPrinter(io: CliIo, cap = 20) {
  const seen = new Set<string>();
  let printed = 0;
  let more = 0;
  return {
    add(file: string, stage: number, problems: readonly DataProblem[]) {
      for (const p of problems) {
        const key = `${stage}:${p.line}:${p.kind}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (printed < cap) {
          io.err(`${formatProblem(file, p)}\n`);
          printed++;
        } else more++;
      }
    },
    finish() {
      if (more > 0) io.err(`... and ${more} more bad lines\n`);
      more = 0;
    },
    get count() {
      return seen.size;
    },
  };
}

/** Every ~10% of a curve: the mean loss and accuracy of each window of steps. */
export function curveWindows(
  curve: readonly TrainCurvePoint[],
  parts = 10,
): { from: number; to: number; loss: number; tokenAccuracy: number }[] {
  if (curve.length === 0) return [];
  const size = Math.max(1, Math.round(curve.length / parts));
  const out = [];
  for (let at = 0; at < curve.length; at += size) {
    const w = curve.slice(at, at + size);
    out.push({
      from: (w[0] as TrainCurvePoint).step,
      to: (w.at(-1) as TrainCurvePoint).step,
      loss: w.reduce((a, p) => a + p.loss, 0) / w.length,
      tokenAccuracy: w.reduce((a, p) => a + p.tokenAccuracy, 0) / w.length,
    });
  }
  return out;
}

function stageSummary(r: TrainStageResult): string {
  const first = r.curve[0];
  const last = r.curve.at(-1);
  const lines = [
    `stage ${r.kind} (${basename(r.data)}, ${r.lines} lines): ${r.steps} steps, ${r.samples} samples, ` +
      `${r.samplesPerSec.toFixed(1)} samples/s, ${formatSeconds(r.seconds)}` +
      (first && last
        ? `; loss ${fmtLoss(first.loss)} -> ${fmtLoss(last.loss)}, acc ${pct(first.tokenAccuracy)} -> ${pct(last.tokenAccuracy)}`
        : ''),
  ];
  const windows = curveWindows(r.curve);
  if (windows.length > 1) {
    const width = Math.max(5, ...windows.map((w) => `${w.from}-${w.to}`.length));
    lines.push(`  ${'steps'.padStart(width)}  ${'loss'.padStart(8)}  ${'acc'.padStart(6)}`);
    for (const w of windows) {
      const span = w.from === w.to ? `${w.to}` : `${w.from}-${w.to}`;
      lines.push(
        `  ${span.padStart(width)}  ${fmtLoss(w.loss).padStart(8)}  ${pct(w.tokenAccuracy).padStart(6)}`,
      );
    }
  }
  return lines.join('\n');
}

export interface EvalResult {
  file: string;
  total: number;
  exact: number;
  accuracy: number;
  /** Per question text, when there are at most 20 distinct questions. */
  byQuestion?: { question: string; total: number; exact: number }[];
  /** The first wrong answers (at most 10). */
  wrong: { line: number; question: string; expected: string; got: string }[];
  /** Bad lines of the eval file (skipped). */
  problems: DataProblem[];
}

async function evaluate(
  io: CliIo,
  file: string,
  opts: { model: string; mmproj: string; threads?: number; jinja?: boolean },
  signal: AbortSignal,
  problems: ReturnType<typeof problemPrinter>,
  tty: boolean,
): Promise<EvalResult> {
  const data = await readTrainData(file, { signal });
  problems.add(file, -1, data.problems);
  problems.finish();
  const model = await MultimodalModel.load({
    model: opts.model,
    mmproj: opts.mmproj,
    ...(opts.threads !== undefined && { threads: opts.threads }),
    ...(opts.jinja === true && { jinja: true }),
    signal,
  });
  const groups = new Map<string, { total: number; exact: number }>();
  const wrong: EvalResult['wrong'] = [];
  let exact = 0;
  let total = 0;
  let tenth = -1;
  try {
    for (const [i, s] of data.samples.entries()) {
      const turn = s.turns[0];
      if (turn === undefined) continue;
      let image: Image;
      try {
        image = await Image.fromFile(s.image, { signal });
      } catch (e) {
        if (signal.aborted || !MmError.isInstance(e)) throw e;
        const p: DataProblem = {
          line: s.line,
          kind: 'missing_image',
          message: `the picture '${s.image}' cannot be read (${e.code}: ${e.message})`,
        };
        data.problems.push(p);
        if (tty) io.err('\r\x1b[K');
        problems.add(file, -1, [p]);
        continue;
      }
      // A signal of its own per question: a generation leaves its 'abort' listener on the signal
      // it is given (@mm/backbone-gguf's PushStream.watch), which would pile up on one signal.
      const question = new AbortController();
      const forward = () => question.abort(signal.reason);
      signal.addEventListener('abort', forward, { once: true });
      let text: string;
      try {
        ({ text } = await model.chat(
          [
            {
              role: 'user',
              content: [
                { type: 'image', image },
                { type: 'text', text: turn.question },
              ],
            },
          ],
          { temperature: 0, maxTokens: 32, signal: question.signal },
        ));
      } finally {
        signal.removeEventListener('abort', forward);
      }
      const got = text.trim();
      const ok = got === turn.answer.trim();
      total++;
      if (ok) exact++;
      else if (wrong.length < 10)
        wrong.push({ line: s.line, question: turn.question, expected: turn.answer, got });
      const g = groups.get(turn.question) ?? { total: 0, exact: 0 };
      g.total++;
      if (ok) g.exact++;
      groups.set(turn.question, g);
      const n = i + 1;
      const t = Math.floor((n / data.samples.length) * 10);
      if (tty) io.err(`\r\x1b[Keval ${n}/${data.samples.length}, ${exact} exact`);
      else if (t > tenth) io.err(`eval ${n}/${data.samples.length}, ${exact} exact\n`);
      tenth = t;
    }
    if (tty && data.samples.length > 0) io.err('\n');
  } finally {
    model.dispose();
  }
  problems.finish();
  return {
    file,
    total,
    exact,
    accuracy: total > 0 ? exact / total : 0,
    ...(groups.size <= 20 && {
      byQuestion: [...groups.entries()].map(([question, g]) => ({ question, ...g })),
    }),
    wrong,
    problems: data.problems,
  };
}

function evalSummary(e: EvalResult): string {
  const lines = [`eval: ${e.exact}/${e.total} exact (${pct(e.accuracy)})`];
  if (e.byQuestion && e.byQuestion.length > 1) {
    const width = Math.max(...e.byQuestion.map((q) => q.question.length));
    for (const q of e.byQuestion) {
      lines.push(
        `  ${q.question.padEnd(width)}  ${`${q.exact}/${q.total}`.padStart(9)}  ${pct(q.exact / Math.max(1, q.total)).padStart(6)}`,
      );
    }
  }
  for (const w of e.wrong.slice(0, 5)) {
    lines.push(
      `  line ${w.line}: ${w.question} -> ${JSON.stringify(w.got)}, expected ${JSON.stringify(w.expected)}`,
    );
  }
  return lines.join('\n');
}

export function trainSummary(r: TrainProjectorResult, checkpoint: string): string {
  const lines = [
    `trained ${r.projector === 'mlp' ? 'an' : 'a'} ${r.projector} projector on ${r.pictures} pictures`,
  ];
  if (r.resumedFrom !== undefined) lines.push(`resumed from step ${r.resumedFrom}`);
  for (const s of r.stages) lines.push(stageSummary(s));
  if (r.problems.length > 0) lines.push(`skipped ${r.problems.length} bad lines (see stderr)`);
  lines.push(
    `time: encode ${formatSeconds(r.encodeSeconds)}, train ${formatSeconds(r.trainSeconds)}`,
  );
  lines.push(`checkpoint: ${checkpoint}`);
  lines.push(`wrote ${r.out}`);
  return lines.join('\n');
}

export async function runTrainProjector(io: CliIo, values: Values): Promise<number> {
  const options = trainOptions(values);
  const checkpoint = options.checkpoint as string;
  const json = values.json === true;
  const evalFile = values.eval as string | undefined;
  if (evalFile === '') throw new UsageError('--eval needs a file');
  const tty = process.stderr.isTTY === true;
  const interrupt = interruptSignal();
  const bar = trainProgressLine(io, options.stages, tty);
  const problems = problemPrinter(io);
  try {
    // Bad lines are reported before the (long) training; trainProjector reports the same, and
    // those only found while encoding (pictures that do not decode) or laying out, at the end.
    for (const [i, st] of options.stages.entries()) {
      const r = await readTrainData(st.data, { signal: interrupt.signal });
      problems.add(st.data, i, r.problems);
    }
    if (options.resume && !existsSync(checkpoint))
      io.err(`no checkpoint at ${checkpoint}: starting from the beginning\n`);
    let result: TrainProjectorResult;
    try {
      result = await trainProjector({
        ...options,
        signal: interrupt.signal,
        onProgress: (p) => bar.onProgress(p),
      });
    } catch (e) {
      bar.end();
      // an error while saving the checkpoint on abort is reported as such
      if (!interrupt.signal.aborted || !isAbort(e, interrupt.signal)) throw e;
      problems.finish();
      const at = bar.lastCheckpoint;
      if (at !== undefined) {
        io.err(
          `interrupted at ${bar.where(at.stageIndex, at.step)}; checkpoint ${checkpoint} — rerun with --resume to continue\n`,
        );
      } else {
        io.err(`interrupted while ${phaseWords(bar.last?.phase)}, before any checkpoint\n`);
      }
      return ExitCode.aborted;
    }
    bar.end();
    for (const p of result.problems) {
      const st = options.stages[p.stage];
      if (st) problems.add(st.data, p.stage, [p]);
    }
    problems.finish();
    const evalResult =
      evalFile !== undefined
        ? await evaluate(
            io,
            evalFile,
            {
              model: options.model,
              mmproj: options.out,
              ...(options.threads !== undefined && { threads: options.threads }),
              ...(options.jinja === true && { jinja: true }),
            },
            interrupt.signal,
            problems,
            tty,
          )
        : undefined;
    if (json) {
      io.out(
        `${JSON.stringify({ ...result, checkpoint, ...(evalResult && { eval: evalResult }) }, null, 2)}\n`,
      );
    } else {
      io.out(`${trainSummary(result, checkpoint)}\n`);
      if (evalResult) io.out(`${evalSummary(evalResult)}\n`);
    }
    return ExitCode.ok;
  } finally {
    bar.end();
    interrupt.dispose();
  }
}

function phaseWords(phase: TrainProgress['phase'] | undefined): string {
  switch (phase) {
    case 'encode':
      return 'encoding the pictures';
    case 'train':
      return 'training';
    case 'write':
      return 'writing the mmproj';
    default:
      return 'preparing';
  }
}

function isAbort(e: unknown, signal: AbortSignal): boolean {
  return e === signal.reason || (MmError.isInstance(e) && e.code === ErrorCode.MM_ABORTED);
}
