import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import { syntheticPngFixture } from './fixtures.js';
import {
  GEMMA3_CHAT_TEMPLATE,
  GEMMA3_SPECIAL_IDS,
  GEMMA3_TEST_IMAGE_SIZES,
  gemma3ImageTokens,
  REALISTIC_GEMMA3_SIGLIP,
  resolveTinyGemma3MmprojOptions,
  resolveTinyGemma3Options,
  tinyGemma3Buffer,
  tinyGemma3FixtureName,
  tinyGemma3MmprojBuffer,
  tinyGemma3MmprojFixtureName,
  tinyGemma3Pair,
  tinyGemma3Vocab,
} from './gemma3.js';
import { mtmdOracleBinary, runMtmdOracle } from './mtmd-oracle.js';
import { mtmdCli, oracleDir, refGenerate } from './oracle.js';
import { TokenType } from './tiny-llama.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('tiny gemma3 text model', () => {
  it('has <bos>, the turn and image markers as single tokens, SentencePiece pieces', () => {
    const v = tinyGemma3Vocab();
    const expected: [string, number][] = [
      ['<bos>', GEMMA3_SPECIAL_IDS.bos],
      ['<start_of_turn>', GEMMA3_SPECIAL_IDS.startOfTurn],
      ['<end_of_turn>', GEMMA3_SPECIAL_IDS.endOfTurn],
      ['<start_of_image>', GEMMA3_SPECIAL_IDS.startOfImage],
      ['<end_of_image>', GEMMA3_SPECIAL_IDS.endOfImage],
    ];
    for (const [t, id] of expected) {
      expect(v.tokens.indexOf(t), t).toBe(id);
      expect(v.tokenTypes[id], t).toBe(TokenType.CONTROL);
    }
    expect(new Set(v.tokens).size).toBe(v.tokens.length);
    expect(v.tokens.length).toBeGreaterThan(500);
    expect(v.tokens[8]).toBe('<0x00>');
    // every merged piece splits into two tokens of the vocabulary
    const set = new Set(v.tokens);
    for (const t of v.tokens.slice(8 + 256)) {
      const chars = [...t];
      if (chars.length < 2) continue;
      const ok = chars.some(
        (_, k) => k > 0 && set.has(chars.slice(0, k).join('')) && set.has(chars.slice(k).join('')),
      );
      expect(ok, t).toBe(true);
    }
  });

  it('is deterministic, small, with the gemma3 keys and norms', () => {
    const buf = tinyGemma3Buffer();
    expect(sha256(tinyGemma3Buffer())).toBe(sha256(buf));
    expect(sha256(tinyGemma3Buffer({ seed: 1 }))).not.toBe(sha256(buf));
    expect(buf.length).toBeLessThan(1 << 20);
    const f = readGgufFromBuffer(buf, { llamaCpp: true });
    expect(getString(f, 'general.architecture')).toBe('gemma3');
    expect(getUint(f, 'gemma3.attention.key_length')).toBe(32);
    expect(getUint(f, 'gemma3.attention.value_length')).toBe(32);
    expect(getUint(f, 'gemma3.attention.sliding_window')).toBe(64);
    expect(getUint(f, 'gemma3.attention.sliding_window_pattern')).toBe(2);
    expect(getUint(f, 'tokenizer.ggml.bos_token_id')).toBe(GEMMA3_SPECIAL_IDS.bos);
    expect(getString(f, 'tokenizer.chat_template')).toBe(GEMMA3_CHAT_TEMPLATE);
    const shapes = Object.fromEntries(f.tensors.map((t) => [t.name, t.shape]));
    expect(shapes['blk.0.attn_q.weight']).toEqual([64, 128]);
    expect(shapes['blk.0.attn_k.weight']).toEqual([64, 64]);
    expect(shapes['blk.0.attn_output.weight']).toEqual([128, 64]);
    expect(shapes['blk.1.attn_q_norm.weight']).toEqual([32]);
    expect(shapes['blk.1.attn_k_norm.weight']).toEqual([32]);
    expect(shapes['blk.1.post_attention_norm.weight']).toEqual([64]);
    expect(shapes['blk.1.post_ffw_norm.weight']).toEqual([64]);
    expect(shapes['output.weight']).toEqual([64, tinyGemma3Vocab().tokens.length]);
    const tied = readGgufFromBuffer(tinyGemma3Buffer({ tiedEmbeddings: true }));
    expect(tied.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    const noSwa = readGgufFromBuffer(tinyGemma3Buffer({ slidingWindow: 0 }));
    expect(noSwa.metadata.has('gemma3.attention.sliding_window')).toBe(false);
  });

  it('the defaults are pinned: a change here needs a FIXTURE_GENERATOR_VERSION bump', () => {
    const pins: [Uint8Array, number, string][] = [
      [
        tinyGemma3Buffer(),
        776864,
        '247f291297c8c8d6aedbd416d7e6cd964bd3f9d431c825145bee5a0e9559cc2f',
      ],
      [
        tinyGemma3MmprojBuffer(),
        50272,
        '346bd9a93c7d84dde63e2662b8f652ad2e6b377b8ddd2787ccb66df2963bab4e',
      ],
    ];
    for (const [buf, length, hash] of pins)
      expect([buf.length, sha256(buf)]).toEqual([length, hash]);
  });

  it('rejects impossible options, names fixtures by every option', () => {
    for (const bad of [{ headDim: 15 }, { nHeadKv: 3 }, { slidingWindow: -1 }]) {
      let err: unknown;
      try {
        resolveTinyGemma3Options(bad);
      } catch (e) {
        err = e;
      }
      expect(MmError.hasCode(err, 'MM_INVALID_ARGUMENT'), JSON.stringify(bad)).toBe(true);
    }
    expect(tinyGemma3FixtureName()).not.toBe(tinyGemma3FixtureName({ slidingWindow: 0 }));
  });
});

