import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import {
  type GgufMetadata,
  type GgufValue,
  ggufToBuffer,
  gv,
  readGguf,
  readGgufFromBuffer,
  writeGguf,
} from '@mm/gguf';
import { probeModel } from '@mm/native';
import {
  growGgufString,
  keyFields,
  Prng,
  patchU32,
  patchU64,
  tensorFields,
  tinyLlamaSpec,
} from '@mm/testing';
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

  it('GGUF bounds: both readers refuse what the spec or llama.cpp forbids', async () => {
    const spec = tinyLlamaSpec({ seed: 3 });
    // a 65504-byte key first (the writer takes up to 65535), then grown by bytes at offsets
    const longKey = 'k'.repeat(65535 - 31);
    const metadata = new Map([
      [longKey, gv.uint8(1)],
      ['general.architectureZx', gv.string('clip')],
      ...(spec.metadata as GgufMetadata),
    ]);
    const base = ggufToBuffer({ metadata, tensors: spec.tensors, alignment: 32 });
    // 'general.architecture\0x' = 'clip', before the real key: C-string lookups find it first
    const zAt = keyFields(readGgufFromBuffer(base), 'general.architectureZx').type - 2;
    const shadowed = new Uint8Array(base);
    shadowed[zAt] = 0;
    // without the NUL key, the file loads (the long key is within the spec)
    const clean = new Map(metadata);
    clean.delete('general.architectureZx');
    const cleanBuf = ggufToBuffer({ metadata: clean, tensors: spec.tensors, alignment: 32 });
    const cleanFile = readGgufFromBuffer(cleanBuf);
    const key = keyFields(cleanFile, longKey).length;
    const tensor = tensorFields(cleanFile, 'token_embd.weight');
    const norm = tensorFields(cleanFile, 'output_norm.weight');
    const tokens = keyFields(cleanFile, 'tokenizer.ggml.tokens');
    // each message pattern matches both the TS reader's and the native one
    const cases: [string, Uint8Array, RegExp][] = [
      [
        'a key of 65536 bytes',
        patchU64(growGgufString(cleanBuf, key, 32), key, 65536n),
        /key 0 is 65536 bytes long, more than the 65535 the GGUF spec allows/,
      ],
      ['a NUL in a key that shadows general.architecture', shadowed, /NUL byte/],
      [
        'a tensor name of 64 bytes (GGML_MAX_NAME with its NUL)',
        // 17 + 47 bytes; the long key grows by 17 so that the data section keeps its alignment
        growGgufString(growGgufString(cleanBuf, key, 17), tensor.name + 17, 47),
        /name is 64 bytes long|name 0 is too long: 64 >= 64/,
      ],
      [
        'a tensor of 5 dimensions',
        patchU32(cleanBuf, norm.nDims, 5),
        /has 5 dimensions, more than 4|number of dimensions: 5 > 4/,
      ],
      [
        'a tensor of 2^32 - 1 dimensions',
        patchU32(cleanBuf, norm.nDims, 0xffffffff),
        /4294967295 dimensions, more than 4|number of dimensions: 4294967295 > 4/,
      ],
      [
        'an array of 2^62 tokens',
        patchU64(cleanBuf, tokens.value + 4, 1n << 62n),
        /4611686018427387904 elements|failed to read key-value pairs/,
      ],
      [
        'a string of 2^63 bytes',
        patchU64(cleanBuf, keyFields(cleanFile, 'general.name').value, 1n << 63n),
        /9223372036854775808 bytes long|string length 9223372036854775808 exceeds/,
      ],
    ];
    expect(readGgufFromBuffer(cleanBuf, { llamaCpp: true }).metadata.size).toBe(clean.size);
    const ok = join(dir, 'bounds-ok.gguf');
    writeFileSync(ok, cleanBuf);
    (await Backbone.load(ok)).dispose();
    for (const [name, bytes, mention] of cases) {
      const path = join(dir, `bounds-${name.replace(/\W+/g, '-')}.gguf`);
      writeFileSync(path, bytes);
      // Backbone.load reads the header with the TS reader first; probeModel goes straight to the
      // native checks that run before llama.cpp
      const backbone = await Backbone.load(path).catch((e) => e);
      const ts = await readGguf(path, { llamaCpp: true }).catch((e) => e);
      const native = await probeModel(path).catch((e) => e);
      expect([name, backbone.code, ts.code, native.code]).toEqual([
        name,
        'MM_GGUF_INVALID',
        'MM_GGUF_INVALID',
        'MM_GGUF_INVALID',
      ]);
      expect([name, ts.message]).toEqual([name, expect.stringMatching(mention)]);
      expect([name, native.message]).toEqual([name, expect.stringMatching(mention)]);
    }
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
