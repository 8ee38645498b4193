import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MultimodalModel } from '@mm/core';
import { type CliIo, ExitCode } from '../io.js';
import { bundledModel, interruptSignal } from '../model-options.js';

export const demoHelp = `mm demo [--json] [-t <threads>]

Runs the bundled tiny-shapes model (a 1.1M-parameter vision-language model trained on
pictures of coloured shapes) on its sample images: the four kinds of question about each,
with the answer, whether it is right, and timings. The second and later questions about an
image hit the embedding cache (no encoder time) and reuse nothing else.`;

interface Item {
  image: string;
  questions: { kind: string; question: string; answer: string }[];
}

export async function runDemo(io: CliIo, values: Record<string, unknown>): Promise<number> {
  const b = bundledModel();
  const json = values.json === true;
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  const items: Item[] = JSON.parse(readFileSync(join(b.samples, 'answers.json'), 'utf8')).items;
  const interrupt = interruptSignal();
  const t0 = performance.now();
  const model = await MultimodalModel.load({
    model: b.model,
    mmproj: b.mmproj,
    threads,
    signal: interrupt.signal,
  });
  const loadMs = performance.now() - t0;
  const rows: {
    image: string;
    question: string;
    answer: string;
    expected: string;
    correct: boolean;
    encodeMs: number;
    ttftMs: number;
    totalMs: number;
    cacheHit: boolean;
  }[] = [];
  try {
    if (!json) {
      io.out(`mm demo: tiny-shapes (${b.dir})\nloaded in ${loadMs.toFixed(0)} ms\n\n`);
      io.out(
        `${'image'.padEnd(15)}${'question'.padEnd(27)}${'answer'.padEnd(32)}${'ok'.padEnd(4)}${'encode'.padStart(9)}${'1st tok'.padStart(9)}${'total'.padStart(9)}\n`,
      );
    }
    for (const item of items) {
      const kinds = new Set<string>();
      for (const q of item.questions) {
        if (kinds.has(q.kind)) continue; // the canonical (first) question of each kind
        kinds.add(q.kind);
        const start = performance.now();
        const { text, stats } = await model.chat(
          [
            {
              role: 'user',
              content: [
                { type: 'image', image: join(b.samples, item.image) },
                { type: 'text', text: q.question },
              ],
            },
          ],
          { maxTokens: 16, signal: interrupt.signal },
        );
        const answer = text.trim();
        const row = {
          image: item.image,
          question: q.question,
          answer,
          expected: q.answer,
          correct: answer === q.answer,
          encodeMs: stats.encodeMs,
          ttftMs: stats.timeToFirstTokenMs,
          totalMs: performance.now() - start,
          cacheHit: stats.imageCacheHits > 0,
        };
        rows.push(row);
        if (!json) {
          io.out(
            `${row.image.padEnd(15)}${row.question.padEnd(27)}${row.answer.padEnd(32)}${(row.correct ? 'yes' : 'NO').padEnd(4)}` +
              `${`${row.encodeMs.toFixed(1)}ms`.padStart(9)}${`${row.ttftMs.toFixed(1)}ms`.padStart(9)}${`${row.totalMs.toFixed(1)}ms`.padStart(9)}\n`,
          );
        }
      }
    }
  } finally {
    interrupt.dispose();
    model.dispose();
  }
  const correct = rows.filter((r) => r.correct).length;
  const first = rows.filter((r) => !r.cacheHit);
  const cached = rows.filter((r) => r.cacheHit);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : 0);
  const summary = {
    correct,
    total: rows.length,
    loadMs,
    meanFirstTokenMs: {
      newImage: mean(first.map((r) => r.ttftMs)),
      cachedImage: mean(cached.map((r) => r.ttftMs)),
    },
  };
  if (json) {
    io.out(`${JSON.stringify({ summary, rows }, null, 2)}\n`);
  } else {
    io.out(
      `\n${correct}/${rows.length} correct. Mean time to first token: ${summary.meanFirstTokenMs.newImage.toFixed(1)} ms for a new image, ` +
        `${summary.meanFirstTokenMs.cachedImage.toFixed(1)} ms when the image is cached.\n`,
    );
  }
  return correct === rows.length ? ExitCode.ok : ExitCode.error;
}
