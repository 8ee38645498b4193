import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type AudioProjector,
  mtmdCli,
  oracleTool,
  syntheticPngFixture,
  synthWavFixture,
  tinyAudioPair,
  tinyShapesPaths,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// `mm run --audio` and `mm chat --audio` / `/audio` against llama-mtmd-cli --audio on @mm/testing's
// tiny audio pairs: voxtral through libmtmd's fused encoder + projector, ultravox and qwen2a through
// mm's own graphs, qwen2.5o (M-RoPE) with a picture and a sound in either order.

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'mm-cli-audio-'));
const N = 12;

/** llama-mtmd-cli with `media` flags in the order given (`--image` / `--audio` share one list). */
async function cliRef(
  pair: { model: string; mmproj: string },
  media: string[],
  prompt: string,
): Promise<string> {
  const args = ['-m', pair.model, '--mmproj', pair.mmproj, ...media];
  args.push('-p', prompt, '--temp', '0', '-n', String(N), '-t', '2');
  for (let attempt = 0; attempt < 40; attempt++) {
    const { stdout } = await run(oracleTool('llama-mtmd-cli'), args, { maxBuffer: 16 << 20 });
    // a complete run ends with a blank line (its logger is not flushed at exit)
    if (stdout.endsWith('\n\n')) return stdout.replace(/^\n/, '').replace(/\n+$/, '');
  }
  throw new Error('llama-mtmd-cli never printed a complete answer');
}

function runArgs(pair: { model: string; mmproj: string }, media: string[], prompt: string) {
  return [
    'run',
    '-m',
    pair.model,
    '--mmproj',
    pair.mmproj,
    ...media,
    '-p',
    prompt,
    '--temp',
    '0',
    '-n',
    String(N),
    '-t',
    '2',
  ];
}

const CASES: [AudioProjector, RegExp][] = [
  ['voxtral', /prompt tokens .* media\), encode \(libmtmd, fused\) .* tok\/s/],
  ['ultravox', /prompt tokens .* media\), encode [0-9.]+ ms, .* tok\/s/],
  ['qwen2a', /prompt tokens .* media\), encode [0-9.]+ ms, .* tok\/s/],
];

describe.each(CASES)('mm run --audio, %s', (projector, stderr) => {
  it('prints what llama-mtmd-cli --audio prints', { timeout: 300_000 }, async () => {
    const pair = await tinyAudioPair({ projector });
    const wav = await synthWavFixture(3, { seed: 5 });
    const prompt = 'What do you hear?';
    const ref = await mtmdCli({ ...pair, audio: [wav], prompt, maxTokens: N, threads: 2 });
    const r = await runMain(runArgs(pair, ['--audio', wav], prompt));
    console.log(`${projector}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`);
    expect(r.code, r.err).toBe(0);
    expect(ref.length).toBeGreaterThan(0);
    expect(r.out).toBe(`${ref.trimStart()}\n`);
    expect(r.err).toMatch(stderr);
    if (projector === 'voxtral') {
      // the installed command: only the answer on stdout, nothing on stderr with -q
      const p = spawnSync(
        process.execPath,
        [bin, ...runArgs(pair, ['--audio', wav], prompt), '-q'],
        { encoding: 'utf8', timeout: 120_000 },
      );
      expect([p.status, p.stdout, p.stderr]).toEqual([0, `${ref.trimStart()}\n`, '']);
    }
  });
});

describe('mm run with a picture and a sound (qwen2.5o)', () => {
  it('keeps the order of --image and --audio, as llama-mtmd-cli does', {
    timeout: 600_000,
  }, async () => {
    const pair = await tinyAudioPair({ projector: 'qwen2.5o' });
    const image = await syntheticPngFixture(64, 48, 6);
    const wav = await synthWavFixture(2, { seed: 6 });
    const prompt = 'Tell me about them.';
    for (const media of [
      ['--image', image, '--audio', wav],
      ['--audio', wav, '--image', image],
    ]) {
      const ref = await cliRef(pair, media, prompt);
      const r = await runMain(runArgs(pair, media, prompt));
      console.log(
        `qwen2.5o ${media[0]} first: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(r.code, r.err).toBe(0);
      expect(r.out).toBe(`${ref.trimStart()}\n`);
    }
    const json = await runMain([
      ...runArgs(pair, ['--audio', wav, '--image', image], prompt),
      '--json',
    ]);
    expect(JSON.parse(json.out).stats.images).toBe(2);
  });
});

describe('mm chat with audio', () => {
  it('/audio and --audio attach a sound; the answers are llama-mtmd-cli --audio ones', {
    timeout: 300_000,
  }, async () => {
    const pair = await tinyAudioPair({ projector: 'voxtral' });
    const wav = await synthWavFixture(3, { seed: 7 });
    const question = 'What do you hear?';
    const ref = await mtmdCli({
      ...pair,
      audio: [wav],
      prompt: question,
      maxTokens: N,
      threads: 2,
    });
    const chat = (extra: string[], script: string[]) =>
      spawnSync(
        process.execPath,
        [
          bin,
          'chat',
          '-m',
          pair.model,
          '--mmproj',
          pair.mmproj,
          '-t',
          '2',
          '-n',
          String(N),
          ...extra,
        ],
        { input: script.map((l) => `${l}\n`).join(''), encoding: 'utf8', timeout: 120_000 },
      );
    const a = chat([], [`/audio ${wav}`, question]);
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout).toBe(`${ref.trimStart()}\n`);
    expect(a.stderr).toContain(`(audio ${wav} attached to your next message)`);
    const b = chat(['--audio', wav], [question]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toBe(`${ref.trimStart()}\n`);
    // a bad file fails that turn with its code; the next turn is answered
    const bad = join(dir, 'bad.wav');
    writeFileSync(bad, 'not audio at all');
    const c = chat([], [`/audio ${bad}`, question, `/audio ${wav}`, question]);
    expect(c.status).toBe(1);
    expect(c.stderr).toContain('MM_AUDIO_DECODE');
    expect(c.stdout).toBe(`\n${ref.trimStart()}\n`);
  });
});

describe('mm run --audio: errors and help', () => {
  it('usage and typed errors', { timeout: 120_000 }, async () => {
    const wav = await synthWavFixture(1);
    const pair = await tinyAudioPair({ projector: 'voxtral' });
    const noProj = await runMain(['run', '-m', pair.model, '--audio', wav, '-p', 'x']);
    expect(noProj.code).toBe(2);
    expect(noProj.err).toContain('--mmproj');
    const bad = join(dir, 'corrupt.wav');
    writeFileSync(bad, new Uint8Array(2000).fill(7));
    const corrupt = await runMain([...runArgs(pair, ['--audio', bad], 'x'), '-q']);
    expect(corrupt.code).toBe(1);
    expect(corrupt.err).toContain('MM_AUDIO_DECODE');
    const tiny = tinyShapesPaths();
    const vision = await runMain([
      'run',
      '-m',
      tiny.llm,
      '--mmproj',
      tiny.mmproj,
      '--audio',
      wav,
      '-p',
      'x',
      '-t',
      '1',
    ]);
    expect(vision.code).toBe(1);
    expect(vision.err).toContain('MM_MODALITY_UNSUPPORTED');
    const help = await runMain(['run', '--help']);
    expect(help.out).toContain('--audio <file>');
    const chatHelp = await runMain(['chat', '--help']);
    expect(chatHelp.out).toContain('/audio <path>');
    const top = await runMain(['--help']);
    expect(top.out).toContain('--audio');
  });
});
