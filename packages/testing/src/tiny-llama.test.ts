import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import {
  f16ToF32,
  getArray,
  getString,
  getUint,
  quantizeQ8_0,
  readGguf,
  readGgufFromBuffer,
  readTensorData,
  summarizeGguf,
} from '@mm/gguf';
import { afterAll, describe, expect, it } from 'vitest';
import { tinyShapesPaths } from './paths.js';
import { Prng } from './prng.js';
import {
  CHATML_TEMPLATE,
  TokenType,
  tinyLlamaBuffer,
  tinyLlamaVocab,
  writeTinyLlama,
} from './tiny-llama.js';

const dir = mkdtempSync(join(tmpdir(), 'mm-testing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('Prng', () => {
  it('is deterministic and roughly standard normal', () => {
    const a = new Prng(7);
    const b = new Prng(7);
    const xs = Array.from({ length: 20000 }, () => a.normal());
    expect(xs.slice(0, 100)).toEqual(Array.from({ length: 100 }, () => b.normal()));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(new Prng(8).nextU32()).not.toBe(new Prng(7).nextU32());
    // pinned: the stream must never change (cached fixtures depend on it)
    const p = new Prng(0);
    expect([p.nextU32(), p.nextU32(), p.nextU32()]).toEqual([3809008728, 1133695204, 53579671]);
    expect(new Prng(1).normal()).toBe(1.5166993776801974);
  });
});

describe('tiny llama vocab', () => {
  const v = tinyLlamaVocab();
  it('has the specials, 256 bytes and normal tokens with the right types', () => {
    expect(v.tokens.slice(0, 5)).toEqual(['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>']);
    expect(Array.from(v.tokenTypes.subarray(0, 5))).toEqual([2, 3, 3, 3, 3]);
    expect(v.tokens[5]).toBe('<0x00>');
    expect(v.tokens[15]).toBe('<0x0A>');
    expect(v.tokens[260]).toBe('<0xFF>');
    for (let i = 5; i < 261; i++) expect(v.tokenTypes[i]).toBe(TokenType.BYTE);
    for (let i = 261; i < v.tokens.length; i++) expect(v.tokenTypes[i]).toBe(TokenType.NORMAL);
    expect(new Set(v.tokens).size).toBe(v.tokens.length);
    expect(v.tokens).toContain('▁');
    for (let c = 0x21; c <= 0x7e; c++) expect(v.tokens).toContain(String.fromCharCode(c));
    expect(v.scores.length).toBe(v.tokens.length);
  });

  it('every merge splits into two tokens of the vocab (reachable by SentencePiece merging)', () => {
    const set = new Set(v.tokens);
    for (let i = 261; i < v.tokens.length; i++) {
      const t = v.tokens[i]!;
      const chars = [...t];
      if (chars.length < 2) continue;
      const ok = chars.some(
        (_, k) => k > 0 && set.has(chars.slice(0, k).join('')) && set.has(chars.slice(k).join('')),
      );
      expect(ok, t).toBe(true);
    }
  });
});

