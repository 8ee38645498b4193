import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyShapesPaths } from '@mm/testing';
import { describe, expect, it } from 'vitest';

// `mm chat` as a scripting tool: stdin is a pipe, every line gets its answer, in order.

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const tiny = tinyShapesPaths();

interface Sample {
  image: string;
  color: string;
  shape: string;
  questions: { kind: string; question: string; answer: string }[];
}
const samples: Sample[] = JSON.parse(
  readFileSync(join(tiny.samples, 'answers.json'), 'utf8'),
).items;

/** The canonical question of `kind` about a sample (the first in answers.json) and its answer. */
function canonical(s: Sample, kind: string): { question: string; answer: string } {
  const q = s.questions.find((x) => x.kind === kind);
  if (!q) throw new Error(`${s.image}: no ${kind} question`);
  return q;
}

/**
 * `mm chat` on tiny-shapes with `script` piped to stdin (so not a terminal). One thread: the
 * model is tiny, and spinning worker threads on a busy machine only slow it down.
 */
function chat(script: string[]) {
  const r = spawnSync(
    process.execPath,
    [bin, 'chat', '-m', tiny.llm, '--mmproj', tiny.mmproj, '-t', '1'],
    { input: script.map((l) => `${l}\n`).join(''), encoding: 'utf8', timeout: 120_000 },
  );
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/** The lines of a question about one image, asked in a fresh conversation. */
function ask(image: string, question: string): string[] {
  return ['/clear', `/image ${image}`, question];
}

describe('mm chat with stdin from a pipe', () => {
  it('answers every question in order, then exits 0 when the input ends', () => {
    const script: string[] = [];
    const expected: string[] = [];
    const kinds = ['color', 'shape', 'position', 'describe'];
    for (const s of samples) {
      for (const kind of kinds) {
        const { question, answer } = canonical(s, kind);
        script.push(...ask(join(tiny.samples, s.image), question));
        expected.push(answer);
      }
    }
    // A follow-up in the same conversation: the history path answers too. The tiny model was
    // trained on single turns only, so just that it answers is checked, not what.
    script.push('Which color is it?');
    expect(script.filter((l) => !l.startsWith('/'))).toHaveLength(kinds.length * 8 + 1);

    const r = chat(script);
    expect(r.code, r.err).toBe(0);
    const answers = r.out.split('\n');
    expect(answers.pop()).toBe(''); // the output ends with a newline
    expect(answers).toHaveLength(expected.length + 1); // one answer per question
    expect(answers.pop()).not.toBe('');
    expect(answers).toEqual(expected);
    // the colour and shape words of each sample, as answers.json labels the image
    for (const [i, s] of samples.entries()) {
      const [color, shape, , describe] = answers.slice(kinds.length * i, kinds.length * (i + 1));
      expect([color, shape]).toEqual([`${s.color}.`, `${s.shape}.`]);
      expect(describe).toContain(`${s.color} ${s.shape}`);
    }
    expect(r.out).not.toContain('> '); // no prompt when stdin is not a terminal
  });

  it('stops at /exit: the lines after it are not read', () => {
    const s = samples[1]!;
    const r = chat([
      ...ask(join(tiny.samples, s.image), canonical(s, 'color').question),
      '/exit',
      canonical(s, 'shape').question,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`${canonical(s, 'color').answer}\n`);
  });

  it('a missing or corrupt image fails its turn (exit 1) and every other line is answered', () => {
    const bad = join(mkdtempSync(join(tmpdir(), 'mm-chat-')), 'bad.png');
    writeFileSync(bad, Buffer.from('\x89PNG\r\n\x1a\nnot really a png at all'));
    const [a, b] = [samples[0]!, samples[3]!];
    const script = [
      ...ask(join(tiny.samples, a.image), canonical(a, 'color').question),
      ...ask('/nonexistent/missing.png', 'What color is the shape?'),
      ...ask(bad, 'What shape is it?'),
      ...ask(join(tiny.samples, b.image), canonical(b, 'shape').question),
      canonical(b, 'color').question,
    ];
    const r = chat(script);
    expect(r.code, r.err).toBe(1);
    // one line per question: the failed turns leave an empty line, their errors go to stderr
    expect(r.out.split('\n').slice(0, -1)).toEqual([
      canonical(a, 'color').answer,
      '',
      '',
      canonical(b, 'shape').answer,
      canonical(b, 'color').answer,
    ]);
    expect(r.err).toMatch(/^mm: MM_FILE_NOT_FOUND: .*missing\.png/m);
    expect(r.err).toMatch(/^mm: MM_IMAGE_DECODE: /m);
    expect(r.err).toContain('mm chat: 2 of 5 turns failed');
  });
});
