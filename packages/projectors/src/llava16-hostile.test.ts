import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import {
  type MtmdMediaChunk,
  Prng,
  runMtmdLayout,
  syntheticImage,
  type TinyLlava16MmprojOptions,
  tinyLlava16MmprojFixture,
  tinyLlava16MmprojSpec,
  tinyLlava16Pair,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';
import { outcome } from './mutated-mmproj.test-util.js';

// Hostile clip.vision.image_grid_pinpoints in a LLaVA-1.6 mmproj: every loader (VisionEncoder,
// Projector, inspectMmproj) refuses them with MM_GGUF_INVALID before anything is sized from them.
// libmtmd takes most of these and then aborts (partial slices fail its slice-count assert) or
// allocates without bound; an odd count it refuses too.

const dir = mkdtempSync(join(tmpdir(), 'mm-llava16-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cases: [string, TinyLlava16MmprojOptions, string][] = [
  ['an odd count', { rawPinpoints: [64, 32, 64] }, 'pairs'],
  ['a zero side', { rawPinpoints: [64, 0] }, 'whole 32x32 slices'],
  ['a negative side', { rawPinpoints: [-32, 64] }, 'whole 32x32 slices'],
  ['a side that is not whole slices', { pinpoints: [[48, 32]] }, 'whole 32x32 slices'],
  ['a side smaller than a slice', { pinpoints: [[64, 16]] }, 'whole 32x32 slices'],
  ['int32 max', { pinpoints: [[0x7fffffff, 32]] }, 'whole 32x32 slices'],
  ['2^31 - 32 (whole slices)', { pinpoints: [[0x7fffffe0, 32]] }, 'slices, more than 64'],
  ['a 9x8 grid', { pinpoints: [[288, 256]] }, 'slices, more than 64'],
  [
    '257 candidates',
    { pinpoints: Array.from({ length: 257 }, () => [64, 32] as const) },
    'more than 256',
  ],
];

describe('hostile LLaVA-1.6 pinpoints are typed errors', () => {
  it.each(cases)('%s', async (_name, options, message) => {
    const path = await tinyLlava16MmprojFixture(options);
    for (const load of [
      () => VisionEncoder.load(path, { threads: 1 }),
      () => Projector.load(path, { threads: 1 }),
      () => inspectMmproj(path),
    ]) {
      const [code, msg] = await outcome(load());
      expect(code).toBe('MM_GGUF_INVALID');
      expect(msg).toContain('image_grid_pinpoints');
      expect(msg).toContain(message);
    }
  });

  it('pinpoints of another type (uint32 or a string) are MM_GGUF_INVALID', async () => {
    for (const [name, value] of [
      ['u32', gv.array('uint32', new Uint32Array([64, 32]))],
      ['str', gv.string('[(64, 32)]')],
    ] as const) {
      const spec = tinyLlava16MmprojSpec();
      (spec.metadata as GgufMetadata).set('clip.vision.image_grid_pinpoints', value);
      const path = join(dir, `${name}.gguf`);
      await writeGguf(path, spec);
      const [code, msg] = await outcome(VisionEncoder.load(path, { threads: 1 }));
      expect(code).toBe('MM_GGUF_INVALID');
      expect(msg).toContain('image_grid_pinpoints');
    }
  });

  it('an encoder loaded before still answers', async () => {
    using encoder = await VisionEncoder.load(await tinyLlava16MmprojFixture(), { threads: 1 });
    await outcome(VisionEncoder.load(await tinyLlava16MmprojFixture({ pinpoints: [[48, 32]] })));
    const { features, layout } = await encoder.encodeMedia(
      Image.fromRGB(new Uint8Array(60 * 30 * 3).fill(50), 60, 30),
    );
    expect(layout).toEqual({ gridX: 2, gridY: 1, hasOverview: true });
    expect(features.map((f) => f.nTokens)).toEqual([64, 64, 64]);
    for (const f of features) f.dispose();
  });

  it('random pinpoints and pictures: typed errors, or the slices libmtmd makes', {
    timeout: 600_000,
  }, async () => {
    const r = new Prng(0x11a7a16);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r.uniform() * xs.length)] as T;
    const { llm } = await tinyLlava16Pair();
    const SIDES = [32, 64, 96, 128, 160, 256];
    const ODD = [-32, -1, 0, 1, 16, 31, 33, 48, 2048, 0x7fffffe0, 0x7fffffff];
    const PICTURES = [1, 2, 20, 31, 32, 33, 47, 100, 333, 1200];
    const counts: Record<string, number> = {};
    let compared = 0;
    for (let i = 0; i < 30; i++) {
      const n = 1 + Math.floor(r.uniform() * 6);
      const values: number[] = [];
      for (let k = 0; k < 2 * n; k++) values.push(r.uniform() < 0.93 ? pick(SIDES) : pick(ODD));
      if (r.uniform() < 0.05) values.pop();
      const path = join(dir, `fuzz-${i}.gguf`);
      await writeGguf(path, tinyLlava16MmprojSpec({ rawPinpoints: values }));
      const loaded = await VisionEncoder.load(path, { threads: 1 }).catch((e: unknown) => e);
      if (!(loaded instanceof VisionEncoder)) {
        expect(MmError.isInstance(loaded) && loaded.code).toBe('MM_GGUF_INVALID');
        counts['refused'] = (counts['refused'] ?? 0) + 1;
        continue;
      }
      using encoder = loaded;
      const raw = syntheticImage(pick(PICTURES), pick(PICTURES), i);
      const { inputs, layout } = await encoder.slice(
        Image.fromRGB(raw.data, raw.width, raw.height),
      );
      expect(inputs.length).toBe(layout.gridX * layout.gridY + 1);
      expect(inputs.length).toBeLessThanOrEqual(65);
      counts[`${inputs.length} chunks`] = (counts[`${inputs.length} chunks`] ?? 0) + 1;
      const ref = await runMtmdLayout({
        mmproj: path,
        textModel: llm,
        prompt: 'A <__media__> B',
        images: [raw],
      });
      const media = ref.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
      expect(media.length).toBe(inputs.length);
      // libmtmd's order: the slices, then the overview
      [...inputs.slice(1), inputs[0]!].forEach((p, k) => {
        expect(p.data).toEqual(media[k]!.pixels);
      });
      compared++;
    }
    console.log(
      `llava16 pinpoint fuzz: ${JSON.stringify(counts)}, ${compared} compared with libmtmd`,
    );
    expect(compared).toBeGreaterThan(8);
  });
});
