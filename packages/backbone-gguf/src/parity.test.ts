import { refGenerate, tinyLlamaFixture } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import type { Context } from './context.js';
import { testModels } from './helpers.test-util.js';

const PROMPTS = [
  'Hello world',
  '<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\n',
  'The quick brown fox jumps over the lazy dog',
  '<|im_start|>user\nWhere is it?<|im_end|>\n<|im_start|>assistant\n a',
];

const models = [
  ...(await testModels()),
  // Q8_0 weights: on a CPU with AMX, ggml's AMX kernels multiply them (tile instructions; the
  // prompt's rows take the tiled path). Built with GCC 12 they raised SIGILL until patch 0004.
  {
    name: 'generated tiny llama, Q8_0 weights',
    path: await tinyLlamaFixture({ seed: 7, weightType: 'Q8_0' }),
  },
];

describe.each(models)('greedy generation equals llama.cpp on $name', ({ path }) => {
  let backbone: Backbone;
  let context: Context;

  beforeAll(async () => {
    backbone = await Backbone.load(path);
    context = await backbone.createContext({ contextSize: 256, threads: 2 });
  });
  afterAll(() => {
    context.dispose();
    backbone.dispose();
  });

  it.each(PROMPTS)('prompt %j, 64 tokens', async (prompt) => {
    const ref = await refGenerate({ model: path, prompt, maxTokens: 64 });
    expect(Array.from(backbone.tokenize(prompt, { parseSpecial: true }))).toEqual(ref.promptTokens);
    const tokens: number[] = [];
    let text = '';
    const gen = context.generate({ prompt, maxTokens: 64 });
    for await (const t of gen) {
      if (t.token >= 0) tokens.push(t.token);
      text += t.text;
    }
    const result = await gen.result;
    console.log(
      `${path.split('/').pop()} ${JSON.stringify(prompt).slice(0, 40)}: ${tokens.length} tokens, ref ${ref.tokens.length}, equal ${JSON.stringify(tokens) === JSON.stringify(ref.tokens)}`,
    );
    expect(tokens).toEqual(ref.tokens);
    expect(result.tokens).toEqual(ref.tokens);
    expect(text).toBe(ref.text);
    expect(result.text).toBe(ref.text);
    expect(result.stopReason).toBe(ref.tokens.length === 64 ? 'length' : 'eog');
  });
});
