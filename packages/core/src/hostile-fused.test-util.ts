import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Backbone, nativeModel } from '@mm/backbone-gguf';
import { MmError } from '@mm/errors';
import { type FusedEmbedding, FusedMedia, inspectFused } from '@mm/projectors';
import { expect } from 'vitest';

// What the hostile-file tests of libmtmd's fused path share (pictures: long-tail-hostile.test.ts,
// sound: audio-hostile.test.ts): every case written, inspected and loaded, and when it loads, run.

/** A generated hostile mmproj: what was done to it, and its bytes. */
export interface HostileCase {
  name: string;
  bytes: Uint8Array;
}

/** The media rows of a fused embedding, in order (to compare a model's output before and after). */
export function mediaRows(r: FusedEmbedding): Float32Array[] {
  return r.items.flatMap((it) => (it.kind === 'media' ? [it.rows] : []));
}

/**
 * Each case through inspectFused and FusedMedia.load on `backbone`, then `run` when it loads (it
 * must give a media chunk). Every error must be an MmError with a code in `allowed`; an abort of
 * llama.cpp caught on its thread counts as '<code> (assert caught)'. Returns the outcomes' counts
 * and how many loaded. MM_HOSTILE_TRACE=1 prints each case before it runs.
 */
export async function runHostileFused(o: {
  label: string;
  cases: readonly HostileCase[];
  dir: string;
  backbone: Backbone;
  threads: number;
  allowed: ReadonlySet<string>;
  run: (f: FusedMedia) => Promise<FusedEmbedding>;
}): Promise<{ tally: Map<string, number>; loaded: number }> {
  const tally = new Map<string, number>();
  let loaded = 0;
  for (const [i, c] of o.cases.entries()) {
    const path = join(o.dir, `${o.label}-${i}.gguf`);
    writeFileSync(path, c.bytes);
    if (process.env['MM_HOSTILE_TRACE']) process.stderr.write(`${o.label} ${i}: ${c.name}\n`);
    let outcome = 'ok';
    try {
      await inspectFused(path);
      const f = await FusedMedia.load(path, nativeModel(o.backbone), { threads: o.threads });
      try {
        loaded++;
        const r = await o.run(f);
        expect(r.items.some((it) => it.kind === 'media')).toBe(true);
      } finally {
        f.dispose();
      }
    } catch (e) {
      if (!MmError.isInstance(e)) throw new Error(`${c.name}: not an MmError: ${String(e)}`);
      if (!o.allowed.has(e.code)) throw new Error(`${c.name}: ${e.code}: ${e.message}`);
      // libmtmd asserts that mm.node caught on its own thread (a safety net: validate instead)
      outcome = e.message.includes('llama.cpp aborted') ? `${e.code} (assert caught)` : e.code;
    }
    tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
  }
  return { tally, loaded };
}