describe('tiny gemma3 mmproj', () => {
  it('has the keys, tensors and types libmtmd loads', () => {
    const buf = tinyGemma3MmprojBuffer();
    expect(tinyGemma3MmprojBuffer()).toEqual(buf);
    expect(buf.length).toBeLessThan(1 << 20);
    const f = readGgufFromBuffer(buf);
    expect(getString(f, 'clip.projector_type')).toBe('gemma3');
    expect(getUint(f, 'clip.vision.projector.scale_factor')).toBe(2);
    expect(f.metadata.get('clip.use_gelu')?.value).toBe(true);
    const byName = new Map(f.tensors.map((t) => [t.name, t]));
    expect(byName.get('v.patch_embd.weight')?.shape).toEqual([4, 4, 3, 32]);
    expect(byName.get('v.patch_embd.bias')?.shape).toEqual([32]);
    expect(byName.get('v.position_embd.weight')).toMatchObject({ shape: [32, 64], type: 'F32' });
    expect(byName.get('v.blk.1.ln2.bias')?.shape).toEqual([32]);
    expect(byName.get('v.post_ln.weight')?.shape).toEqual([32]);
    expect(byName.get('mm.soft_emb_norm.weight')).toMatchObject({ shape: [32], type: 'F32' });
    // stored transposed: ne[0] is the text width
    expect(byName.get('mm.input_projection.weight')?.shape).toEqual([64, 32]);
    expect(gemma3ImageTokens()).toBe(16);
    expect(gemma3ImageTokens(REALISTIC_GEMMA3_SIGLIP)).toBe(256);
    // the realistic shape leaves the key out, as real Gemma 3 files do (libmtmd assumes 4)
    const real = readGgufFromBuffer(
      tinyGemma3MmprojBuffer({ ...REALISTIC_GEMMA3_SIGLIP, imageSize: 56, nEmbd: 32, nHead: 2 }),
    );
    expect(real.metadata.has('clip.vision.projector.scale_factor')).toBe(false);
  });

  it('rejects impossible options, names fixtures by every option', () => {
    expect(() => resolveTinyGemma3MmprojOptions({ imageSize: 30 })).toThrow(/patchSize/);
    expect(() => resolveTinyGemma3MmprojOptions({ poolSize: 3 })).toThrow(/poolSize/);
    expect(() => resolveTinyGemma3MmprojOptions({ nFf: 32 })).toThrow(/nFf/);
    expect(tinyGemma3MmprojFixtureName()).not.toBe(tinyGemma3MmprojFixtureName({ poolSize: 4 }));
  });
});

