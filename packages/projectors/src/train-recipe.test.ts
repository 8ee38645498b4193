import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  formatScore,
  runRecipe,
  scoreWithMtmdCli,
  TINY_SHAPES_RECIPE,
} from './train-recipe.test-util.js';

// Issue 13's acceptance run: tiny-shapes with its projector re-initialised at random, the encoder and
// the LLM frozen, PT on generated descriptions then IT on generated questions (2 threads), scored by
// llama-mtmd-cli with the written mmproj on MODEL.md's 800 test cases. The shipped projector scores
// 796/800 (99.5%). Measured on the 2-core VM: 78 s of trainProjector (4 s encoding 3000 pictures),
// 797/800 after PT alone, 800/800 after PT + IT. The time is printed, not asserted (bench/train.mjs).

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('the PT -> IT recipe on tiny-shapes', () => {
  it("reaches the shipped projector's 99.5% under llama-mtmd-cli", {
    timeout: 1_200_000,
  }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-recipe-'));
    dirs.push(dir);
    const out = join(dir, 'trained.gguf');
    const { result, seconds } = await runRecipe({ dir, out, threads: 2 });
    const [pt, it_] = result.stages;
    console.log(
      `recipe ${JSON.stringify(TINY_SHAPES_RECIPE)}: trainProjector ${seconds.toFixed(1)} s (encode ${result.encodeSeconds.toFixed(1)} s, train ${result.trainSeconds.toFixed(1)} s); ` +
        `PT loss ${pt?.curve[0]?.loss.toFixed(3)} -> ${pt?.curve.at(-1)?.loss.toFixed(4)}, IT -> ${it_?.curve.at(-1)?.loss.toFixed(4)}`,
    );
    expect(result.problems).toEqual([]);
    expect(pt?.curve.at(-1)?.loss).toBeLessThan(0.05);
    const t0 = performance.now();
    const score = await scoreWithMtmdCli(out, 2);
    console.log(
      `llama-mtmd-cli, PT + IT: ${formatScore(score)} (${((performance.now() - t0) / 1000).toFixed(0)} s to score); wrong: ${score.wrong.join('; ')}`,
    );
    expect(score.cases).toBe(800);
    expect(score.correct).toBeGreaterThanOrEqual(796);
  });
});
