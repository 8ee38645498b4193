import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mtmdCli, tinyShapesPaths, writeTinyShapesDataset } from '@mm/testing';
import { type TrainProgress, type TrainProjectorResult, trainProjector } from './index.js';

/**
 * The survey's PT -> IT recipe on tiny-shapes, as issue 13 states it: the shipped projector thrown
 * away (re-initialised at random), the encoder and the LLM frozen, pre-training on descriptions,
 * then instruction tuning on the four kinds of question; scored by llama-mtmd-cli on MODEL.md's
 * 800 test cases. Shared by train-recipe.test.ts and bench/train.mjs.
 */
export const TINY_SHAPES_RECIPE = {
  ptPictures: 2000,
  itPictures: 1000,
  ptSteps: 150,
  itSteps: 60,
  batchSize: 64,
  lr: 3e-3,
  warmup: 10,
  seed: 1,
  dataSeed: 31,
} as const;

export type Recipe = { -readonly [K in keyof typeof TINY_SHAPES_RECIPE]: number };

/** Writes (once per folder) the recipe's PT and IT files: generated pictures, never the test set's. */
export async function recipeData(
  dir: string,
  r: Recipe = TINY_SHAPES_RECIPE,
): Promise<{ pt: string; it: string }> {
  const pt = join(dir, `pt-${r.dataSeed}-${r.ptPictures}.jsonl`);
  const it = join(dir, `it-${r.dataSeed}-${r.itPictures}.jsonl`);
  if (!existsSync(pt)) {
    await writeTinyShapesDataset(dir, {
      count: r.ptPictures,
      seed: r.dataSeed,
      kind: 'pt',
      name: `pt-${r.dataSeed}-${r.ptPictures}`,
    });
  }
  if (!existsSync(it)) {
    await writeTinyShapesDataset(dir, {
      count: r.itPictures,
      seed: r.dataSeed + 1,
      kind: 'it',
      name: `it-${r.dataSeed}-${r.itPictures}`,
    });
  }
  return { pt, it };
}

/** Trains the recipe; `seconds` is the wall time of trainProjector (encode, lay out, train, write). */
export async function runRecipe(o: {
  dir: string;
  out: string;
  threads?: number;
  recipe?: Recipe;
  onProgress?: (p: TrainProgress) => void;
}): Promise<{ result: TrainProjectorResult; seconds: number }> {
  const r = o.recipe ?? TINY_SHAPES_RECIPE;
  const tiny = tinyShapesPaths();
  const data = await recipeData(o.dir, r);
  const t0 = performance.now();
  const result = await trainProjector({
    model: tiny.llm,
    mmproj: tiny.mmproj,
    out: o.out,
    projector: 'mlp',
    init: 'random',
    stages: [
      { kind: 'pt', data: data.pt, steps: r.ptSteps },
      { kind: 'it', data: data.it, steps: r.itSteps },
    ],
    optimizer: { lr: r.lr, warmup: r.warmup, schedule: 'cosine' },
    batchSize: r.batchSize,
    seed: r.seed,
    threads: o.threads ?? 2,
    saveStages: true,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return { result, seconds: (performance.now() - t0) / 1000 };
}

export interface MtmdScore {
  right: Record<string, number>;
  total: Record<string, number>;
  correct: number;
  cases: number;
  wrong: string[];
}

/**
 * Exact-match accuracy of llama-mtmd-cli (greedy, answers trimmed) with an mmproj on MODEL.md's
 * test set: 200 pictures x the four canonical questions. `jobs` processes run at once (one thread each).
 */
export async function scoreWithMtmdCli(mmproj: string, jobs = 2): Promise<MtmdScore> {
  const tiny = tinyShapesPaths();
  const set = JSON.parse(await readFile(join(tiny.testset, 'answers.json'), 'utf8')) as {
    items: { image: string; questions: { kind: string; question: string; answer: string }[] }[];
  };
  const cases = set.items.flatMap((item) =>
    item.questions.map((q) => ({ image: join(tiny.testset, item.image), ...q })),
  );
  const score: MtmdScore = { right: {}, total: {}, correct: 0, cases: cases.length, wrong: [] };
  let next = 0;
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      while (next < cases.length) {
        const c = cases[next++] as (typeof cases)[number];
        const text = await mtmdCli({
          model: tiny.llm,
          mmproj,
          images: [c.image],
          prompt: c.question,
          maxTokens: 16,
          threads: 1,
        });
        score.total[c.kind] = (score.total[c.kind] ?? 0) + 1;
        if (text.trim() === c.answer) {
          score.right[c.kind] = (score.right[c.kind] ?? 0) + 1;
          score.correct++;
        } else {
          score.wrong.push(
            `${c.image.split('/').pop()} "${c.question}" -> "${text.trim()}" (want "${c.answer}")`,
          );
        }
      }
    }),
  );
  return score;
}

/** `describe 200/200 · color 199/200 · ...` */
export function formatScore(s: MtmdScore): string {
  const kinds = Object.keys(s.total).sort();
  const pct = ((100 * s.correct) / s.cases).toFixed(2);
  return `${kinds.map((k) => `${k} ${s.right[k] ?? 0}/${s.total[k]}`).join(' · ')} · all ${s.correct}/${s.cases} (${pct}%)`;
}
