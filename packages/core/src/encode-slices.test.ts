// MM_ENCODE_SLICE_MS is read once per process, at its first graph compute: every graph after the
// first (which measures the rate) is then computed a few nodes at a time.
process.env.MM_ENCODE_SLICE_MS = '0.001';

import { join } from 'node:path';
import { Scheduler } from '@mm/backbone-gguf';
import { runMtmdOracle } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { ModelComponents } from './components.js';
import { tiny } from './helpers.test-util.js';

describe('an image encode in slices', () => {
  it("lends the compute gate to the steps of a generating answer, and its rows stay libmtmd's", async () => {
    const comp = await ModelComponents.load({
      model: tiny.llm,
      mmproj: tiny.mmproj,
      threads: 2,
      imageCacheBytes: 0, // every embedImage encodes
    });
    const context = await comp.backbone.createContext({ contextSize: 512, threads: 2 });
    const sched = Scheduler.create(context);
    try {
      const pictures = ['sample_000.png', 'sample_001.png', 'sample_002.png'].map((f) =>
        join(tiny.samples, f),
      );
      const ref = await runMtmdOracle({ mmproj: tiny.mmproj, images: pictures, threads: 2 });
      const rowsOf = async (p: string) => {
        const m = await comp.embedImage(p);
        expect(m.cached).toBe(false);
        expect(m.chunks).toHaveLength(1);
        return Array.from((m.chunks[0] as { rows: Float32Array }).rows);
      };
      // the first compute measures the rate; nothing waits for the gate yet
      expect(await rowsOf(pictures[0] as string)).toEqual(Array.from(ref[0]!.embd));

      // an answer that generates throughout: its scheduler thread asks for the gate step by step
      let tokens = 0;
      let first!: () => void;
      const started = new Promise<void>((r) => {
        first = r;
      });
      const req = sched.submit({
        seq: 0,
        keep: 0,
        items: [{ tokens: comp.backbone.tokenize('Hello world', { parseSpecial: true }), pos0: 0 }],
        maxTokens: 400,
        limit: 512,
        ignoreEndOfGeneration: true,
        onToken: () => {
          if (tokens++ === 0) first();
        },
      });
      await started;
      const before = sched.stats().lentSteps;
      for (let round = 0; round < 3; round++) {
        for (const [i, p] of pictures.entries()) {
          // bit for bit libmtmd's, in slices with decode steps between them
          expect(await rowsOf(p)).toEqual(Array.from(ref[i]!.embd));
        }
      }
      const lent = sched.stats().lentSteps - before;
      console.log(`9 encodes beside a generating answer: ${lent} decode steps ran between slices`);
      expect(lent).toBeGreaterThan(0);
      req.cancel();
      const r = await req.result;
      expect(r.stopReason === 'cancel' || r.stopReason === 'length').toBe(true);
    } finally {
      sched.dispose();
      context.dispose();
      comp.dispose();
    }
  });
});
