import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import type { Context } from './context.js';
import { testModels } from './helpers.test-util.js';
import { type ScheduleResult, Scheduler } from './scheduler.js';

const PROMPTS = [
  'Hello world',
  '<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\n',
  'The quick brown fox jumps over the lazy dog',
  '<|im_start|>user\nWhere is it?<|im_end|>\n<|im_start|>assistant\n a',
];
const N = 24;
const PER_SEQ = 128;

const models = await testModels();

describe.each(models)('Scheduler (native continuous batching) on $name', ({ path }) => {
  let backbone: Backbone;
  let single: Context;
  let shared: Context;
  let sched: Scheduler;
  let prompts: Int32Array[];
  const expected: number[][] = [];

  const alone = async (tokens: Int32Array, n = N) => {
    single.clear();
    return (await single.generate({ tokens, maxTokens: n, ignoreEndOfGeneration: true }).result)
      .tokens;
  };
  const whole = (seq: number, tokens: Int32Array, maxTokens = N, keep = 0) =>
    sched.submit({
      seq,
      keep,
      items: [{ tokens: tokens.subarray(keep), pos0: keep }],
      maxTokens,
      limit: PER_SEQ,
      ignoreEndOfGeneration: true,
    });

  beforeAll(async () => {
    backbone = await Backbone.load(path);
    single = await backbone.createContext({ contextSize: PER_SEQ, threads: 2 });
    shared = await backbone.createContext({
      contextSize: PER_SEQ * PROMPTS.length,
      sequences: PROMPTS.length,
      threads: 2,
    });
    sched = Scheduler.create(shared);
    prompts = PROMPTS.map((p) => backbone.tokenize(p, { parseSpecial: true }));
    for (const t of prompts) expected.push(await alone(t));
  });
  afterAll(() => {
    sched.dispose();
    shared.dispose();
    single.dispose();
    backbone.dispose();
  });

  it('requests joining a running batch get the greedy tokens each prompt gives alone; prompts and decode rows share steps', async () => {
    // the first two run long (a tiny step takes ~0.1 ms, and JS hears of tokens at most once a
    // millisecond, later on a loaded machine): the late two still find them generating
    const LONG = 96;
    const maxTokens = [LONG, LONG, N, N];
    const want = [
      await alone(prompts[0] as Int32Array, LONG),
      await alone(prompts[1] as Int32Array, LONG),
      expected[2],
      expected[3],
    ];
    const before = sched.stats();
    const results: Promise<ScheduleResult>[] = [];
    const submit = (seq: number, onToken?: (t: number) => void) => {
      const r = sched.submit({
        seq,
        keep: 0,
        items: [{ tokens: prompts[seq] as Int32Array, pos0: 0 }],
        maxTokens: maxTokens[seq] as number,
        limit: PER_SEQ,
        ignoreEndOfGeneration: true,
        onToken,
      });
      results[seq] = r.result;
    };
    // The others join once the first two are generating (from request 0's second token on, with
    // 94 of its tokens still to come).
    let seen = 0;
    let joined: () => void = () => {};
    const late = new Promise<void>((resolve) => {
      joined = resolve;
    });
    submit(0, () => {
      if (++seen === 2) {
        submit(2);
        submit(3);
        joined();
      }
    });
    submit(1);
    await late;
    const got = await Promise.all(results);
    for (const [i, r] of got.entries()) {
      expect(Array.from(r.tokens)).toEqual(want[i]);
      expect(r.stopReason).toBe('length');
      expect(r.decoded).toBe((maxTokens[i] as number) - 1);
      expect(r.prefilled).toBe(true);
      expect(r.prefillMs).toBeGreaterThanOrEqual(0);
    }
    const after = sched.stats();
    const promptRows = prompts.reduce((a, p) => a + p.length, 0);
    expect(after.prefillRows - before.prefillRows).toBe(promptRows);
    // the first token of each comes from its prompt's last row
    expect(after.decodeRows - before.decodeRows).toBe(2 * (LONG - 1) + 2 * (N - 1));
    expect(after.maxRows).toBeGreaterThanOrEqual(3);
    // fewer steps than one request after the other
    expect(after.tokenSteps - before.tokenSteps).toBeLessThan(2 * (LONG + 1) + 2 * (N + 1));
  });

  it('decodes the rows of requests that come in any order of sequence in order of sequence: each answer is its own', async () => {
    // llama.cpp takes a batch's sequences as consecutive ids (one KV stream each): the scheduler
    // reorders the rows, and each sampled row must still go to its own request
    const order = [3, 1, 2, 0];
    const before = sched.stats();
    const got = await Promise.all(
      order.map((seq) => whole(seq, prompts[seq] as Int32Array).result),
    );
    for (const [k, seq] of order.entries()) {
      expect(Array.from((got[k] as ScheduleResult).tokens)).toEqual(expected[seq]);
    }
    const after = sched.stats();
    expect(after.decodeRows - before.decodeRows).toBe(order.length * (N - 1));
    // together: fewer steps than one request after the other
    expect(after.decodeSteps - before.decodeSteps).toBeLessThan(order.length * (N - 1));
  });

  it.each([
    { generating: 0, span: 1, on: 'sequence 0, the span on 1' },
    { generating: 1, span: 0, on: 'sequence 1, the span on 0' },
  ])(
    'decodes generating rows in the same batches as chunks of a causal span: both answers exact (generating on $on)',
    async ({ generating, span }) => {
      // A span of token_embd rows is its text as embeddings: the answer must be the text's. A
      // scheduler with 3-row chunks (read when it starts) cuts it while request 0 generates.
      const prev = process.env['MM_PREFILL_CHUNK'];
      process.env['MM_PREFILL_CHUNK'] = '3';
      const SEQ = 512;
      const ctx = await backbone.createContext({ contextSize: SEQ * 2, sequences: 2, threads: 2 });
      const sc = Scheduler.create(ctx);
      const solo = await backbone.createContext({ contextSize: SEQ, threads: 2 });
      if (prev === undefined) delete process.env['MM_PREFILL_CHUNK'];
      else process.env['MM_PREFILL_CHUNK'] = prev;
      try {
        // request 0 runs long, so that it still generates when request 1 comes (a loaded machine)
        const LONG = SEQ - 32;
        const text = prompts[2] as Int32Array; // 9+ tokens: the span is all but the last 2
        const cut = text.length - 2;
        const want0 = Array.from(
          (
            await solo.generate({
              tokens: prompts[0] as Int32Array,
              maxTokens: LONG,
              ignoreEndOfGeneration: true,
            }).result
          ).tokens,
        );
        const want1 = await alone(text, N);
        let joined: () => void = () => {};
        const late = new Promise<void>((resolve) => {
          joined = resolve;
        });
        let seen = 0;
        let second: Promise<ScheduleResult> | undefined;
        const first = sc.submit({
          seq: generating,
          keep: 0,
          items: [{ tokens: prompts[0] as Int32Array, pos0: 0 }],
          maxTokens: LONG,
          limit: SEQ,
          ignoreEndOfGeneration: true,
          onToken: () => {
            if (++seen !== 2) return;
            second = sc.submit({
              seq: span,
              keep: 0,
              items: [
                {
                  embeddings: backbone.tokenEmbeddings(text.subarray(0, cut)),
                  nEmbd: backbone.nEmbd,
                  causal: true,
                  pos0: 0,
                },
                { tokens: text.subarray(cut), pos0: cut },
              ],
              maxTokens: N,
              limit: PER_SEQ,
              ignoreEndOfGeneration: true,
            }).result;
            joined();
          },
        }).result;
        await late;
        const [a, b] = await Promise.all([first, second as Promise<ScheduleResult>]);
        expect(Array.from(a.tokens)).toEqual(want0);
        expect(Array.from(b.tokens)).toEqual(want1);
        const st = sc.stats();
        expect(st.spans).toBe(1);
        // ceil(cut / 3) chunks, each with request 0's next token (it generates throughout)
        expect(st.mixedSteps).toBe(Math.ceil(cut / 3));
        expect(st.maxRows).toBeGreaterThanOrEqual(2);
      } finally {
        sc.dispose();
        ctx.dispose();
        solo.dispose();
      }
    },
  );

  it('keeps a prefix the sequence holds: only the new tokens are decoded, the answer is unchanged', async () => {
    const base = prompts[1] as Int32Array;
    const more = backbone.tokenize(' and where is it?', {});
    const longer = new Int32Array([...base, ...more]);
    const want = await alone(longer, 8);
    await whole(2, base, 4).result;
    const before = sched.stats();
    const r = await whole(2, longer, 8, base.length).result;
    expect(Array.from(r.tokens)).toEqual(want);
    expect(sched.stats().prefillRows - before.prefillRows).toBe(more.length);
  });

  it('streams tokens in order through onToken; a cancel ends one request and leaves the others exact', async () => {
    const streamed: number[] = [];
    const a = sched.submit({
      seq: 0,
      keep: 0,
      items: [{ tokens: prompts[0] as Int32Array, pos0: 0 }],
      maxTokens: 10_000,
      limit: PER_SEQ,
      ignoreEndOfGeneration: true,
      onToken: (t) => {
        streamed.push(t);
        if (streamed.length === 5) a.cancel();
      },
    });
    const b = whole(1, prompts[1] as Int32Array);
    const [ra, rb] = await Promise.all([a.result, b.result]);
    expect(ra.stopReason).toBe('cancel');
    expect(Array.from(ra.tokens)).toEqual(streamed);
    expect(streamed.length).toBeGreaterThanOrEqual(5);
    expect(streamed.slice(0, 5)).toEqual(expected[0]!.slice(0, 5));
    expect(Array.from(rb.tokens)).toEqual(expected[1]);
  });

  it('stops at the sequence limit with "context"', async () => {
    const t = prompts[2] as Int32Array;
    const r = await sched.submit({
      seq: 3,
      keep: 0,
      items: [{ tokens: t, pos0: 0 }],
      maxTokens: 1000,
      limit: t.length + 5,
      ignoreEndOfGeneration: true,
    }).result;
    expect(r.stopReason).toBe('context');
    expect(Array.from(r.tokens)).toEqual(expected[2]!.slice(0, r.tokens.length));
    expect(r.tokens.length).toBe(6);
  });

  it('gives typed errors: bad arguments synchronously, a busy sequence as a rejection; the context is owned', async () => {
    expect(() => whole(PROMPTS.length, prompts[0] as Int32Array)).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
    expect(() =>
      sched.submit({
        seq: 0,
        keep: 0,
        items: [{ tokens: new Int32Array([1 << 30]), pos0: 0 }],
        maxTokens: 1,
        limit: PER_SEQ,
      }),
    ).toThrow(expect.objectContaining({ code: expect.stringMatching(/^MM_/) }));
    expect(() =>
      sched.submit({ seq: 0, keep: 0, items: [], maxTokens: 1, limit: PER_SEQ }),
    ).toThrow(expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }));
    const first = whole(0, prompts[0] as Int32Array, 50);
    const second = whole(0, prompts[1] as Int32Array, 2);
    await expect(second.result).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    expect(Array.from((await first.result).tokens)).toEqual(
      await alone(prompts[0] as Int32Array, 50),
    );
    await expect(shared.decode({ tokens: prompts[0] as Int32Array, seq: 1 })).rejects.toMatchObject(
      {
        code: 'MM_INVALID_ARGUMENT',
      },
    );
  });

  it('rejects running requests with MM_DISPOSED on dispose, and the context is usable again after', async () => {
    const s = await backbone.createContext({ contextSize: PER_SEQ * 2, sequences: 2, threads: 1 });
    const sc = Scheduler.create(s);
    const r = sc.submit({
      seq: 0,
      keep: 0,
      items: [{ tokens: prompts[0] as Int32Array, pos0: 0 }],
      maxTokens: 100,
      limit: PER_SEQ,
      ignoreEndOfGeneration: true,
    });
    sc.dispose();
    await expect(r.result).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    expect(() => sc.stats()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    s.clear();
    const d = await s.decode({ tokens: prompts[0] as Int32Array, seq: 0 });
    expect(d.logits?.length).toBe(backbone.info.nVocab);
    s.dispose();
  });
});
