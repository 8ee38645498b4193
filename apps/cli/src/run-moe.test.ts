import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mtmdCli, syntheticPngFixture, tinyMmprojPair, tinyMoePair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// A mixture-of-experts text model (tiny llama in Mixtral form, 4 experts, top 2) behind the tiny
// `mlp` CLIP mmproj: `mm run` prints the answer llama-mtmd-cli prints for the same flags, and
// `mm inspect` tells the experts.

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'mm.js');

const row = (out: string, key: string) =>
  out
    .split('\n')
    .find((l) => l.startsWith(`${key.padEnd(20)} `))
    ?.slice(21);

describe('mm with a MoE text model', () => {
  it('mm run prints only the answer, equal to llama-mtmd-cli --temp 0, on 2 pictures', {
    timeout: 300_000,
  }, async () => {
    const files = await tinyMoePair();
    const sizes: [number, number][] = [
      [70, 40],
      [32, 96],
    ];
    for (const [i, [w, h]] of sizes.entries()) {
      const image = await syntheticPngFixture(w, h, 40 + i);
      const prompt = i === 0 ? 'Describe the image.' : 'What is in the picture?';
      const n = 10 + i * 6;
      const ref = await mtmdCli({
        model: files.llm,
        mmproj: files.mmproj,
        images: [image],
        prompt,
        maxTokens: n,
        threads: 2,
      });
      const args = [
        'run',
        '-m',
        files.llm,
        '--mmproj',
        files.mmproj,
        '--image',
        image,
        '-p',
        prompt,
        '--temp',
        '0',
        '-n',
        String(n),
        '-t',
        '2',
      ];
      const r = await runMain(args);
      console.log(
        `moe ${w}x${h}: mm ${JSON.stringify(r.out)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(r.code, r.err).toBe(0);
      expect(ref.trim().length).toBeGreaterThan(0);
      expect(r.out).toBe(`${ref.trimStart()}\n`);
      expect(r.err).toMatch(/prompt tokens .* image\), encode .* tok\/s/);
      if (i === 0) {
        const p = spawnSync(process.execPath, [bin, ...args, '-q'], {
          encoding: 'utf8',
          timeout: 120_000,
        });
        expect([p.status, p.stdout, p.stderr]).toEqual([0, `${ref.trimStart()}\n`, '']);
      }
    }
  });

  it('mm inspect shows the experts (and no experts row for a dense model)', async () => {
    const files = await tinyMoePair();
    const r = await runMain(['inspect', files.llm]);
    expect(r.code, r.err).toBe(0);
    expect(row(r.out, 'architecture')).toBe('llama');
    expect(row(r.out, 'experts')).toBe('4 per block, 2 used per token (mixture of experts)');
    const json = await runMain(['inspect', files.llm, '--json']);
    expect(JSON.parse(json.out).text).toMatchObject({ expertCount: 4, expertUsedCount: 2 });
    const dense = await tinyMmprojPair({ family: 'mlp' });
    const d = await runMain(['inspect', dense.llm]);
    expect(d.code, d.err).toBe(0);
    expect(row(d.out, 'experts')).toBeUndefined();
    expect(row(d.out, 'feed forward')).toBe('128');
  });
});