describe('writeTinyLlama', () => {
  it('same seed → byte-identical file, different seed → different', async () => {
    const a = join(dir, 'a.gguf');
    const b = join(dir, 'b.gguf');
    const c = join(dir, 'c.gguf');
    await writeTinyLlama(a, { seed: 1 });
    await writeTinyLlama(b, { seed: 1 });
    await writeTinyLlama(c, { seed: 2 });
    const ha = sha256(readFileSync(a));
    expect(sha256(readFileSync(b))).toBe(ha);
    expect(sha256(readFileSync(c))).not.toBe(ha);
    expect(sha256(tinyLlamaBuffer({ seed: 1 }))).toBe(ha);
  });

  it('the default model is pinned: a change here needs a FIXTURE_GENERATOR_VERSION bump', () => {
    const buf = tinyLlamaBuffer();
    expect(buf.length).toBe(542016);
    expect(sha256(buf)).toBe('d1a11c70e4fe5553ed110bc84e81c2359a0c609b5e9e9adc3805b4fba96840cc');
  });

  it('parses with @mm/gguf (llama.cpp rules) with the expected keys and shapes', async () => {
    const path = join(dir, 'm.gguf');
    await writeTinyLlama(path, {
      seed: 3,
      nLayers: 2,
      nEmbd: 64,
      nHead: 4,
      nHeadKv: 2,
      nFf: 128,
      nCtx: 256,
    });
    const f = await readGguf(path, { llamaCpp: true });
    const nVocab = tinyLlamaVocab().tokens.length;
    expect(getString(f, 'general.architecture')).toBe('llama');
    expect(getUint(f, 'general.alignment')).toBe(32);
    expect(getUint(f, 'general.file_type')).toBe(0);
    expect(getUint(f, 'llama.context_length')).toBe(256);
    expect(getUint(f, 'llama.embedding_length')).toBe(64);
    expect(getUint(f, 'llama.block_count')).toBe(2);
    expect(getUint(f, 'llama.feed_forward_length')).toBe(128);
    expect(getUint(f, 'llama.attention.head_count')).toBe(4);
    expect(getUint(f, 'llama.attention.head_count_kv')).toBe(2);
    expect(getUint(f, 'llama.rope.dimension_count')).toBe(16);
    expect(getUint(f, 'llama.vocab_size')).toBe(nVocab);
    expect(getString(f, 'tokenizer.ggml.model')).toBe('llama');
    expect(getString(f, 'tokenizer.ggml.pre')).toBe('default');
    expect(getString(f, 'tokenizer.chat_template')).toBe(CHATML_TEMPLATE);
    expect(getArray(f, 'tokenizer.ggml.tokens', 'string').length).toBe(nVocab);
    expect(getArray(f, 'tokenizer.ggml.scores', 'float32').length).toBe(nVocab);
    expect(getArray(f, 'tokenizer.ggml.token_type', 'int32').length).toBe(nVocab);
    expect(getUint(f, 'tokenizer.ggml.bos_token_id')).toBe(1);
    expect(getUint(f, 'tokenizer.ggml.eos_token_id')).toBe(4);
    expect(getUint(f, 'tokenizer.ggml.unknown_token_id')).toBe(0);

    const shapes = Object.fromEntries(f.tensors.map((t) => [t.name, t.shape]));
    expect(shapes['token_embd.weight']).toEqual([64, nVocab]);
    expect(shapes['output.weight']).toEqual([64, nVocab]);
    expect(shapes['output_norm.weight']).toEqual([64]);
    for (const l of [0, 1]) {
      expect(shapes[`blk.${l}.attn_norm.weight`]).toEqual([64]);
      expect(shapes[`blk.${l}.attn_q.weight`]).toEqual([64, 64]);
      expect(shapes[`blk.${l}.attn_k.weight`]).toEqual([64, 32]);
      expect(shapes[`blk.${l}.attn_v.weight`]).toEqual([64, 32]);
      expect(shapes[`blk.${l}.attn_output.weight`]).toEqual([64, 64]);
      expect(shapes[`blk.${l}.ffn_norm.weight`]).toEqual([64]);
      expect(shapes[`blk.${l}.ffn_gate.weight`]).toEqual([64, 128]);
      expect(shapes[`blk.${l}.ffn_up.weight`]).toEqual([64, 128]);
      expect(shapes[`blk.${l}.ffn_down.weight`]).toEqual([128, 64]);
    }
    expect(f.tensors.length).toBe(3 + 2 * 9);
    expect(f.tensors.every((t) => t.type === 'F32')).toBe(true);

    const norm = new Float32Array((await readTensorData(path, f, 'blk.0.attn_norm.weight')).buffer);
    const mean = norm.reduce((s, x) => s + x, 0) / norm.length;
    expect(Math.abs(mean - 1)).toBeLessThan(0.1);
    const q = new Float32Array((await readTensorData(path, f, 'blk.0.attn_q.weight')).buffer);
    const rms = Math.sqrt(q.reduce((s, x) => s + x * x, 0) / q.length);
    expect(rms).toBeGreaterThan(0.08);
    expect(rms).toBeLessThan(0.17);

    const s = summarizeGguf(f);
    expect(s.text).toMatchObject({ vocabSize: nVocab, blockCount: 2, hasChatTemplate: true });
  });

  it('f16 weights keep the norms in f32 and set file_type 1', async () => {
    const buf = tinyLlamaBuffer({ seed: 4, weightType: 'F16' });
    const f = readGgufFromBuffer(buf, { llamaCpp: true });
    expect(getUint(f, 'general.file_type')).toBe(1);
    const types = Object.fromEntries(f.tensors.map((t) => [t.name, t.type]));
    expect(types['blk.0.attn_q.weight']).toBe('F16');
    expect(types['token_embd.weight']).toBe('F16');
    expect(types['blk.0.attn_norm.weight']).toBe('F32');
    const f32 = readGgufFromBuffer(tinyLlamaBuffer({ seed: 4 }));
    const a = await readTensorData(tinyLlamaBuffer({ seed: 4 }), f32, 'blk.1.ffn_up.weight');
    const h = await readTensorData(buf, f, 'blk.1.ffn_up.weight');
    const x = new Float32Array(a.buffer);
    const y = f16ToF32(new Uint16Array(h.buffer));
    for (let i = 0; i < x.length; i += 97)
      expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 1e-3 + 1e-7);
  });

  it('q8_0 weights: the F32 weights quantized, norms in f32, file_type 7', async () => {
    const buf = tinyLlamaBuffer({ seed: 4, weightType: 'Q8_0' });
    const f = readGgufFromBuffer(buf, { llamaCpp: true });
    expect(getUint(f, 'general.file_type')).toBe(7);
    const types = Object.fromEntries(f.tensors.map((t) => [t.name, t.type]));
    expect(types['blk.0.attn_q.weight']).toBe('Q8_0');
    expect(types['output.weight']).toBe('Q8_0');
    expect(types['blk.0.ffn_norm.weight']).toBe('F32');
    const f32 = readGgufFromBuffer(tinyLlamaBuffer({ seed: 4 }));
    const a = await readTensorData(tinyLlamaBuffer({ seed: 4 }), f32, 'blk.1.ffn_down.weight');
    const q = await readTensorData(buf, f, 'blk.1.ffn_down.weight');
    expect(Array.from(q)).toEqual(Array.from(quantizeQ8_0(new Float32Array(a.buffer))));
  });

  it('rejects impossible shapes with MM_INVALID_ARGUMENT', () => {
    for (const bad of [
      { nEmbd: 48, nHead: 4, weightType: 'Q8_0' as const },
      { nEmbd: 63 },
      { nHeadKv: 3 },
      { nLayers: 0 },
      { seed: -1 },
      { nHead: 64 },
    ]) {
      let err: unknown;
      try {
        tinyLlamaBuffer(bad);
      } catch (e) {
        err = e;
      }
      expect(MmError.hasCode(err, 'MM_INVALID_ARGUMENT'), JSON.stringify(bad)).toBe(true);
    }
  });
});

