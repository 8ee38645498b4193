import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import {
  LLAMA3_CHAT_TEMPLATE,
  MINICPMV_MARKERS,
  MINICPMV_POS_TABLE_ROWS,
  minicpmvDefaultQueries,
  resolveTinyMinicpmTextOptions,
  resolveTinyMinicpmvMmprojOptions,
  tinyMinicpmTextBuffer,
  tinyMinicpmTextFixtureName,
  tinyMinicpmVocab,
  tinyMinicpmvMmprojBuffer,
  tinyMinicpmvMmprojFixtureName,
  tinyMinicpmvPair,
} from './minicpmv.js';
import { oracleDir, refGenerate } from './oracle.js';
import { CHATML_TEMPLATE, TokenType } from './tiny-llama.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('tiny MiniCPM text models', () => {
  it("hold libmtmd's slice markers as control tokens and the newline byte, per architecture", () => {
    for (const arch of ['llama', 'qwen2'] as const) {
      const v = tinyMinicpmVocab(arch);
      for (const t of MINICPMV_MARKERS) {
        const id = v.tokens.indexOf(t);
        expect(id, `${arch} ${t}`).toBeGreaterThan(255);
        expect(v.tokenTypes[id]).toBe(TokenType.CONTROL);
      }
      expect(v.tokens[10]).toBe('Ċ'); // byte-level "\n"
      expect(new Set(v.tokens).size).toBe(v.tokens.length);
    }
    expect(tinyMinicpmVocab('llama').tokens).toContain('<|eot_id|>');
    expect(tinyMinicpmVocab('qwen2').tokens).toContain('<|im_end|>');
  });

  it('are deterministic, with the keys of each architecture', { timeout: 60_000 }, () => {
    const qwen = readGgufFromBuffer(tinyMinicpmTextBuffer(), { llamaCpp: true });
    expect(getString(qwen, 'general.architecture')).toBe('qwen2');
    expect(getString(qwen, 'tokenizer.ggml.pre')).toBe('qwen2');
    expect(getString(qwen, 'tokenizer.chat_template')).toBe(CHATML_TEMPLATE);
    expect(qwen.tensors.some((t) => t.name === 'blk.0.attn_q.bias')).toBe(true);
    const llama = readGgufFromBuffer(tinyMinicpmTextBuffer({ arch: 'llama' }), { llamaCpp: true });
    expect(getString(llama, 'general.architecture')).toBe('llama');
    expect(getString(llama, 'tokenizer.ggml.pre')).toBe('llama-bpe');
    expect(getString(llama, 'tokenizer.chat_template')).toBe(LLAMA3_CHAT_TEMPLATE);
    expect(llama.tensors.some((t) => t.name === 'blk.0.attn_q.bias')).toBe(false);
    expect(getUint(llama, 'llama.embedding_length')).toBe(256);
    expect(sha256(tinyMinicpmTextBuffer({ seed: 1 }))).not.toBe(sha256(tinyMinicpmTextBuffer()));
  });

  it('the defaults are pinned: a change here needs a FIXTURE_GENERATOR_VERSION bump', {
    timeout: 60_000,
  }, () => {
    const pins: [Uint8Array, number, string][] = [
      [
        tinyMinicpmTextBuffer(),
        5801088,
        '3097fb5153fd1b50d87ac0ecc8cc9c0ca69dd6bcd21739d383ecea2761d8d1a2',
      ],
      [
        tinyMinicpmTextBuffer({ arch: 'llama' }),
        5801056,
        'cf031778e95e1a6e46e1e973646dad62d5dfeb4f0265d71650fbd5789a2306b2',
      ],
      [
        tinyMinicpmvMmprojBuffer(),
        1389952,
        '590bde5a238f1ba5641bf4be1f2b11f08c91d4fbf493edc27cded1404eb083cc',
      ],
      [
        tinyMinicpmvMmprojBuffer({ version: 2 }),
        1389952,
        'f680f472a58ce5414736b83d0a122fd130645301b73820b5286b3a1b8e2d6b9e',
      ],
    ];
    for (const [buf, length, hash] of pins)
      expect([buf.length, sha256(buf)]).toEqual([length, hash]);
  });

  it('rejects impossible options', () => {
    for (const bad of [{ arch: 'gpt2' as 'llama' }, { nHead: 3 }, { nHeadKv: 3 }]) {
      let err: unknown;
      try {
        resolveTinyMinicpmTextOptions(bad);
      } catch (e) {
        err = e;
      }
      expect(MmError.hasCode(err, 'MM_INVALID_ARGUMENT'), JSON.stringify(bad)).toBe(true);
    }
    expect(tinyMinicpmTextFixtureName()).not.toBe(tinyMinicpmTextFixtureName({ arch: 'llama' }));
  });
});

