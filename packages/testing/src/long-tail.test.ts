import { createHash } from 'node:crypto';
import { MmError } from '@mm/errors';
import { getArray, getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import {
  LONG_TAIL_FAMILIES,
  longTailTextArch,
  resolveTinyLongTailMmprojOptions,
  resolveTinyLongTailTextOptions,
  tinyLongTailMmprojBuffer,
  tinyLongTailMmprojFixtureName,
  tinyLongTailTextBuffer,
  tinyLongTailTextFixtureName,
} from './long-tail.js';
import { TokenType } from './tiny-llama.js';

// The long-tail generators: deterministic, every option in the fixture name, the keys and tensors
// libmtmd's loader and graphs read (their use against libmtmd is in @mm/core's long-tail tests).

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe.each(LONG_TAIL_FAMILIES)('tiny %s fixtures', (family) => {
  it('are deterministic in their options, and every option is in the file name', () => {
    expect(sha256(tinyLongTailMmprojBuffer({ family }))).toBe(
      sha256(tinyLongTailMmprojBuffer({ family })),
    );
    expect(sha256(tinyLongTailMmprojBuffer({ family, seed: 1 }))).not.toBe(
      sha256(tinyLongTailMmprojBuffer({ family })),
    );
    expect(sha256(tinyLongTailTextBuffer(family))).toBe(sha256(tinyLongTailTextBuffer(family)));
    expect(tinyLongTailMmprojFixtureName({ family, nLayers: 3 })).not.toBe(
      tinyLongTailMmprojFixtureName({ family }),
    );
    expect(tinyLongTailTextFixtureName(family, { nFf: 96 })).not.toBe(
      tinyLongTailTextFixtureName(family),
    );
  });

  it("carry the projector type, the vision keys and the pair's widths", () => {
    const m = readGgufFromBuffer(tinyLongTailMmprojBuffer({ family }));
    expect(getString(m, 'clip.projector_type')).toBe(family);
    expect(getUint(m, 'clip.vision.projection_dim')).toBe(64);
    const names = new Set(m.tensors.map((t) => t.name));
    const need = {
      pixtral: ['v.token_embd.img_break', 'mm.1.weight', 'mm.2.weight', 'v.blk.1.ffn_gate.weight'],
      internvl: [
        'v.class_embd',
        'v.position_embd.weight',
        'mm.model.mlp.3.weight',
        'v.blk.0.ls1.weight',
      ],
      qwen3vl_merger: [
        'v.patch_embd.weight.1',
        'v.blk.1.attn_qkv.bias',
        'v.deepstack.0.fc2.weight',
      ],
    }[family];
    for (const n of need) expect(names.has(n), n).toBe(true);
    const t = readGgufFromBuffer(tinyLongTailTextBuffer(family));
    const arch = longTailTextArch(family);
    expect(getString(t, 'general.architecture')).toBe(arch);
    expect(getUint(t, `${arch}.embedding_length`)).toBe(64);
    const tokens = getArray(t, 'tokenizer.ggml.tokens', 'string');
    const types = getArray(t, 'tokenizer.ggml.token_type', 'int32');
    const markers = {
      pixtral: ['[IMG_END]', '[INST]', '[/INST]'],
      internvl: ['<img>', '</img>', '<|im_start|>'],
      qwen3vl_merger: ['<|vision_start|>', '<|vision_end|>', '<|im_end|>'],
    }[family];
    for (const k of markers) {
      expect(tokens.indexOf(k), k).toBeGreaterThan(0);
      expect(types[tokens.indexOf(k)], k).toBe(TokenType.CONTROL);
    }
    if (family === 'qwen3vl_merger') {
      expect(getUint(t, 'qwen3vl.n_deepstack_layers')).toBe(1);
      const s = getArray(t, 'qwen3vl.rope.dimension_sections', 'int32');
      expect(Array.from(s).reduce((a, b) => a + b, 0)).toBe(64 / 4 / 2);
    }
  });
});

describe('long-tail options', () => {
  it('are checked', () => {
    const bad = [
      () => resolveTinyLongTailMmprojOptions({ family: 'nope' as 'pixtral' }),
      () => resolveTinyLongTailMmprojOptions({ family: 'pixtral', nHead: 3 }),
      () => resolveTinyLongTailMmprojOptions({ family: 'internvl', scaleFactor: 3 }),
      () => resolveTinyLongTailMmprojOptions({ family: 'qwen3vl_merger', deepstackLayers: [2] }),
      () => resolveTinyLongTailMmprojOptions({ family: 'pixtral', deepstackLayers: [0] }),
      () => resolveTinyLongTailMmprojOptions({ family: 'qwen3vl_merger', imageSize: 72 }),
      () => resolveTinyLongTailTextOptions('qwen3vl_merger', { nLayers: 1, deepstackLayers: 1 }),
      () => resolveTinyLongTailTextOptions('pixtral', { nHead: 5 }),
    ];
    for (const f of bad) {
      expect(f).toThrow();
      try {
        f();
      } catch (e) {
        expect(MmError.isInstance(e) && e.code).toBe('MM_INVALID_ARGUMENT');
      }
    }
  });
});
