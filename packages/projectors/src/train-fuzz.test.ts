import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GgufValue, readGguf, readTensorData, writeGguf } from '@mm/gguf';
import { Prng, tinyShapesPaths } from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectorTrainer } from './index.js';
import { outcome } from './mutated-mmproj.test-util.js';
import { type Checkpoint, readCheckpoint, writeCheckpoint } from './train-checkpoint.js';

// What projector training parses from untrusted bytes, mutated: the LLM GGUF its own loader reads
// (train_llama: header, keys, tensor shapes) and the checkpoints it resumes from. Every case is a
// load or a typed error; the process never crashes.

const tiny = tinyShapesPaths();
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-train-fuzz-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('projector training on hostile bytes', () => {
  it('loads a mutated LLM GGUF or refuses it with a code (400 cases)', {
    timeout: 300_000,
  }, async () => {
    const bytes = await readFile(tiny.llm);
    const header = (await readGguf(tiny.llm)).dataOffset;
    const r = new Prng(1313);
    const codes: Record<string, number> = {};
    const features = Float32Array.from({ length: 36 * 96 }, () => r.uniform() - 0.5);
    const sample = {
      image: 0,
      imagePos: 2,
      tokens: Int32Array.from([1, 3, 10, 11, 12, 13, 14, 4]),
      targets: Int32Array.from([36 + 6, 36 + 7]),
    };
    for (let i = 0; i < 400; i++) {
      const b = Buffer.from(bytes);
      const flips = 1 + Math.floor(r.uniform() * 4);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(r.uniform() * header);
        b[at] =
          r.uniform() < 0.5
            ? (b[at] as number) ^ (1 << Math.floor(r.uniform() * 8))
            : Math.floor(r.uniform() * 256);
      }
      const path = join(dir, `m${i % 4}.gguf`);
      await writeFile(path, i % 50 === 49 ? b.subarray(0, Math.floor(r.uniform() * b.length)) : b);
      let trainer: ProjectorTrainer | undefined;
      const [code] = await outcome(
        ProjectorTrainer.create({
          model: path,
          projector: 'mlp',
          nEmbdV: 96,
          nHidden: 16,
          threads: 1,
        }).then((t) => {
          trainer = t;
        }),
      );
      codes[code] = (codes[code] ?? 0) + 1;
      if (trainer) {
        // what loads also trains a step (or refuses the data with a code)
        using t = trainer;
        const [c2] = await outcome(
          (async () => {
            t.setData(features, 1, 36, [sample]);
            await t.step([0], { lr: 1e-3 });
          })(),
        );
        codes[`step ${c2}`] = (codes[`step ${c2}`] ?? 0) + 1;
      }
    }
    console.log(`mutated LLM GGUF through the training loader: ${JSON.stringify(codes)}`);
    expect(
      Object.keys(codes).every((c) =>
        [
          'ok',
          'MM_GGUF_INVALID',
          'MM_UNSUPPORTED_FAMILY',
          'MM_FILE_NOT_FOUND',
          'step ok',
          'step MM_INVALID_ARGUMENT',
          'step MM_OUT_OF_CONTEXT',
        ].includes(c),
      ),
    ).toBe(true);
    expect(codes['MM_GGUF_INVALID']).toBeGreaterThan(0);
  });

  it('refuses hostile LLM hyper-parameters with a code', async () => {
    const file = await readGguf(tiny.llm);
    const tensors = await Promise.all(
      file.tensors.map(async (t) => ({
        name: t.name,
        type: t.type,
        shape: t.shape,
        data: await readTensorData(tiny.llm, file, t),
      })),
    );
    const u32 = (value: number) => ({ type: 'uint32' as const, value });
    const cases: [
      string,
      (m: Map<string, GgufValue>) => void,
      (t: typeof tensors) => typeof tensors,
      string,
    ][] = [
      [
        'another architecture',
        (m) => m.set('general.architecture', { type: 'string', value: 'qwen2' }),
        (t) => t,
        'MM_UNSUPPORTED_FAMILY',
      ],
      [
        'heads that do not divide the width',
        (m) => m.set('llama.attention.head_count', u32(3)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'KV heads that do not divide the heads',
        (m) => m.set('llama.attention.head_count_kv', u32(3)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'an odd rope dimension',
        (m) => m.set('llama.rope.dimension_count', u32(7)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'a rope dimension wider than a head',
        (m) => m.set('llama.rope.dimension_count', u32(64)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      ['a zero context', (m) => m.set('llama.context_length', u32(0)), (t) => t, 'MM_GGUF_INVALID'],
      [
        'more blocks than tensors',
        (m) => m.set('llama.block_count', u32(4)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'a feed-forward width the tensors do not have',
        (m) => m.set('llama.feed_forward_length', u32(385)),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'a negative epsilon',
        (m) => m.set('llama.attention.layer_norm_rms_epsilon', { type: 'float32', value: -1 }),
        (t) => t,
        'MM_GGUF_INVALID',
      ],
      [
        'yarn rope scaling',
        (m) => m.set('llama.rope.scaling.type', { type: 'string', value: 'yarn' }),
        (t) => t,
        'MM_UNSUPPORTED_FAMILY',
      ],
      [
        'a missing FFN tensor',
        () => undefined,
        (t) => t.filter((x) => x.name !== 'blk.1.ffn_up.weight'),
        'MM_GGUF_INVALID',
      ],
      [
        'an i32 weight',
        () => undefined,
        (t) =>
          t.map((x) => (x.name === 'blk.0.attn_q.weight' ? { ...x, type: 'I32' as const } : x)),
        'MM_GGUF_INVALID',
      ],
    ];
    for (const [what, edit, keep, code] of cases) {
      const metadata = new Map(file.metadata);
      edit(metadata);
      const path = join(dir, 'hostile.gguf');
      await writeGguf(path, { metadata, tensors: keep(tensors) });
      const [got, message] = await outcome(
        ProjectorTrainer.create({
          model: path,
          projector: 'mlp',
          nEmbdV: 96,
          nHidden: 16,
          threads: 1,
        }),
      );
      expect([what, got], message).toEqual([what, code]);
    }
  });

  it('reads a mutated checkpoint or refuses it with MM_INVALID_ARGUMENT (1000 cases)', async () => {
    const n = 24;
    const ck: Checkpoint = {
      fingerprint: 'f'.repeat(64),
      stage: 1,
      step: 3,
      optimizerSteps: 3,
      results: [],
      params: [
        {
          name: 'mm.0.weight',
          ne: [4, 6],
          value: new Float32Array(n).fill(0.5),
          m: new Float32Array(n),
          v: new Float32Array(n),
        },
        {
          name: 'mm.0.bias',
          ne: [6],
          value: new Float32Array(6).fill(1),
          m: new Float32Array(6),
          v: new Float32Array(6),
        },
      ],
    };
    const path = join(dir, 'ck.bin');
    await writeCheckpoint(path, ck);
    const back = await readCheckpoint(path);
    expect(back?.params.map((p) => [p.name, p.value.length, p.value[0]])).toEqual([
      ['mm.0.weight', 24, 0.5],
      ['mm.0.bias', 6, 1],
    ]);
    const bytes = await readFile(path);
    const r = new Prng(77);
    const seen: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const b = Buffer.from(bytes);
      for (let k = 0; k < 1 + Math.floor(r.uniform() * 3); k++) {
        const at = Math.floor(r.uniform() * b.length);
        b[at] = Math.floor(r.uniform() * 256);
      }
      await writeFile(path, i % 10 === 9 ? b.subarray(0, Math.floor(r.uniform() * b.length)) : b);
      try {
        const c = await readCheckpoint(path);
        // what comes back is well formed: every tensor's three arrays match its shape
        for (const p of c?.params ?? []) {
          const size = p.ne.reduce((a, x) => a * x, 1);
          expect([p.value.length, p.m.length, p.v.length]).toEqual([size, size, size]);
        }
        seen['read'] = (seen['read'] ?? 0) + 1;
      } catch (e) {
        expect((e as { code?: string }).code).toBe('MM_INVALID_ARGUMENT');
        seen['MM_INVALID_ARGUMENT'] = (seen['MM_INVALID_ARGUMENT'] ?? 0) + 1;
      }
    }
    console.log(`mutated checkpoints: ${JSON.stringify(seen)}`);
  });
});
