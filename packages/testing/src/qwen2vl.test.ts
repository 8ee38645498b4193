import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { getArray, getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import { syntheticPngFixture } from './fixtures.js';
import { mtmdOracleBinary, runMtmdOracle } from './mtmd-oracle.js';
import { mtmdCli, oracleDir, refGenerate } from './oracle.js';
import {
  QWEN_VL_MMPROJ_FAMILIES,
  QWEN_VL_TEST_IMAGE_SIZES,
  QWEN2VL_CHAT_TEMPLATE,
  qwenVlGrid,
  REALISTIC_QWEN25VL_3B,
  resolveTinyQwen2vlOptions,
  resolveTinyQwenVlMmprojOptions,
  tinyQwen2vlBuffer,
  tinyQwen2vlFixtureName,
  tinyQwen2vlSpecialIds,
  tinyQwen2vlVocab,
  tinyQwenVlMmprojBuffer,
  tinyQwenVlMmprojFixtureName,
  tinyQwenVlPair,
} from './qwen2vl.js';
import { byteLevelChars } from './text-vocab.js';
import { TokenType } from './tiny-llama.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('tiny qwen2vl text model', () => {
  it('has ChatML and the vision markers as single CONTROL tokens, and consistent BPE merges', () => {
    const v = tinyQwen2vlVocab();
    const ids = tinyQwen2vlSpecialIds();
    for (const t of ['<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>'] as const) {
      expect(v.tokens.indexOf(t), t).toBe(ids[t]);
      expect(v.tokens.lastIndexOf(t), t).toBe(ids[t]);
      expect(v.tokenTypes[ids[t]], t).toBe(TokenType.CONTROL);
    }
    expect(new Set(v.tokens).size).toBe(v.tokens.length);
    expect(v.tokens.slice(0, 256)).toEqual(byteLevelChars());
    expect(v.tokens.length).toBeGreaterThan(500);
    const known = new Set(v.tokens);
    for (const m of v.merges ?? []) {
      const [a, b] = m.split(' ') as [string, string];
      expect(known.has(a) && known.has(b) && known.has(a + b), m).toBe(true);
    }
  });

  it('is deterministic, small, with the qwen2vl keys and Qwen2 attention biases', () => {
    const buf = tinyQwen2vlBuffer();
    expect(sha256(tinyQwen2vlBuffer())).toBe(sha256(buf));
    expect(sha256(tinyQwen2vlBuffer({ seed: 1 }))).not.toBe(sha256(buf));
    expect(buf.length).toBeLessThan(1 << 20);
    const f = readGgufFromBuffer(buf, { llamaCpp: true });
    expect(getString(f, 'general.architecture')).toBe('qwen2vl');
    expect(getString(f, 'tokenizer.ggml.model')).toBe('gpt2');
    expect(getString(f, 'tokenizer.ggml.pre')).toBe('qwen2');
    expect(getString(f, 'tokenizer.chat_template')).toBe(QWEN2VL_CHAT_TEMPLATE);
    expect(Array.from(getArray(f, 'qwen2vl.rope.dimension_sections', 'int32'))).toEqual([
      2, 3, 3, 0,
    ]);
    expect(getUint(f, 'tokenizer.ggml.eos_token_id')).toBe(tinyQwen2vlSpecialIds()['<|im_end|>']);
    const shapes = Object.fromEntries(f.tensors.map((t) => [t.name, t.shape]));
    expect(shapes['blk.0.attn_q.bias']).toEqual([64]);
    expect(shapes['blk.0.attn_k.bias']).toEqual([32]);
    expect(shapes['blk.1.attn_v.bias']).toEqual([32]);
    expect(shapes['blk.0.attn_output.bias']).toBeUndefined();
    expect(shapes['output.weight']).toBeDefined();
    const tied = readGgufFromBuffer(tinyQwen2vlBuffer({ tiedEmbeddings: true }));
    expect(tied.tensors.some((t) => t.name === 'output.weight')).toBe(false);
  });

  it('the defaults are pinned: a change here needs a FIXTURE_GENERATOR_VERSION bump', () => {
    const pins: [Uint8Array, number, string][] = [
      [
        tinyQwen2vlBuffer(),
        630240,
        '8ab75c1c143a0e06cc9a9fae4492f6e207321f17abc419e73d698d3021b14d2e',
      ],
      [
        tinyQwenVlMmprojBuffer({ family: 'qwen2vl_merger' }),
        109120,
        'ffb9dd4643c3a7d52a28396fcc1dc56579041fc9a201fa0374e1377e4033971b',
      ],
      [
        tinyQwenVlMmprojBuffer({ family: 'qwen2.5vl_merger' }),
        223616,
        '7044d3b643f1cba83ce38916472872ef054a04e4be3dd59455ffe774b92f0473',
      ],
    ];
    for (const [buf, length, hash] of pins)
      expect([buf.length, sha256(buf)]).toEqual([length, hash]);
  });

  it('rejects impossible options, names fixtures by every option', () => {
    for (const bad of [{ nEmbd: 66 }, { nHeadKv: 3 }, { ropeSections: [4, 4, 4, 0] as const }]) {
      let err: unknown;
      try {
        resolveTinyQwen2vlOptions(bad);
      } catch (e) {
        err = e;
      }
      expect(MmError.hasCode(err, 'MM_INVALID_ARGUMENT'), JSON.stringify(bad)).toBe(true);
    }
    expect(resolveTinyQwen2vlOptions({ nEmbd: 2048, nHead: 16 }).ropeSections).toEqual([
      16, 24, 24, 0,
    ]);
    expect(tinyQwen2vlFixtureName()).not.toBe(tinyQwen2vlFixtureName({ tiedEmbeddings: true }));
  });
});

