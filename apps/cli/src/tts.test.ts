import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpeechModel } from '@mm/core';
import { tinyQwen3TtsPair } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ttsProgressLine } from './commands/tts.js';
import { runMain } from './main.test-util.js';

// `mm tts` on the tiny Qwen3-TTS pair: its file equals SpeechModel's speech with the same flags
// (which @mm/core's speech.test.ts proves equal to llama-tts's).

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const dir = mkdtempSync(join(tmpdir(), 'mm-tts-'));
const text = 'Hello world, this is a test.';
let q: Awaited<ReturnType<typeof tinyQwen3TtsPair>>;
let expected: { pcm: Float32Array; sampleRate: number };

beforeAll(async () => {
  q = await tinyQwen3TtsPair();
  using m = await SpeechModel.load({ model: q.model, mmproj: q.mmproj, threads: 2 });
  expected = await m.speakAll(text, { sampling: { seed: 42 }, maxFrames: 80 });
});
afterAll(() => {});

describe('mm tts', () => {
  it('writes the WAV SpeechModel speaks (same seed), with a progress line and --json', async () => {
    const out = join(dir, 'a.wav');
    const r = await runMain([
      'tts',
      '-m',
      q.model,
      '--mmproj',
      q.mmproj,
      '-p',
      text,
      '-o',
      out,
      '-s',
      '42',
      '-n',
      '80',
      '-t',
      '2',
    ]);
    expect(r.code).toBe(0);
    expect(readFileSync(out).equals(SpeechModel.toWav(expected.pcm, expected.sampleRate))).toBe(
      true,
    );
    expect(r.err).toMatch(
      /\[mm tts\] 80 frames, [\d.]+ s of audio in [\d.]+ s \([\d.]+x real time\)/,
    );
    expect(r.err).toMatch(/first audio after \d+ ms; wrote .*a\.wav \(qwen3tts, 24000 Hz\)/);

    const j = await runMain([
      'tts',
      '-m',
      q.model,
      '--mmproj',
      q.mmproj,
      '-p',
      text,
      '-o',
      join(dir, 'b.pcm'),
      '--format',
      'pcm',
      '-s',
      '42',
      '-n',
      '80',
      '-t',
      '2',
      '--json',
    ]);
    expect(j.code).toBe(0);
    const info = JSON.parse(j.out);
    expect(info).toMatchObject({
      frames: 80,
      sampleRate: 24000,
      pipeline: 'qwen3tts',
      aborted: false,
      samples: expected.pcm.length,
    });
    expect(info.firstChunkMs).toBeLessThan(info.generateMs);
    const raw = readFileSync(join(dir, 'b.pcm'));
    expect(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)).toEqual(expected.pcm);
  });

  it('usage and typed errors: no prompt, bad format, a wrong pair; mm run on a speech mmproj points to mm tts', async () => {
    expect((await runMain(['tts', '-m', q.model, '--mmproj', q.mmproj])).code).toBe(2);
    expect(
      (await runMain(['tts', '-m', q.model, '--mmproj', q.mmproj, '-p', 'x', '--format', 'mp3']))
        .code,
    ).toBe(2);
    const empty = await runMain([
      'tts',
      '-m',
      q.model,
      '--mmproj',
      q.mmproj,
      '-p',
      '  ',
      '-o',
      join(dir, 'e.wav'),
    ]);
    expect(empty.code).toBe(1);
    expect(empty.err).toMatch(/MM_INVALID_ARGUMENT/);
    const run = await runMain(['run', '-m', q.model, '--mmproj', q.mmproj, '-p', 'hi']);
    expect(run.code).toBe(1);
    expect(run.err).toMatch(/MM_MODALITY_UNSUPPORTED.*speech-generation mmproj.*mm tts/s);
  });

  it('Ctrl-C stops the speech, keeps what was written as a valid WAV and exits 130', async () => {
    const out = join(dir, 'int.wav');
    const child = spawn(
      process.execPath,
      [
        bin,
        'tts',
        '-m',
        q.model,
        '--mmproj',
        q.mmproj,
        '-p',
        text,
        '-o',
        out,
        '-s',
        '1',
        '-n',
        '100000',
        '-t',
        '2',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    let sent = false;
    child.stderr.on('data', (d) => {
      err += String(d);
      // once: the summary line after the abort would match too, and a second Ctrl-C during the
      // exit is the default handler's (killed by the signal)
      if (!sent && /\[mm tts\] \d+ frames/.test(err)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(code).toBe(130);
    const wav = readFileSync(out);
    expect(wav.toString('ascii', 0, 4)).toBe('RIFF');
    expect(wav.readUInt32LE(40)).toBe(wav.length - 44);
    expect(wav.length).toBeGreaterThan(44);
    expect(err).toMatch(/interrupted/);
  });

  it('formats its progress line', () => {
    expect(ttsProgressLine(12, 0.5, 250)).toBe(
      '[mm tts] 12 frames, 0.50 s of audio in 0.25 s (2.00x real time)',
    );
  });
});
