import { readGguf, readTensorData } from '@mm/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import { maxAbsDiff, testModels } from './helpers.test-util.js';

const models = await testModels();

async function tokenEmbeddingRows(
  path: string,
  tokens: Int32Array,
  nEmbd: number,
): Promise<Float32Array> {
  const file = await readGguf(path);
  const t = file.tensors.find((x) => x.name === 'token_embd.weight');
  if (t?.type !== 'F32') throw new Error('test needs an F32 token_embd.weight');
  const bytes = await readTensorData(path, file, t);
  const table = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out = new Float32Array(tokens.length * nEmbd);
  tokens.forEach((tok, i) => {
    out.set(table.subarray(tok * nEmbd, (tok + 1) * nEmbd), i * nEmbd);
  });
  return out;
}

describe.each(models)('embedding input on $name', ({ path }) => {
  let backbone: Backbone;
  beforeAll(async () => {
    backbone = await Backbone.load(path);
  });
  afterAll(() => backbone.dispose());

  it('decoding the token-embedding rows of a prompt gives the logits of decoding the tokens (≤ 1e-4)', async () => {
    const tokens = backbone.tokenize('<|im_start|>user\nWhat shape is it?<|im_end|>\n', {
      parseSpecial: true,
    });
    const rows = await tokenEmbeddingRows(path, tokens, backbone.nEmbd);
    const a = await backbone.createContext({ contextSize: 128, threads: 2 });
    const b = await backbone.createContext({ contextSize: 128, threads: 2 });
    try {
      const byTokens = await a.decode({ tokens, logits: 'all' });
      const byEmbeddings = await b.decode({ embeddings: rows, logits: 'all' });
      expect(byTokens.logits?.length).toBe(tokens.length * backbone.nVocab);
      const diff = maxAbsDiff(byTokens.logits as Float32Array, byEmbeddings.logits as Float32Array);
      console.log(
        `${path.split('/').pop()}: ${tokens.length} positions x ${backbone.nVocab} logits, max |diff| ${diff.toExponential(2)}`,
      );
      expect(diff).toBeLessThanOrEqual(1e-4);
      // The continuation after an embedding prefix decodes like after the same tokens.
      const next = backbone.tokenize('<|im_start|>assistant\n', {
        addBos: false,
        parseSpecial: true,
      });
      const la = await a.decode({ tokens: next });
      const lb = await b.decode({ tokens: next });
      expect(maxAbsDiff(la.logits as Float32Array, lb.logits as Float32Array)).toBeLessThanOrEqual(
        1e-4,
      );
      expect(
        b
          .sequenceTokens()
          .slice(0, tokens.length)
          .every((t) => t === -1),
      ).toBe(true);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('accepts an Embeddings-like handle and checks its width', async () => {
    const ctx = await backbone.createContext({ contextSize: 64, threads: 2 });
    try {
      const rows = new Float32Array(3 * backbone.nEmbd).fill(0.01);
      const handle = { nTokens: 3, nEmbd: backbone.nEmbd, toFloat32Array: () => rows };
      const r = await ctx.decode({ embeddings: handle, causal: false });
      expect(r.nPast).toBe(3);
      expect(r.logits?.length).toBe(backbone.nVocab);
      const wrong = {
        nTokens: 3,
        nEmbd: backbone.nEmbd + 1,
        toFloat32Array: () => new Float32Array(3 * (backbone.nEmbd + 1)),
      };
      await expect(ctx.decode({ embeddings: wrong })).rejects.toMatchObject({
        code: 'MM_MODEL_MISMATCH',
      });
    } finally {
      ctx.dispose();
    }
  });
});

describe('pooled text embeddings', () => {
  it('mean-pools the last hidden states of a text: deterministic, per-text, model width', async () => {
    const path = (await testModels())[0]?.path as string;
    const backbone = await Backbone.load(path);
    const ctx = await backbone.createContext({
      contextSize: 64,
      threads: 2,
      embeddings: true,
      pooling: 'mean',
    });
    try {
      const a = await ctx.embed('the red circle');
      const b = await ctx.embed('the red circle');
      const c = await ctx.embed('a blue square at the top');
      expect(a.length).toBe(backbone.nEmbd);
      expect(a.every(Number.isFinite)).toBe(true);
      expect(maxAbsDiff(a, b)).toBe(0);
      expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    } finally {
      ctx.dispose();
      backbone.dispose();
    }
    const plain = await Backbone.load(path);
    const gen = await plain.createContext({ contextSize: 64 });
    await expect(gen.embed('x')).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    gen.dispose();
    plain.dispose();
  });
});
