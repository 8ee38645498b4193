import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import type { Context } from './context.js';
import { tinyShapes } from './helpers.test-util.js';

const Q = (q: string) => `<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n`;

interface RefPrompt {
  question: string;
  pre_image_ids: number[];
  post_image_ids: number[];
}

describe('tokenizer, template and sampling on tiny-shapes', () => {
  let backbone: Backbone;
  let ctx: Context;
  beforeAll(async () => {
    backbone = await Backbone.load(tinyShapes.llm);
    ctx = await backbone.createContext({ contextSize: 256, threads: 2, sequences: 2 });
  });
  afterAll(() => {
    ctx.dispose();
    backbone.dispose();
  });

  it('tokenizes each prompt segment exactly as llama.cpp did (reference_tokens.json)', () => {
    const ref = JSON.parse(readFileSync(tinyShapes.referenceTokens, 'utf8'));
    const prompts = ref.prompts as RefPrompt[];
    expect(prompts.length).toBe(13);
    for (const p of prompts) {
      const pre = backbone.tokenize('<|im_start|>user\n', { addBos: true, parseSpecial: true });
      const post = backbone.tokenize(`${p.question}<|im_end|>\n<|im_start|>assistant\n`, {
        addBos: false,
        parseSpecial: true,
      });
      expect(Array.from(pre)).toEqual(p.pre_image_ids);
      expect(Array.from(post)).toEqual(p.post_image_ids);
    }
    const answers = ref.answers as Record<string, number[]>;
    for (const [text, ids] of Object.entries(answers).slice(0, 40)) {
      expect(backbone.detokenize(ids.slice(0, -1))).toBe(text);
    }
  });

  it('token attributes and end-of-generation', () => {
    expect(backbone.bos).toBe(1);
    expect(backbone.eos).toBe(4);
    expect(backbone.tokenAttributes(4)).toMatchObject({ control: true, endOfGeneration: true });
    expect(backbone.tokenAttributes(15)).toMatchObject({ byte: true, endOfGeneration: false });
    expect(backbone.isEndOfGeneration(2)).toBe(true);
    expect(Buffer.from(backbone.tokenBytes(15)).toString()).toBe('\n');
    expect(() => backbone.tokenAttributes(100000)).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
    expect(() => backbone.detokenize([1, -3])).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
  });

  it("renders the model's own Jinja chat template through llama.cpp; a broken template is MM_CHAT_TEMPLATE", () => {
    const p = backbone.applyChatTemplate([
      { role: 'user', content: 'What color is the shape?' },
      { role: 'assistant', content: 'red.' },
      { role: 'user', content: 'Where is it?' },
    ]);
    expect(p).toBe(
      '<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\nred.<|im_end|>\n' +
        '<|im_start|>user\nWhere is it?<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(
      backbone.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: false }),
    ).toBe('<|im_start|>user\nx<|im_end|>\n');
    expect(() =>
      backbone.applyChatTemplate([{ role: 'user', content: 'x' }], {
        template: '{% for m in messages %}{{ m.content',
      }),
    ).toThrow(expect.objectContaining({ code: 'MM_CHAT_TEMPLATE' }));
  });

  it('stop sequences end the text before the stop string', async () => {
    const full = await ctx.generate({ prompt: 'Hello world', maxTokens: 24 }).result;
    const words = full.text.trim().split(' ');
    expect(words.length).toBeGreaterThan(3);
    const stop = ` ${words[2]}`;
    const r = await ctx.generate({ prompt: 'Hello world', maxTokens: 24, stop: [stop] }).result;
    expect(r.stopReason).toBe('stop');
    expect(r.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  });

  it('seeded sampling is reproducible; different seeds differ', async () => {
    const run = (seed: number) =>
      ctx.generate({
        prompt: 'Hello',
        maxTokens: 24,
        ignoreEndOfGeneration: true,
        sampling: { temperature: 1.5, topK: 40, topP: 0.95, minP: 0.01, repeatPenalty: 1.1, seed },
      }).result;
    const a = await run(1);
    const b = await run(1);
    const c = await run(2);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
    // Options are validated in JS, synchronously, before anything crosses into C++.
    expect(() => ctx.generate({ prompt: 'x', sampling: { topP: 2 } })).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT', argument: 'sampling.topP' }),
    );
  });

  it('a GBNF grammar constrains the output; a bad grammar is MM_GRAMMAR', async () => {
    const grammar = 'root ::= ("red" | "blue" | "green") "." ';
    for (const q of ['What shape is it?', 'Where is it?', 'Describe the image.']) {
      const r = await ctx.generate({ prompt: Q(q), maxTokens: 8, sampling: { grammar } }).result;
      expect(['red.', 'blue.', 'green.']).toContain(r.text.trim());
    }
    await expect(
      ctx.generate({ prompt: 'x', sampling: { grammar: 'root ::= ( "a" ' } }).result,
    ).rejects.toMatchObject({ code: 'MM_GRAMMAR' });
  });

  it('a JSON schema constrains the output to valid JSON of that shape', async () => {
    const schema = {
      type: 'object',
      properties: {
        color: { enum: ['red', 'green', 'blue'] },
        size: { type: 'integer', minimum: 1, maximum: 9 },
      },
      required: ['color', 'size'],
      additionalProperties: false,
    };
    const r = await ctx.generate({
      prompt: Q('Describe the image.'),
      maxTokens: 48,
      sampling: { jsonSchema: schema },
    }).result;
    const value = JSON.parse(r.text);
    expect(['red', 'green', 'blue']).toContain(value.color);
    expect(Number.isInteger(value.size)).toBe(true);
  });

  it('reuses the cached prefix of a follow-up prompt and answers as a fresh context would', async () => {
    const first = Q('What color is the shape?');
    const a = await ctx.generate({ prompt: first, maxTokens: 8 }).result;
    expect(a.cachedTokens).toBeLessThan(5);
    const follow = `${first}${a.text}<|im_end|>\n<|im_start|>user\nWhere is it?<|im_end|>\n<|im_start|>assistant\n`;
    const b = await ctx.generate({ prompt: follow, maxTokens: 8 }).result;
    const promptLen = backbone.tokenize(first, { parseSpecial: true }).length;
    expect(b.cachedTokens).toBeGreaterThanOrEqual(promptLen);
    const fresh = await backbone.createContext({ contextSize: 256, threads: 2 });
    const c = await fresh.generate({ prompt: follow, maxTokens: 8 }).result;
    fresh.dispose();
    expect(b.tokens).toEqual(c.tokens);
    expect(c.cachedTokens).toBe(0);
  });

  it('two sequences in one context generate independently', async () => {
    const p0 = Q('What color is the shape?');
    const p1 = Q('Where is it?');
    const solo0 = await ctx.generate({ prompt: p0, maxTokens: 8, seq: 0 }).result;
    const solo1 = await ctx.generate({ prompt: p1, maxTokens: 8, seq: 1 }).result;
    ctx.clear();
    const [a, b] = await Promise.all([
      ctx.generate({ prompt: p1, maxTokens: 8, seq: 1 }).result,
      ctx.generate({ prompt: p0, maxTokens: 8, seq: 0 }).result,
    ]);
    expect(a.tokens).toEqual(solo1.tokens);
    expect(b.tokens).toEqual(solo0.tokens);
    expect(() => ctx.nPast(2)).toThrow(expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }));
  });

  it('saves and restores KV state (Buffer and file); copies sequences; removes ranges', async () => {
    ctx.clear();
    const prompt = Q('Which shape do you see?');
    await ctx.decode({ tokens: backbone.tokenize(prompt, { parseSpecial: true }), seq: 0 });
    const saved = await ctx.saveState({ seq: 0 });
    const n = ctx.nPast(0);
    const first = await ctx
      .generate({ tokens: [], append: true, maxTokens: 6 })
      .result.catch((e) => e);
    expect(first.code).toBe('MM_INVALID_ARGUMENT'); // nothing to decode
    const a = await ctx.generate({ prompt, maxTokens: 6 }).result;
    expect(a.cachedTokens).toBe(n - 1);
    ctx.clear();
    expect(ctx.nPast(0)).toBe(0);
    await ctx.loadState(saved);
    expect(ctx.nPast(0)).toBe(n);
    const b = await ctx.generate({ prompt, maxTokens: 6 }).result;
    expect(b.tokens).toEqual(a.tokens);
    expect(b.cachedTokens).toBe(n - 1);
    const file = join(mkdtempSync(join(tmpdir(), 'mm-state-')), 'kv.bin');
    await ctx.saveStateToFile(file, { seq: 0 });
    ctx.clear();
    await ctx.loadStateFromFile(file, { seq: 1 });
    expect(ctx.sequenceTokens(1).length).toBe(ctx.sequenceTokens(1).length);
    const c = await ctx.generate({ prompt, maxTokens: 6, seq: 1 }).result;
    expect(c.tokens).toEqual(a.tokens);
    ctx.copySequence(1, 0);
    expect(ctx.sequenceTokens(0)).toEqual(ctx.sequenceTokens(1));
    ctx.removeRange(0, 3);
    expect(ctx.nPast(0)).toBe(3);
    writeFileSync(file, Buffer.from('garbage'));
    await expect(ctx.loadStateFromFile(file)).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    await expect(ctx.loadStateFromFile(`${file}.missing`)).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
  });
});
