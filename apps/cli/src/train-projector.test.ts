import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths, writeTinyShapesDataset } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curveWindows, formatClock, trainProgressLine } from './commands/train-projector.js';
import { runMain } from './main.test-util.js';

// Real training on the bundled tiny-shapes pair (frozen encoder and LLM), kept small: 2 threads,
// batch 16, at most 64 pictures and 20 steps a run.

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const tiny = tinyShapesPaths();
const dir = mkdtempSync(join(tmpdir(), 'mm-train-projector-'));
let pt: string;
let it_: string;
let held: string;

/** The flags every run shares: the pair, small batches, 2 threads, a short warm-up. */
function trainArgs(out: string, data: string, ...extra: string[]): string[] {
  return [
    'train-projector',
    '-m',
    tiny.llm,
    '--mmproj',
    tiny.mmproj,
    '--data',
    data,
    '--out',
    out,
    '--batch',
    '16',
    '-t',
    '2',
    '--warmup',
    '2',
    ...extra,
  ];
}

beforeAll(async () => {
  pt = (await writeTinyShapesDataset(dir, { count: 32, seed: 1, kind: 'pt', name: 'pt' })).jsonl;
  it_ = (await writeTinyShapesDataset(dir, { count: 24, seed: 2, kind: 'it', name: 'it' })).jsonl;
  held = (await writeTinyShapesDataset(dir, { count: 8, seed: 3, kind: 'it', name: 'held' })).jsonl;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mm train-projector', () => {
  it('trains PT then IT, writes an mmproj that mm run answers with, and evaluates it', async () => {
    const out = join(dir, 'short.gguf');
    const sigint = process.listenerCount('SIGINT');
    const r = await runMain(
      trainArgs(out, pt, '--data-it', it_, '--steps-pt', '10', '--steps-it', '6', '--eval', held),
    );
    expect(r.code, r.err).toBe(0);
    expect(process.listenerCount('SIGINT')).toBe(sigint);
    expect(existsSync(out)).toBe(true);
    expect(existsSync(`${out}.ckpt`)).toBe(true);
    // summary on stdout: both stages, their curves, times, the output
    expect(r.out).toMatch(/^trained an mlp projector on 56 pictures$/m);
    expect(r.out).toMatch(
      /^stage pt \(pt\.jsonl, 32 lines\): 10 steps, 160 samples, [\d.]+ samples\/s, .*; loss [\d.]+ -> [\d.]+, acc/m,
    );
    expect(r.out).toMatch(/^stage it \(it\.jsonl, 24 lines\): 6 steps, 96 samples, /m);
    expect(r.out).toMatch(/^ +steps +loss +acc$/m);
    expect(r.out).toMatch(/^time: encode [\d.]+ s, train [\d.]+ s$/m);
    expect(r.out).toContain(`wrote ${out}`);
    // the loss goes down over the run
    const losses = [...r.out.matchAll(/; loss ([\d.]+) -> ([\d.]+)/g)].map((m) => [
      Number(m[1]),
      Number(m[2]),
    ]);
    expect(losses).toHaveLength(2);
    expect(losses[0]![1]!).toBeLessThan(losses[0]![0]!);
    // progress on stderr (not a terminal here: one line per phase and every 10 steps)
    expect(r.err).toMatch(/^encoding pictures 56\/56$/m);
    expect(r.err).toMatch(/^stage pt 10\/10 loss [\d.]+ acc [\d.]+% \d+ samples\/s ETA \d+:\d\d$/m);
    expect(r.err).toMatch(/^stage it 1\/6 loss /m);
    // eval: one line, and per question (few distinct questions)
    const ev = /^eval: (\d+)\/8 exact \(([\d.]+)%\)$/m.exec(r.out);
    expect(ev, r.out).not.toBeNull();
    expect(Number(ev![1])).toBeGreaterThanOrEqual(4);
    expect(r.out).toMatch(/^ {2}\S.*\?\s+\d+\/\d+\s+[\d.]+%$/m);

    const answer = await runMain([
      'run',
      '-m',
      tiny.llm,
      '--mmproj',
      out,
      '--image',
      join(tiny.samples, 'sample_000.png'),
      '-p',
      'Describe the image.',
      '-t',
      '2',
      '-q',
    ]);
    expect(answer.code, answer.err).toBe(0);
    expect(answer.out.trim()).toMatch(/^an? \w+ \w+ (on|at|in) the \w+\.$/);
  });

  it('reports each bad line with its number and trains on the rest', async () => {
    const good = readFileSync(pt, 'utf8').trim().split('\n').slice(0, 20);
    const rec = (image: string, question: string, answer: string) =>
      JSON.stringify({
        image,
        conversations: [
          { from: 'human', value: question },
          { from: 'gpt', value: answer },
        ],
      });
    const lines = [
      ...good.slice(0, 2),
      '{"image": "pt-00000.png", "conversations": [', // line 3: bad JSON
      ...good.slice(2, 4),
      rec('nowhere.png', '<image>\nDescribe the image.', 'a red circle.'), // line 6
      ...good.slice(4, 6),
      rec('pt-00001.png', 'Describe the image.', 'a red circle.'), // line 9: no marker
      ...good.slice(6, 8),
      rec('pt-00002.png', '<image>\nWhat shape is it?', ''), // line 12: empty answer
      ...good.slice(8),
      ...Array.from({ length: 22 }, () => '{oops'), // lines 25..46
    ];
    const data = join(dir, 'bad.jsonl');
    writeFileSync(data, `${lines.join('\n')}\n`);
    const out = join(dir, 'bad.gguf');
    const r = await runMain(trainArgs(out, data, '--steps-pt', '3', '--json'));
    expect(r.code, r.err).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(r.err).toMatch(/^bad\.jsonl line 3: bad_json — /m);
    expect(r.err).toMatch(/^bad\.jsonl line 6: missing_image — .*nowhere\.png/m);
    expect(r.err).toMatch(/^bad\.jsonl line 9: no_marker — /m);
    expect(r.err).toMatch(/^bad\.jsonl line 12: empty_answer — /m);
    // at most 20 bad lines printed, then a count
    expect(r.err.match(/^bad\.jsonl line \d+: /gm)).toHaveLength(20);
    expect(r.err).toMatch(/^\.\.\. and 6 more bad lines$/m);
    // --json: the whole result on stdout
    const j = JSON.parse(r.out);
    expect(j.out).toBe(out);
    expect(j.stages).toHaveLength(1);
    expect(j.stages[0]).toMatchObject({ kind: 'pt', steps: 3, lines: 20 });
    expect(j.stages[0].curve).toHaveLength(3);
    expect(j.problems).toHaveLength(26);
    expect(j.problems.slice(0, 4).map((p: { line: number; kind: string }) => p)).toMatchObject([
      { stage: 0, line: 3, kind: 'bad_json' },
      { stage: 0, line: 6, kind: 'missing_image' },
      { stage: 0, line: 9, kind: 'no_marker' },
      { stage: 0, line: 12, kind: 'empty_answer' },
    ]);
  });

  it('Ctrl-C writes the checkpoint and exits 130; --resume finishes the run', async () => {
    const out = join(dir, 'resumed.gguf');
    const ckpt = join(dir, 'resumed.ckpt');
    const args = trainArgs(out, pt, '--steps-pt', '12', '--checkpoint', ckpt);
    const child = spawn(process.execPath, [bin, ...args, '--checkpoint-every', '2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const deadline = Date.now() + 60_000;
    while (!existsSync(ckpt) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(ckpt), err).toBe(true);
    child.kill('SIGINT');
    expect(await exited, err).toBe(130);
    const m =
      /^interrupted at stage pt step (\d+); checkpoint (.+) — rerun with --resume to continue$/m.exec(
        err,
      );
    expect(m, err).not.toBeNull();
    expect(m![2]).toBe(ckpt);
    const stoppedAt = Number(m![1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(stoppedAt).toBeLessThan(12);
    expect(existsSync(out)).toBe(false);

    const r = await runMain([...args, '--checkpoint-every', '2', '--resume']);
    expect(r.code, r.err).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(r.out).toContain(`resumed from step ${stoppedAt}`);
    // the curve holds every step: those before the interruption and after it
    expect(r.out).toMatch(/^stage pt \(pt\.jsonl, 32 lines\): 12 steps, 192 samples, /m);
    expect(r.err).toMatch(new RegExp(`^stage pt ${stoppedAt + 1}/12 loss `, 'm'));
  });

  it('--help lists the flags; missing or bad flags are usage errors (exit 2)', async () => {
    const help = await runMain(['train-projector', '--help']);
    expect(help.code).toBe(0);
    for (const flag of [
      '--model',
      '--mmproj',
      '--data ',
      '--data-it',
      '--out',
      '--projector',
      '--init',
      '--hidden',
      '--steps-pt',
      '--steps-it',
      '--epochs',
      '--lr',
      '--weight-decay',
      '--warmup',
      '--schedule',
      '--batch',
      '--seed',
      '--threads',
      '--checkpoint ',
      '--checkpoint-every',
      '--resume',
      '--eval',
      '--jinja',
      '--json',
    ]) {
      expect(help.out).toContain(flag);
    }
    expect((await runMain(['--help'])).out).toMatch(/^ {2}train-projector /m);

    const base = ['train-projector', '-m', tiny.llm, '--mmproj', tiny.mmproj];
    const usage: [string[], RegExp][] = [
      [[...base, '--out', 'x.gguf'], /--data <file> is required/],
      [['train-projector', '--mmproj', tiny.mmproj, '--data', pt, '--out', 'x'], /-m\/--model/],
      [[...base, '--data', pt], /--out <file> is required/],
      [[...base, '--data', pt, '--out', 'x', '--steps-pt', '0'], /--steps-pt must be an integer/],
      [[...base, '--data', pt, '--out', 'x', '--lr', 'fast'], /--lr must be a number/],
      [[...base, '--data', pt, '--out', 'x', '--schedule', 'linear'], /--schedule must be one of/],
      [[...base, '--data', pt, '--out', 'x', '--projector', 'qformer'], /--projector must be/],
      [[...base, '--data', pt, '--out', 'x', '--steps-it', '5'], /--steps-it needs --data-it/],
      [[...base, '--data', pt, '--out', tiny.mmproj], /--out must name a new file/],
      [[...base, '--data', pt, '--out', 'x', '--nope'], /Unknown option '--nope'/],
    ];
    for (const [args, message] of usage) {
      const r = await runMain(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.out).toBe('');
    }
  });

  it('draws the progress line in place on a terminal', () => {
    let err = '';
    const bar = trainProgressLine(
      {
        out: () => undefined,
        err: (t) => {
          err += t;
        },
      },
      [{ kind: 'pt', data: 'pt.jsonl' }],
      true,
    );
    bar.onProgress({ phase: 'encode', done: 3, total: 8, elapsedMs: 1 });
    bar.onProgress({
      phase: 'train',
      stage: 'pt',
      stageIndex: 0,
      step: 120,
      steps: 300,
      loss: 0.03123,
      tokenAccuracy: 0.988,
      samplesPerSec: 412.3,
      etaMs: 41_000,
      elapsedMs: 2,
    });
    bar.end();
    expect(err).toBe(
      '\r\x1b[Kencoding pictures 3/8\r\x1b[Kstage pt 120/300 loss 0.0312 acc 98.8% 412 samples/s ETA 0:41\n',
    );
    expect(formatClock(3_723_000)).toBe('1:02:03');
    const curve = Array.from({ length: 25 }, (_, i) => ({
      step: i + 1,
      loss: 25 - i,
      tokenAccuracy: i / 25,
    }));
    const w = curveWindows(curve);
    expect(w.map((x) => [x.from, x.to])).toEqual([
      [1, 3],
      [4, 6],
      [7, 9],
      [10, 12],
      [13, 15],
      [16, 18],
      [19, 21],
      [22, 24],
      [25, 25],
    ]);
    expect(w[0]!.loss).toBe(24);
  });
});