const shapes = tinyShapesPaths();
describe('mirrors tiny-shapes-llm.gguf (which llama.cpp loads)', () => {
  it('has the same keys with the same types, plus general.alignment', async () => {
    const ref = await readGguf(shapes.llm);
    const ours = readGgufFromBuffer(tinyLlamaBuffer());
    const typeOf = (v: { type: string; itemType?: string }) =>
      v.type === 'array' ? `array<${v.itemType}>` : v.type;
    const refKeys = new Map([...ref.metadata].map(([k, v]) => [k, typeOf(v)]));
    const ourKeys = new Map([...ours.metadata].map(([k, v]) => [k, typeOf(v)]));
    ourKeys.delete('general.alignment');
    expect(ourKeys).toEqual(refKeys);
    // same specials and the same token types for the shared layout
    const refTokens = getArray(ref, 'tokenizer.ggml.tokens', 'string');
    const ourTokens = getArray(ours, 'tokenizer.ggml.tokens', 'string');
    expect(ourTokens.slice(0, 261)).toEqual(refTokens.slice(0, 261));
    expect(
      Array.from(getArray(ours, 'tokenizer.ggml.token_type', 'int32').subarray(0, 261)),
    ).toEqual(Array.from(getArray(ref, 'tokenizer.ggml.token_type', 'int32').subarray(0, 261)));
    for (const k of [
      'tokenizer.ggml.bos_token_id',
      'tokenizer.ggml.eos_token_id',
      'tokenizer.ggml.eot_token_id',
      'tokenizer.ggml.unknown_token_id',
      'tokenizer.ggml.add_bos_token',
      'tokenizer.ggml.add_eos_token',
      'tokenizer.ggml.add_space_prefix',
      'tokenizer.chat_template',
      'tokenizer.ggml.model',
      'tokenizer.ggml.pre',
    ]) {
      expect(ours.metadata.get(k), k).toEqual(ref.metadata.get(k));
    }
  });

  it('uses the same tensor names in the same order, with shapes of the same form', async () => {
    const ref = await readGguf(shapes.llm);
    const ours = readGgufFromBuffer(tinyLlamaBuffer({ nLayers: 3 }));
    expect(ours.tensors.map((t) => t.name)).toEqual(ref.tensors.map((t) => t.name));
    const refEmbd = getUint(ref, 'llama.embedding_length');
    const refVocab = getArray(ref, 'tokenizer.ggml.tokens').value.length;
    const refFf = getUint(ref, 'llama.feed_forward_length');
    const ourVocab = getArray(ours, 'tokenizer.ggml.tokens').value.length;
    const symbolic = (shape: readonly number[], embd: number, vocab: number, ff: number) =>
      shape
        .map((d) => (d === embd ? 'E' : d === vocab ? 'V' : d === ff ? 'F' : String(d)))
        .join('x');
    for (const [i, t] of ours.tensors.entries()) {
      const r = ref.tensors[i]!;
      expect(symbolic(t.shape, 64, ourVocab, 128), t.name).toBe(
        symbolic(r.shape, refEmbd, refVocab, refFf),
      );
      expect(t.type).toBe(r.type);
    }
  });
});
