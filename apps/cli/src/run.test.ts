import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyLlamaFixture, tinyShapesPaths } from '@mm/testing';
import { describe, expect, it } from 'vitest';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');
const tiny = tinyShapesPaths();
const sample = (n: number) => join(tiny.samples, `sample_00${n}.png`);

/** `mm run` on the tiny-shapes pair with one image and a prompt, then any extra flags. */
function runArgs(image: string, prompt: string, ...extra: string[]): string[] {
  return ['run', '-m', tiny.llm, '--mmproj', tiny.mmproj, '--image', image, '-p', prompt, ...extra];
}

function mm(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('mm run', () => {
  it('prints only the answer on stdout, timings on stderr', () => {
    const r = mm(runArgs(sample(0), 'Describe the image.', '-t', '2'));
    expect(r.code).toBe(0);
    expect(r.out).toBe('a red circle on the left.\n');
    expect(r.err).toMatch(/prompt tokens .* first token .* tok\/s/);
  });

  it('--json prints text and stats; -n limits the answer', () => {
    const r = mm(runArgs(sample(2), 'What shape is it?', '--json'));
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.text).toBe('triangle.');
    expect(j.stats.imageTokens).toBe(36);
    expect(j.stats.promptTokens).toBe(51);
    const short = mm(runArgs(sample(0), 'Describe the image.', '-n', '2', '-q'));
    expect(short.out.trim().split(' ').length).toBeLessThanOrEqual(2);
  });

  it('errors are one clear line with a non-zero exit code', async () => {
    const cases: [string[], string][] = [
      [
        ['run', '-m', '/nope/model.gguf', '--mmproj', tiny.mmproj, '--image', sample(0), '-p', 'x'],
        'MM_FILE_NOT_FOUND',
      ],
      [
        [
          'run',
          '-m',
          await tinyLlamaFixture({ seed: 5 }),
          '--mmproj',
          tiny.mmproj,
          '--image',
          sample(0),
          '-p',
          'x',
        ],
        'MM_MODEL_MISMATCH',
      ],
      [['run', '-m', tiny.llm, '-p', 'x', '-c', '8'], 'MM_OUT_OF_CONTEXT'],
    ];
    const bad = join(mkdtempSync(join(tmpdir(), 'mm-cli-')), 'bad.png');
    writeFileSync(bad, Buffer.from('\x89PNG\r\n\x1a\nnot really a png at all'));
    cases.push([runArgs(bad, 'x'), 'MM_IMAGE_DECODE']);
    cases.push([runArgs(sample(0), 'long '.repeat(400)), 'MM_OUT_OF_CONTEXT']);
    for (const [args, code] of cases) {
      const r = mm(args);
      expect(r.code, `${code}: ${r.err}`).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toMatch(new RegExp(`^mm: ${code}: `, 'm'));
      expect(
        r.err
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('mm: ')),
      ).toHaveLength(1);
    }
    const usage = mm(['run', '-m', tiny.llm, '--image', sample(0), '-p', 'x']);
    expect(usage.code).toBe(2);
    expect(usage.err).toContain('--mmproj');
  });
});

describe('mm demo', () => {
  it('answers every question about the bundled samples correctly', () => {
    const r = mm(['demo', '--json', '-t', '2']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.summary.total).toBe(32);
    expect(j.summary.correct).toBe(32);
    expect(j.rows.filter((x: { cacheHit: boolean }) => x.cacheHit)).toHaveLength(24);
  });
});