describe('tiny Qwen-VL mmproj', () => {
  it.each(QWEN_VL_MMPROJ_FAMILIES)('%s: the keys, tensors and types libmtmd loads', (family) => {
    const buf = tinyQwenVlMmprojBuffer({ family });
    expect(tinyQwenVlMmprojBuffer({ family })).toEqual(buf);
    expect(buf.length).toBeLessThan(1 << 20);
    const f = readGgufFromBuffer(buf);
    const is25 = family === 'qwen2.5vl_merger';
    expect(getString(f, 'clip.projector_type')).toBe(family);
    expect(getUint(f, 'clip.vision.projection_dim')).toBe(64);
    expect(f.metadata.get('clip.vision.n_wa_pattern')?.value).toBe(is25 ? 2 : undefined);
    expect(f.metadata.get('clip.use_silu')?.value).toBe(is25 ? true : undefined);
    const byName = new Map(f.tensors.map((t) => [t.name, t]));
    for (const k of ['v.patch_embd.weight', 'v.patch_embd.weight.1']) {
      expect(byName.get(k)?.shape, k).toEqual([8, 8, 3, 32]);
      expect(byName.get(k)?.type, k).toBe(is25 ? 'F32' : 'F16');
    }
    expect(byName.has('v.patch_embd.bias')).toBe(false);
    expect(byName.has('v.position_embd.weight')).toBe(false);
    expect(byName.get('v.blk.1.attn_out.bias')?.shape).toEqual([32]);
    expect(byName.has('v.blk.0.ln1.bias')).toBe(!is25);
    expect(byName.has('v.post_ln.bias')).toBe(!is25);
    expect(byName.get('v.blk.0.ffn_gate.weight')?.shape).toEqual(is25 ? [32, 48] : undefined);
    expect(byName.get('v.blk.0.ffn_down.weight')?.shape).toEqual([48, 32]);
    expect(byName.get('mm.0.weight')?.shape).toEqual([128, 128]);
    expect(byName.get('mm.2.weight')?.shape).toEqual([128, 64]);
    expect(byName.get('mm.2.bias')?.shape).toEqual([64]);
  });

  it('rejects impossible options, names fixtures by every option', () => {
    expect(() => resolveTinyQwenVlMmprojOptions({ family: 'qwen2vl_merger', nHead: 16 })).toThrow(
      /multiple of 4/,
    );
    expect(() =>
      resolveTinyQwenVlMmprojOptions({ family: 'qwen2vl_merger', nWaPattern: 2 }),
    ).toThrow(/window/);
    expect(() => resolveTinyQwenVlMmprojOptions({ family: 'qwen2.5vl_merger', nFf: 32 })).toThrow(
      /nFf/,
    );
    expect(() => resolveTinyQwenVlMmprojOptions({ family: 'qwen3vl' as 'qwen2vl_merger' })).toThrow(
      /family/,
    );
    const names = new Set(
      [
        { family: 'qwen2vl_merger' as const },
        { family: 'qwen2.5vl_merger' as const },
        { family: 'qwen2.5vl_merger' as const, nWaPattern: 1 },
        { family: 'qwen2.5vl_merger' as const, seed: 1 },
        REALISTIC_QWEN25VL_3B,
      ].map(tinyQwenVlMmprojFixtureName),
    );
    expect(names.size).toBe(5);
  });

  it('qwenVlGrid follows calc_size_preserved_ratio (align, min and max tokens)', () => {
    const grids = QWEN_VL_TEST_IMAGE_SIZES.map(([w, h]) => qwenVlGrid(w, h, 8));
    expect(grids.map((g) => [g.width, g.height, g.tokens])).toEqual([
      [64, 64, 16],
      [144, 96, 54],
      [48, 176, 33],
      [48, 48, 9],
    ]);
    // the realistic shape: 448x448 at patch 14 → 16x16 tokens; huge images are capped at 4096
    expect(qwenVlGrid(448, 448, 14).tokens).toBe(256);
    expect(qwenVlGrid(8000, 6000, 14).tokens).toBeLessThanOrEqual(4096);
  });
});

