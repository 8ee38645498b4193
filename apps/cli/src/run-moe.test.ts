import { tinyMmprojPair, tinyMoePair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';
import { expectRunsLikeMtmdCli } from './run-families.test-util.js';

// A mixture-of-experts text model (tiny llama in Mixtral form, 4 experts, top 2) behind the tiny
// `mlp` CLIP mmproj: `mm run` prints the answer llama-mtmd-cli prints for the same flags, and
// `mm inspect` tells the experts.

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
    const refs = await expectRunsLikeMtmdCli(files, sizes, { label: 'moe', seed: 40 });
    for (const ref of refs) expect(ref.trim().length).toBeGreaterThan(0);
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
