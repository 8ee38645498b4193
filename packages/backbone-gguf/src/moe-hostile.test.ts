import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MmError } from '@mm/errors';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import { probeModel } from '@mm/native';
import { tinyMoeSpec } from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { Backbone } from './backbone.js';

// Mixture-of-experts counts that llama.cpp only GGML_ASSERTs on in load_hparams (an abort that mm's
// abort guard turns into MM_MODEL_LOAD quoting the assert) are refused before llama.cpp sees them,
// with MM_GGUF_INVALID naming the key.

const dir = mkdtempSync(join(tmpdir(), 'mm-moe-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function variant(name: string, edit: (m: GgufMetadata) => void): Promise<string> {
  const spec = tinyMoeSpec({ seed: 4 });
  const metadata = new Map(spec.metadata as GgufMetadata);
  edit(metadata);
  const path = join(dir, `${name}.gguf`);
  await writeGguf(path, { metadata, tensors: spec.tensors ?? [] });
  return path;
}

describe('hostile MoE counts: MM_GGUF_INVALID naming the key, before llama.cpp asserts', () => {
  const cases: [string, (m: GgufMetadata) => void, RegExp][] = [
    [
      'more experts used than there are',
      (m) => m.set('llama.expert_used_count', gv.uint32(5)),
      /llama\.expert_used_count = 5 is out of range \[0, 4\]/,
    ],
    [
      'a per-block used count beyond the experts',
      (m) => m.set('llama.expert_used_count', gv.array('uint32', new Uint32Array([2, 9]))),
      /llama\.expert_used_count\[1\] = 9 is out of range \[0, 4\]/,
    ],
    [
      'experts but none used',
      (m) => m.delete('llama.expert_used_count'),
      /expert_used_count is missing or 0/,
    ],
    [
      'more experts than LLAMA_MAX_EXPERTS',
      (m) => m.set('llama.expert_count', gv.uint32(5000)),
      /llama\.expert_count = 5000 is out of range \[0, 1024\]/,
    ],
    [
      'used experts on a dense model',
      (m) => m.delete('llama.expert_count'),
      /llama\.expert_used_count = 2 is out of range \[0, 0\]/,
    ],
    [
      'expert groups that do not divide the experts',
      (m) => m.set('llama.expert_group_count', gv.uint32(3)),
      /expert_group_count 3 does not divide/,
    ],
    [
      'an expert group count as large as the experts',
      (m) => m.set('llama.expert_group_count', gv.uint32(4)),
      /llama\.expert_group_count = 4 is out of range \[0, 3\]/,
    ],
    [
      'groups but no group used',
      (m) => m.set('llama.expert_group_count', gv.uint32(2)),
      /llama\.expert_group_used_count = 0 is out of range \[1, 1\]/,
    ],
    [
      'a string expert count',
      (m) => m.set('llama.expert_count', gv.string('four')),
      /llama\.expert_count has type str(ing)?, expected an integer/,
    ],
  ];

  it.each(cases)('%s', async (name, edit, mention) => {
    const path = await variant(name.replace(/\W+/g, '-'), edit);
    const native = await probeModel(path).catch((e) => e);
    expect(MmError.isInstance(native)).toBe(true);
    expect([native.code, native.message]).toEqual([
      'MM_GGUF_INVALID',
      expect.stringMatching(mention),
    ]);
    const loaded = await Backbone.load(path).catch((e) => e);
    expect(loaded.code).toBe('MM_GGUF_INVALID');
  });

  it('the untouched model loads, and per-block used counts within range are fine', async () => {
    const path = await variant('per-block', (m) =>
      m.set('llama.expert_used_count', gv.array('uint32', new Uint32Array([1, 3]))),
    );
    const b = await Backbone.load(path);
    try {
      expect([b.info.nExpert, b.info.nExpertUsed]).toEqual([4, 3]);
    } finally {
      b.dispose();
    }
  });
});