const haveCli = existsSync(join(oracleDir(), 'llama-mtmd-cli'));
const haveGen = existsSync(join(oracleDir(), 'mm-ref-generate'));
const haveOracle = mtmdOracleBinary() !== undefined;
const unbuilt = (tool: string, have: boolean) =>
  have ? '' : ` [skipped: ${tool} is not built: npm run build:oracle -w @mm/native]`;

describe('gemma3 with llama.cpp and libmtmd', () => {
  const images = GEMMA3_TEST_IMAGE_SIZES.map(([w, h], i) => ({ w, h, seed: 30 + i }));

  it.skipIf(!haveGen)(
    `the markers are single tokens with parse_special, after <bos>${unbuilt('mm-ref-generate', haveGen)}`,
    async () => {
      const { llm } = await tinyGemma3Pair();
      const r = await refGenerate({
        model: llm,
        prompt: '<start_of_turn>user\n<start_of_image><end_of_image>describe<end_of_turn>',
        maxTokens: 1,
      });
      const ids = GEMMA3_SPECIAL_IDS;
      expect(r.promptTokens.slice(0, 2)).toEqual([ids.bos, ids.startOfTurn]);
      expect(r.promptTokens).toContain(ids.startOfImage);
      expect(r.promptTokens).toContain(ids.endOfImage);
      expect(r.promptTokens.at(-1)).toBe(ids.endOfTurn);
      expect(r.promptTokens).not.toContain(tinyGemma3Vocab().tokens.indexOf('<'));
    },
  );

  it.skipIf(!haveCli)(
    `llama-mtmd-cli answers for every image size${unbuilt('llama-mtmd-cli', haveCli)}`,
    { timeout: 120_000 },
    async () => {
      const { llm, mmproj } = await tinyGemma3Pair();
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
        console.log(`gemma3 ${w}x${h}: ${JSON.stringify(text)}`);
        expect(text.trim().length, `${w}x${h}`).toBeGreaterThan(0);
        expect(new Set(text.split(/\s+/).filter(Boolean)).size, text).toBeGreaterThan(1);
      }
      // tied embeddings (real Gemma 3) without sliding-window layers loads and runs too
      const tied = await tinyGemma3Pair({}, { tiedEmbeddings: true, slidingWindow: 0 });
      const image = await syntheticPngFixture(48, 48, 30);
      const args = { images: [image], prompt: 'describe', maxTokens: 4, threads: 2 };
      expect(typeof (await mtmdCli({ model: tied.llm, mmproj: tied.mmproj, ...args }))).toBe(
        'string',
      );
    },
  );

  it.skipIf(!haveOracle)(
    `libmtmd embeddings have (imageSize / patch / pool)^2 rows${unbuilt('mm-ref-mtmd-embed', haveOracle)}`,
    { timeout: 120_000 },
    async () => {
      const { llm, mmproj, nEmbd } = await tinyGemma3Pair();
      const o = resolveTinyGemma3MmprojOptions();
      const paths = await Promise.all(
        images.map(({ w, h, seed }) => syntheticPngFixture(w, h, seed)),
      );
      const results = await runMtmdOracle({ mmproj, textModel: llm, images: paths });
      expect(results.length).toBe(images.length);
      const side = o.imageSize / o.patchSize / o.poolSize;
      for (const [i, r] of results.entries()) {
        const { w, h } = images[i]!;
        expect([r.width, r.height]).toEqual([w, h]);
        expect(r.pixelsShape).toEqual([3, o.imageSize, o.imageSize]);
        expect([r.nTokens, r.nEmbd], `${w}x${h}`).toEqual([side * side, nEmbd]);
        expect(r.embd.length).toBe(side * side * nEmbd);
        expect(r.embd.every(Number.isFinite)).toBe(true);
        console.log(`gemma3 ${w}x${h} → ${o.imageSize}x${o.imageSize}: ${r.nTokens} tokens`);
      }
    },
  );
});