describe('tiny resampler mmproj', () => {
  it("has the keys and tensors libmtmd's MiniCPM-V loader reads", () => {
    const f = readGgufFromBuffer(tinyMinicpmvMmprojBuffer({ version: 3 }));
    expect(getString(f, 'clip.projector_type')).toBe('resampler');
    expect(f.metadata.get('clip.minicpmv_version')).toEqual({ type: 'int32', value: 3 });
    expect(getUint(f, 'clip.minicpmv_query_num')).toBe(16);
    const byName = new Map(f.tensors.map((t) => [t.name, t]));
    expect(byName.get('v.position_embd.weight')).toMatchObject({
      shape: [32, MINICPMV_POS_TABLE_ROWS],
      type: 'F32',
    });
    expect(byName.get('resampler.query')).toMatchObject({ shape: [256, 16], type: 'F32' });
    expect(byName.get('resampler.kv.weight')?.shape).toEqual([32, 256]);
    expect(byName.get('resampler.proj.weight')?.shape).toEqual([256, 256]);
    for (const p of ['q', 'k', 'v', 'out']) {
      expect(byName.get(`resampler.attn.${p}.weight`)?.shape).toEqual([256, 256]);
      expect(byName.get(`resampler.attn.${p}.bias`)?.shape).toEqual([256]);
    }
    for (const p of ['q', 'kv', 'post']) expect(byName.get(`resampler.ln_${p}.bias`)).toBeDefined();
    expect(byName.has('resampler.pos_embed_k')).toBe(true);
    expect(byName.has('v.class_embd')).toBe(false);
    // legacy files: neither key; libmtmd then takes version 2 and 96 queries
    const legacy = readGgufFromBuffer(
      tinyMinicpmvMmprojBuffer({ version: 2, omitVersionKey: true, omitQueryKey: true }),
    );
    expect(legacy.metadata.has('clip.minicpmv_version')).toBe(false);
    expect(legacy.metadata.has('clip.minicpmv_query_num')).toBe(false);
    expect(legacy.tensors.find((t) => t.name === 'resampler.query')?.shape).toEqual([256, 96]);
    expect([minicpmvDefaultQueries(2), minicpmvDefaultQueries(3)]).toEqual([96, 64]);
  });

  it('rejects impossible options, names fixtures by every option', () => {
    expect(() => resolveTinyMinicpmvMmprojOptions({ width: 200 })).toThrow(/128/);
    expect(() => resolveTinyMinicpmvMmprojOptions({ version: 7 as 2 })).toThrow(/version/);
    expect(() => resolveTinyMinicpmvMmprojOptions({ imageSize: 60 })).toThrow(/patchSize/);
    expect(() => resolveTinyMinicpmvMmprojOptions({ version: 3, omitVersionKey: true })).toThrow(
      /version 2/,
    );
    expect(() => resolveTinyMinicpmvMmprojOptions({ omitQueryKey: true, nQueries: 16 })).toThrow(
      /64/,
    );
    expect(tinyMinicpmvMmprojFixtureName()).not.toBe(tinyMinicpmvMmprojFixtureName({ version: 4 }));
  });
});

const haveGen = existsSync(join(oracleDir(), 'mm-ref-generate'));

describe('MiniCPM text models with llama.cpp', () => {
  it.skipIf(!haveGen)(
    'tokenize the markers as single tokens with parse_special, BOS as each architecture wants',
    async () => {
      for (const version of [2, 3] as const) {
        const { llm } = await tinyMinicpmvPair({ version });
        const v = tinyMinicpmVocab(version === 2 ? 'llama' : 'qwen2').tokens;
        const r = await refGenerate({
          model: llm,
          prompt: '<image></image><slice><image></image></slice>\n the',
          maxTokens: 1,
        });
        const bos = version === 2 ? [v.indexOf('<|begin_of_text|>')] : [];
        const ids = (...t: string[]) => t.map((x) => v.indexOf(x));
        expect(r.promptTokens).toEqual([
          ...bos,
          ...ids('<image>', '</image>', '<slice>', '<image>', '</image>', '</slice>', 'Ċ', 'Ġthe'),
        ]);
      }
    },
  );
});
