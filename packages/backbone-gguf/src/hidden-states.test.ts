import { readGguf, readTensorData } from '@mm/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import { maxAbsDiff, testModels } from './helpers.test-util.js';

const models = await testModels();

async function f32Tensor(path: string, name: string): Promise<Float32Array> {
  const file = await readGguf(path);
  const t = file.tensors.find((x) => x.name === name);
  if (t?.type !== 'F32') throw new Error(`test needs an F32 ${name}`);
  const bytes = await readTensorData(path, file, t);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

describe.each(models)('hidden states and token rows on $name', ({ path }) => {
  let backbone: Backbone;
  beforeAll(async () => {
    backbone = await Backbone.load(path);
  });
  afterAll(() => backbone.dispose());

  it('tokenEmbeddings gives the rows of token_embd.weight', async () => {
    const table = await f32Tensor(path, 'token_embd.weight');
    const n = backbone.nEmbd;
    const ids = [0, 5, backbone.nVocab - 1, 5];
    const rows = backbone.tokenEmbeddings(ids);
    expect(rows.length).toBe(ids.length * n);
    ids.forEach((id, i) => {
      expect(rows.subarray(i * n, (i + 1) * n)).toEqual(table.subarray(id * n, (id + 1) * n));
    });
    expect(() => backbone.tokenEmbeddings([backbone.nVocab])).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
  });

  it('the last hidden state is what the output head multiplies into the logits (≤ 1e-4), only when asked', async () => {
    const file = await readGguf(path);
    const head = file.tensors.some((t) => t.name === 'output.weight')
      ? await f32Tensor(path, 'output.weight')
      : await f32Tensor(path, 'token_embd.weight');
    const tokens = backbone.tokenize('<|im_start|>user\nWhat shape is it?<|im_end|>\n', {
      parseSpecial: true,
    });
    const plain = await backbone.createContext({ contextSize: 128, threads: 2 });
    const hs = await backbone.createContext({ contextSize: 128, threads: 2, hiddenStates: true });
    try {
      const a = await plain.decode({ tokens });
      const b = await hs.decode({ tokens, hidden: true });
      const hidden = b.hidden as Float32Array;
      const n = backbone.nEmbd;
      expect(hidden.length).toBe(n);
      expect(maxAbsDiff(a.logits as Float32Array, b.logits as Float32Array)).toBeLessThanOrEqual(
        1e-4,
      );
      const logits = b.logits as Float32Array;
      let worst = 0;
      for (let v = 0; v < logits.length; v++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += (head[v * n + i] as number) * (hidden[i] as number);
        worst = Math.max(worst, Math.abs(dot - (logits[v] as number)));
      }
      console.log(`hidden · output head vs logits: max |diff| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);

      // an embedding row fed back (what a talker does each frame) gives a hidden state too
      const row = backbone.tokenEmbeddings([7]);
      const c = await hs.decode({ embeddings: row, hidden: true });
      expect(c.hidden?.length).toBe(n);
      expect(maxAbsDiff(c.hidden as Float32Array, hidden)).toBeGreaterThan(0);
      const d = await hs.decode({ tokens: [7] });
      expect(d.hidden).toBeUndefined();
      await expect(plain.decode({ tokens: [7], hidden: true })).rejects.toMatchObject({
        code: 'MM_INVALID_ARGUMENT',
      });
    } finally {
      plain.dispose();
      hs.dispose();
    }
  });

  it('a sampler slot samples each decode as generate() does (same seed, same tokens)', async () => {
    const tokens = backbone.tokenize('<|im_start|>user\nWhat shape is it?<|im_end|>\n', {
      parseSpecial: true,
    });
    const sampling = { temperature: 0.9, topK: 20, topP: 0.9, seed: 1234 };
    const a = await backbone.createContext({ contextSize: 128, threads: 2 });
    const b = await backbone.createContext({ contextSize: 128, threads: 2, hiddenStates: true });
    try {
      const gen = await a.generate({ tokens, maxTokens: 12, sampling, ignoreEndOfGeneration: true })
        .result;
      b.setSampler(3, sampling);
      const got: number[] = [];
      let r = await b.decode({ tokens, sampleSlot: 3, hidden: true });
      while (got.length < gen.tokens.length) {
        got.push(r.token as number);
        r = await b.decode({ tokens: [r.token as number], sampleSlot: 3, hidden: true });
      }
      expect(got).toEqual([...gen.tokens]);
      // greedy: the argmax of the logits
      b.setSampler(0, { temperature: 0 });
      const g = await b.decode({ tokens: [5], sampleSlot: 0 });
      const l = g.logits as Float32Array;
      let best = 0;
      for (let i = 1; i < l.length; i++) if ((l[i] as number) > (l[best] as number)) best = i;
      expect(g.token).toBe(best);
      b.setSampler(0, null);
      await expect(b.decode({ tokens: [5], sampleSlot: 0 })).rejects.toMatchObject({
        code: 'MM_INVALID_ARGUMENT',
      });
      expect(() => b.setSampler(16, {})).toThrow(
        expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
      );
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
