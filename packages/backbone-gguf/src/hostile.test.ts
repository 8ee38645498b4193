import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { type GgufMetadata, type GgufValue, gv, writeGguf } from '@mm/gguf';
import { Prng, tinyLlamaSpec } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';
import { tinyShapes } from './helpers.test-util.js';

const dir = mkdtempSync(join(tmpdir(), 'mm-hostile-'));

async function variant(
  name: string,
  edit: (m: GgufMetadata) => void,
  dropTensor?: string,
): Promise<string> {
  const spec = tinyLlamaSpec({ seed: 3 });
  const metadata = new Map(spec.metadata as GgufMetadata);
  edit(metadata);
  const tensors = (spec.tensors ?? []).filter((t) => t.name !== dropTensor);
  const path = join(dir, `${name}.gguf`);
  await writeGguf(path, { metadata, tensors });
  return path;
}

const CODES = ['MM_GGUF_INVALID', 'MM_GGUF_UNSUPPORTED', 'MM_MODEL_LOAD'];

describe('hostile text-model files: typed errors, and other models keep working', () => {
  let good: Backbone;
  beforeAll(async () => {
    good = await Backbone.load(tinyShapes.llm);
  });
  afterAll(() => good.dispose());

  async function stillWorks() {
    const ctx = await good.createContext({ contextSize: 64, threads: 2 });
    const r = await ctx.generate({ tokens: [1, 3, 365, 15], maxTokens: 3 }).result;
    ctx.dispose();
    expect(r.tokens.length).toBeGreaterThan(0);
  }

  const cases: [string, (m: GgufMetadata) => void, string?, string?][] = [
    [
      'absurd block_count',
      (m) => m.set('llama.block_count', gv.uint32(1_000_000)),
      undefined,
      'block_count',
    ],
    ['zero block_count', (m) => m.set('llama.block_count', gv.uint32(0)), undefined, 'block_count'],
    [
      'absurd head_count',
      (m) => m.set('llama.attention.head_count', gv.uint32(4_000_000)),
      undefined,
      'head_count',
    ],
    [
      'head_count array of the wrong length',
      (m) =>
        m.set('llama.attention.head_count', gv.array('uint32', new Uint32Array([4, 4, 4, 4, 4]))),
      undefined,
      'entries',
    ],
    [
      'negative int32 embedding_length',
      (m) => m.set('llama.embedding_length', gv.int32(-64)),
      undefined,
      'negative',
    ],
    [
      'string where a count belongs',
      (m) => m.set('llama.block_count', gv.string('two')),
      undefined,
      'expected an integer',
    ],
    [
      'bos id beyond the vocab',
      (m) => m.set('tokenizer.ggml.bos_token_id', gv.uint32(99_999)),
      undefined,
      'not a token id',
    ],
    [
      'scores shorter than the vocab',
      (m) => m.set('tokenizer.ggml.scores', gv.array('float32', new Float32Array(3))),
      undefined,
      'one entry per token',
    ],
    ['missing token_embd', () => {}, 'token_embd.weight', 'token_embd'],
    ['missing architecture', (m) => m.delete('general.architecture'), undefined, 'architecture'],
    ['missing a layer tensor', () => {}, 'blk.1.attn_q.weight', 'attn_q'],
  ];

  it.each(cases)('%s', async (name, edit, drop, mention) => {
    const path = await variant(name.replace(/\W+/g, '-'), edit, drop);
    const err = await Backbone.load(path).catch((e) => e);
    expect(MmError.isInstance(err)).toBe(true);
    expect(CODES).toContain(err.code);
    if (mention) expect(err.message).toContain(mention);
    await stillWorks();
  });

  it('truncated and garbage files are MM_GGUF_INVALID', async () => {
    const bytes = readFileSync(tinyShapes.llm);
    for (const n of [0, 3, 20, 1000, 100_000, bytes.length - 7]) {
      const path = join(dir, `trunc-${n}.gguf`);
      writeFileSync(path, bytes.subarray(0, n));
      const err = await Backbone.load(path).catch((e) => e);
      expect(err.code).toBe('MM_GGUF_INVALID');
    }
    await stillWorks();
  });

  it('200 random metadata mutations: each loads or fails typed, never crashes', async () => {
    const spec = tinyLlamaSpec({ seed: 3 });
    const base = spec.metadata as GgufMetadata;
    const keys = [...base.keys()].filter(
      (k) => k !== 'tokenizer.ggml.tokens' && k !== 'general.alignment',
    );
    const rng = new Prng(2024);
    const interesting = [0, 1, 2, 3, 7, 255, 65535, 2 ** 31 - 1, 2 ** 32 - 1];
    let loaded = 0;
    let typed = 0;
    for (let i = 0; i < 200; i++) {
      const metadata = new Map(base);
      const key = keys[Math.floor(rng.uniform() * keys.length)] as string;
      const v = base.get(key) as GgufValue;
      const pick = interesting[Math.floor(rng.uniform() * interesting.length)] as number;
      let nv: GgufValue;
      if (v.type === 'array') nv = gv.uint32(pick);
      else if (v.type === 'string') nv = rng.uniform() < 0.5 ? gv.string('') : gv.uint32(pick);
      else if (v.type === 'float32') nv = gv.float32(rng.uniform() < 0.5 ? -pick : pick * 1e30);
      else nv = rng.uniform() < 0.3 ? gv.int32(-Math.min(pick || 1, 2 ** 31)) : gv.uint32(pick);
      metadata.set(key, nv);
      const path = join(dir, 'mutant.gguf');
      await writeGguf(path, { metadata, tensors: spec.tensors });
      try {
        const b = await Backbone.load(path);
        try {
          const ctx = await b.createContext({ contextSize: 32, threads: 1 });
          await ctx.generate({ tokens: [1, 300, 301], maxTokens: 2 }).result;
          ctx.dispose();
        } finally {
          b.dispose();
        }
        loaded++;
      } catch (e) {
        expect(MmError.isInstance(e)).toBe(true);
        typed++;
      }
    }
    console.log(
      `backbone metadata mutations: 200 cases, ${typed} typed errors, ${loaded} loaded and generated, 0 crashes`,
    );
    expect(loaded + typed).toBe(200);
    await stillWorks();
  });
});
