import { MmError } from '@mm/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import { BatchDecoder } from './batch.js';
import type { Context } from './context.js';
import { testModels } from './helpers.test-util.js';

const PROMPTS = [
  'Hello world',
  '<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\n',
  'The quick brown fox jumps over the lazy dog',
  '<|im_start|>user\nWhere is it?<|im_end|>\n<|im_start|>assistant\n a',
];
const N = 24;

const models = await testModels();

describe.each(models)('BatchDecoder (continuous batching) on $name', ({ path }) => {
  let backbone: Backbone;
  let single: Context;
  let shared: Context;
  let batch: BatchDecoder;

  beforeAll(async () => {
    backbone = await Backbone.load(path);
    single = await backbone.createContext({ contextSize: 128, threads: 2 });
    shared = await backbone.createContext({
      contextSize: 128 * PROMPTS.length,
      sequences: PROMPTS.length,
      threads: 2,
    });
    batch = BatchDecoder.create(shared);
  });
  afterAll(() => {
    batch.dispose();
    shared.dispose();
    single.dispose();
    backbone.dispose();
  });

  it('one decode per step for every sequence gives the same greedy tokens as generating alone, with sequences joining late', async () => {
    const prompts = PROMPTS.map((p) => backbone.tokenize(p, { parseSpecial: true }));
    const expected: number[][] = [];
    for (const tokens of prompts) {
      single.clear();
      const r = await single.generate({ tokens, maxTokens: N, ignoreEndOfGeneration: true }).result;
      expected.push(r.tokens);
    }

    const got: number[][] = prompts.map(() => []);
    const state = prompts.map((t) => ({ token: t[t.length - 1] as number, pos: t.length - 1 }));
    const active = new Set<number>();
    const join = async (seq: number) => {
      const t = prompts[seq] as Int32Array;
      shared.removeRange(seq, 0);
      if (t.length > 1) await shared.decode({ tokens: t.subarray(0, -1), seq, logits: 'none' });
      batch.start(seq);
      active.add(seq);
    };
    // Two sequences start; the others join after 3 and 7 steps.
    await join(0);
    await join(1);
    let steps = 0;
    let rows = 0;
    while (active.size > 0) {
      if (steps === 3) await join(2);
      if (steps === 7) await join(3);
      const seqs = [...active];
      const out = await batch.step(
        seqs.map((seq) => ({ seq, token: state[seq]!.token, pos: state[seq]!.pos })),
      );
      steps++;
      rows += seqs.length;
      seqs.forEach((seq, i) => {
        const tok = out[i] as number;
        got[seq]!.push(tok);
        state[seq] = { token: tok, pos: state[seq]!.pos + 1 };
        if (got[seq]!.length === N) {
          batch.finish(seq);
          active.delete(seq);
        }
      });
    }
    expect(got).toEqual(expected);
    expect(steps).toBe(N + 7);
    expect(rows).toBe(N * PROMPTS.length);
  });

  it('refuses unstarted or repeated sequences and bad positions with typed errors', async () => {
    const t = backbone.tokenize('Hello', {});
    shared.clear();
    await expect(batch.step([{ seq: 0, token: t[0] as number, pos: 0 }])).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    batch.start(0);
    await expect(
      batch.step([
        { seq: 0, token: t[0] as number, pos: 0 },
        { seq: 0, token: t[0] as number, pos: 1 },
      ]),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    await expect(
      batch.step([{ seq: 0, token: t[0] as number, pos: 1_000_000 }]),
    ).rejects.toMatchObject({ code: 'MM_OUT_OF_CONTEXT' });
    expect(() => batch.start(PROMPTS.length)).toThrow(MmError);
    const out = await batch.step([{ seq: 0, token: t[0] as number, pos: 0 }]);
    expect(out.length).toBe(1);
    batch.finish(0);
    shared.clear();
  });

  it('an already-aborted signal rejects with its reason before anything runs', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    batch.start(1);
    await expect(batch.step([{ seq: 1, token: 1, pos: 0 }], ac.signal)).rejects.toBe(reason);
    batch.finish(1);
  });

  it('is MM_DISPOSED after dispose, and a second dispose too', async () => {
    const b = BatchDecoder.create(shared);
    b.dispose();
    expect(() => b.start(0)).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => b.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
  });
});