const haveCli = existsSync(join(oracleDir(), 'llama-mtmd-cli'));
const haveGen = existsSync(join(oracleDir(), 'mm-ref-generate'));
const haveOracle = mtmdOracleBinary() !== undefined;
const unbuilt = (tool: string, have: boolean) =>
  have ? '' : ` [skipped: ${tool} is not built: npm run build:oracle -w @mm/native]`;

describe.skipIf(!haveGen)(
  `tokenizer as llama.cpp sees it${unbuilt('mm-ref-generate', haveGen)}`,
  () => {
    it('the markers are single tokens with parse_special; BOS is not added', async () => {
      const { llm } = await tinyQwenVlPair({ family: 'qwen2vl_merger' });
      const ids = tinyQwen2vlSpecialIds();
      const r = await refGenerate({
        model: llm,
        prompt: '<|im_start|>user\n<|vision_start|><|vision_end|>describe<|im_end|>',
        maxTokens: 1,
      });
      expect(r.promptTokens[0]).toBe(ids['<|im_start|>']);
      expect(r.promptTokens).toContain(ids['<|vision_start|>']);
      expect(r.promptTokens).toContain(ids['<|vision_end|>']);
      expect(r.promptTokens.at(-1)).toBe(ids['<|im_end|>']);
      // no piece of a marker was tokenised as text
      expect(r.promptTokens).not.toContain(tinyQwen2vlVocab().tokens.indexOf('<'));
    });
  },
);

describe.each(QWEN_VL_MMPROJ_FAMILIES)('%s with libmtmd', (family) => {
  const images = QWEN_VL_TEST_IMAGE_SIZES.map(([w, h], i) => ({ w, h, seed: 20 + i }));

  it.skipIf(!haveCli)(
    `llama-mtmd-cli answers for every image size${unbuilt('llama-mtmd-cli', haveCli)}`,
    { timeout: 120_000 },
    async () => {
      const { llm, mmproj } = await tinyQwenVlPair({ family });
      for (const { w, h, seed } of images) {
        const image = await syntheticPngFixture(w, h, seed);
        const text = await mtmdCli({
          model: llm,
          mmproj,
          images: [image],
          prompt: 'describe',
          maxTokens: 8,
          threads: 2,
        });
        console.log(`${family} ${w}x${h}: ${JSON.stringify(text)}`);
        expect(text.trim().length, `${w}x${h}`).toBeGreaterThan(0);
        expect(new Set(text.split(/\s+/).filter(Boolean)).size, text).toBeGreaterThan(1);
      }
      // the tied-embeddings variant (Qwen2-VL-2B, Qwen2.5-VL-3B) loads and runs too
      const tied = await tinyQwenVlPair({ family }, { tiedEmbeddings: true });
      const image = await syntheticPngFixture(64, 64, 20);
      const args = { images: [image], prompt: 'describe', maxTokens: 4, threads: 2 };
      expect(typeof (await mtmdCli({ model: tied.llm, mmproj: tied.mmproj, ...args }))).toBe(
        'string',
      );
    },
  );

  it.skipIf(!haveOracle)(
    `libmtmd embeddings have (w / 2p) x (h / 2p) rows after its resize${unbuilt('mm-ref-mtmd-embed', haveOracle)}`,
    { timeout: 120_000 },
    async () => {
      const { llm, mmproj, nEmbd } = await tinyQwenVlPair({ family });
      const o = resolveTinyQwenVlMmprojOptions({ family });
      const paths = await Promise.all(
        images.map(({ w, h, seed }) => syntheticPngFixture(w, h, seed)),
      );
      const results = await runMtmdOracle({ mmproj, textModel: llm, images: paths });
      expect(results.length).toBe(images.length);
      for (const [i, r] of results.entries()) {
        const { w, h } = images[i]!;
        const g = qwenVlGrid(w, h, o.patchSize);
        expect([r.width, r.height]).toEqual([w, h]);
        expect(r.pixelsShape).toEqual([3, g.height, g.width]);
        expect([r.nTokens, r.nEmbd], `${w}x${h}`).toEqual([
          (g.width / (2 * o.patchSize)) * (g.height / (2 * o.patchSize)),
          nEmbd,
        ]);
        expect(r.embd.length).toBe(g.tokens * nEmbd);
        expect(r.embd.every(Number.isFinite)).toBe(true);
        console.log(`${family} ${w}x${h} → ${g.width}x${g.height}: ${r.nTokens} tokens`);
      }
    },
  );
});
