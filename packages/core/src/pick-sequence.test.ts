import { describe, expect, it } from 'vitest';
import { pickSequence, type SequenceChoice } from './answerer.js';

const free = (lastUsed = 0, keep = 0): SequenceChoice => ({ busy: false, lastUsed, keep });
const busy: SequenceChoice = { busy: true, lastUsed: 1, keep: 0 };

describe('pickSequence', () => {
  it('takes the longest reusable prefix first, wherever it is', () => {
    expect(pickSequence([busy, free(5, 3), free(1, 0), free(2, 9)])).toBe(3);
  });

  it('on a tie takes a free sequence between two busy ones, then beside one', () => {
    // 0 busy, 1 free, 2 busy: 1 joins both runs; 3 touches one; 4-5 none
    expect(pickSequence([busy, free(9), busy, free(1), free(1), free(1)])).toBe(1);
    expect(pickSequence([busy, busy, free(9), free(1), free(1), free(1)])).toBe(2);
    // ids are not circular: 7 does not neighbour 0
    expect(
      pickSequence([busy, free(5), free(1), free(1), free(1), free(1), free(1), free(0)]),
    ).toBe(1);
  });

  it('then the least recently used, and -1 when all are busy', () => {
    expect(pickSequence([free(4), free(2), free(3)])).toBe(1);
    expect(pickSequence([busy, free(4), busy, busy, free(2), busy])).toBe(4);
    expect(pickSequence([free(0), free(0)])).toBe(0);
    expect(pickSequence([busy, busy])).toBe(-1);
    expect(pickSequence([])).toBe(-1);
  });

  // Requests of random length on 8 sequences, a new one as soon as one ends: the busy sequences'
  // runs of consecutive ids, each of which llama.cpp decodes as its own ubatch.
  function runsPerStep(clients: number, pick: (s: SequenceChoice[]) => number): number {
    let r = 7;
    const rnd = () => {
      r = (Math.imul(r, 1103515245) + 12345) >>> 0;
      return r / 2 ** 32;
    };
    const left = new Array<number>(8).fill(0);
    const lastUsed = new Array<number>(8).fill(0);
    let clock = 0;
    const start = () => {
      const s = pick(
        left.map((l, i) => ({ busy: l > 0, lastUsed: lastUsed[i] as number, keep: 0 })),
      );
      left[s] = 1 + Math.floor(rnd() * 64);
      lastUsed[s] = ++clock;
    };
    for (let c = 0; c < clients; c++) start();
    let runs = 0;
    const steps = 20_000;
    for (let t = 0; t < steps; t++) {
      runs += left.filter((l, i) => l > 0 && !((left[i - 1] ?? 0) > 0)).length;
      for (let i = 0; i < 8; i++) if ((left[i] as number) > 0) left[i] = (left[i] as number) - 1;
      while (left.filter((l) => l > 0).length < clients) start();
    }
    return runs / steps;
  }

  it.each([3, 4, 5, 6])('%i requests at once on 8 sequences stay in about one run', (clients) => {
    const lru = (s: SequenceChoice[]) =>
      s.reduce(
        (b, x, i) => (!x.busy && (b < 0 || x.lastUsed < (s[b] as SequenceChoice).lastUsed) ? i : b),
        -1,
      );
    const ours = runsPerStep(clients, pickSequence);
    expect(ours).toBeLessThan(1.1);
    // least recently used alone, for contrast
    expect(runsPerStep(clients, lru)).toBeGreaterThan(1.7);
  });
});
