import { syntheticPngFixture, tinyGemma3Pair, tinyLongTailPair, tinyQwenVlPair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { runMain } from './main.test-util.js';

// mm bench on the tiny new-family fixtures: values only (BENCH.md: tests never check times).
// Needs the test-only reference tools (llama-mtmd-cli, mm-bench-vision, mm-peak-rss): pretest
// builds them.

interface Row {
  metric: string;
  oursRange: [number, number];
  refRange: [number, number];
  ours: number;
  ref: number;
  ratio: number | null;
  refStat?: string;
}

async function bench(model: string, mmproj: string, image: string) {
  const r = await runMain([
    'bench',
    '-m',
    model,
    '--mmproj',
    mmproj,
    '--image',
    image,
    '-t',
    '1',
    '--json',
  ]);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out);
}

function expectSound(
  report: ReturnType<typeof JSON.parse>,
  projectorType: string,
  rows: number,
  causal: boolean,
) {
  // the encoder + projector output equals libmtmd's, bit for bit
  expect(report.conditions.imageEncodeMaxAbsDiff).toBe(0);
  expect(report.imageEncode.maxAbsDiff).toBe(0);
  expect(report.imageEncode.projectorType).toBe(projectorType);
  expect(report.imageEncode.chunks).toBe(1);
  expect(report.imageEncode.rows).toBe(rows);
  expect(report.imageEncode.nEmbd).toBe(64);
  // llama.cpp's prompt-eval timer skips a non-causal span: its decode comes from the log instead
  expect(report.conditions.refImageSpanFromLog).toBe(!causal);
  for (const side of [report.imageEncode.oursMs, report.imageEncode.refMs]) {
    expect(side.min).toBeLessThanOrEqual(side.median);
    expect(side.median).toBeLessThanOrEqual(side.max);
  }
  const pr = report.imageEncode.pairRatio;
  for (const x of [pr.min, pr.median, pr.max, report.imageEncode.ratio]) {
    expect(Number.isFinite(x) && x > 0).toBe(true);
  }
  expect(report.rows.map((r: Row) => r.metric)).toEqual([
    'image encode: encoder + projector (ms)',
    'image encode in the pipeline (ms)',
    'prefill: image span + text (ms)',
    'decode (tok/s)',
    '  ours incl. sampling and hand-over to JS',
    'time to first token, new image (ms)',
    '  ours from the file (read + decode it too)',
    'peak RSS, fresh process (MiB)',
  ]);
  for (const r of report.rows as Row[]) {
    expect(Number.isFinite(r.ours) && r.ours > 0, r.metric).toBe(true);
    if (r.refStat === undefined) {
      for (const x of [r.ref, r.ratio])
        expect(typeof x === 'number' && Number.isFinite(x) && x > 0, r.metric).toBe(true);
    } else {
      // llama-mtmd-cli's whole-ms log: a mean of readings, and a ratio only when one is above 0
      expect(r.metric).toBe('image encode in the pipeline (ms)');
      expect(Number.isFinite(r.ref) && r.ref >= 0).toBe(true);
      if (r.refRange[1] > 0) expect(r.ratio).toBeCloseTo(r.ours / r.ref, 9);
      else expect([r.ref, r.ratio]).toEqual([0, null]);
    }
    // the spread of each side holds its median (the mean, for a whole-ms log)
    expect(r.oursRange[0]).toBeLessThanOrEqual(r.ours);
    expect(r.ours).toBeLessThanOrEqual(r.oursRange[1]);
    expect(r.refRange[0]).toBeLessThanOrEqual(r.ref);
    expect(r.ref).toBeLessThanOrEqual(r.refRange[1]);
  }
  // the same greedy text as llama-mtmd-cli (the chat template rendered as it renders it), and the
  // second question served from the embedding cache
  expect(report.sameAnswer).toBe(true);
  expect(report.secondQuestion.cacheHits).toBe(true);
  expect(report.secondQuestion.encodeMs).toBe(0);
  expect(report.secondQuestion.cachedTokens).toBeGreaterThan(0);
  expect(report.conditions.reps).toBe(10);
  expect(report.conditions.threads).toBe(1);
}

describe('mm bench on the new families', () => {
  it('qwen2.5vl_merger: a 90x61 picture sizes the graph (96x64: 6x4 merged tokens, windows)', async () => {
    const p = await tinyQwenVlPair({ family: 'qwen2.5vl_merger' });
    const report = await bench(p.llm, p.mmproj, await syntheticPngFixture(90, 61));
    expectSound(report, 'qwen2.5vl_merger', 24, true);
  }, 300_000);

  it('gemma3: every picture resized to the square input (16 tokens)', async () => {
    const p = await tinyGemma3Pair();
    const report = await bench(p.llm, p.mmproj, await syntheticPngFixture(90, 61));
    expectSound(report, 'gemma3', 16, false);
  }, 300_000);

  it('a file on the fused path (pixtral) is refused with the reason, not an internal error', async () => {
    const p = await tinyLongTailPair({ family: 'pixtral' });
    const r = await runMain([
      'bench',
      '-m',
      p.llm,
      '--mmproj',
      p.mmproj,
      '--image',
      await syntheticPngFixture(64, 64),
      '-t',
      '1',
    ]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('MM_UNSUPPORTED_FAMILY');
    expect(r.err).toContain("projector type 'pixtral' runs on libmtmd's own graphs");
    expect(r.err).not.toContain('internal error');
  }, 120_000);
});
