import { join } from 'node:path';
import { mtmdCli } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, ask, testsetDir, tiny } from './helpers.test-util.js';
import { MultimodalModel } from './multimodal-model.js';

// 200 fresh images × the 4 canonical questions: our greedy answers must equal llama-mtmd-cli's,
// character for character, for every case. Runs mtmd-cli 800 times (about 0.1 s each).
describe('greedy output equals llama-mtmd-cli on the 800 testset cases', () => {
  let model: MultimodalModel;
  beforeAll(async () => {
    model = await MultimodalModel.load({
      model: tiny.llm,
      mmproj: tiny.mmproj,
      threads: 2,
      contextSize: 4096,
    });
  });
  afterAll(() => model.dispose());

  it('800/800 identical; accuracy against answers.json printed', { timeout: 900_000 }, async () => {
    const items = answers(testsetDir);
    expect(items.length).toBe(200);
    let same = 0;
    let cases = 0;
    let oursRight = 0;
    let refRight = 0;
    const diffs: string[] = [];
    const queue = items.flatMap((item) => item.questions.map((q) => ({ item, q })));
    // First llama-mtmd-cli for every case (two processes at a time), then ours in-process.
    const refs: string[] = new Array(queue.length);
    const refFor = (i: number) => {
      const { item, q } = queue[i] as (typeof queue)[number];
      return mtmdCli({
        model: tiny.llm,
        mmproj: tiny.mmproj,
        images: [join(testsetDir, item.image)],
        prompt: q.question,
        maxTokens: 32,
        threads: 1,
      });
    };
    let next = 0;
    const worker = async () => {
      while (next < queue.length) {
        const i = next++;
        refs[i] = await refFor(i);
      }
    };
    await Promise.all([worker(), worker()]);
    for (let i = 0; i < queue.length; i++) {
      const { item, q } = queue[i] as (typeof queue)[number];
      const ours = (
        await model.chat(ask(join(testsetDir, item.image), q.question), { maxTokens: 32 })
      ).text;
      let ref = refs[i] as string;
      if (ours !== ref) {
        // llama-mtmd-cli's asynchronous logger now and then lets a log fragment (a '.', a
        // newline) into stdout under load. Its greedy answer is deterministic, so ask it twice
        // more: two runs that agree are its answer.
        const again = [await refFor(i), await refFor(i)];
        if (again[0] === again[1]) ref = again[0] as string;
      }
      cases++;
      if (ours === ref) same++;
      else
        diffs.push(
          `${item.image} ${q.question}: ours ${JSON.stringify(ours)} ref ${JSON.stringify(ref)}`,
        );
      if (ours.trim() === q.answer) oursRight++;
      if (ref.trim() === q.answer) refRight++;
    }
    console.log(
      `mtmd parity: ${same}/${cases} identical to llama-mtmd-cli; accuracy ours ${oursRight}/${cases} (${((100 * oursRight) / cases).toFixed(1)}%), llama-mtmd-cli ${refRight}/${cases}`,
    );
    if (diffs.length) console.log(diffs.slice(0, 20).join('\n'));
    expect(same).toBe(cases);
    expect(cases).toBe(800);
  });
});
