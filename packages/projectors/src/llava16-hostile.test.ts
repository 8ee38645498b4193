import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import {
  type TinyLlava16MmprojOptions,
  tinyLlava16MmprojFixture,
  tinyLlava16MmprojSpec,
} from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';

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

async function codeOf(p: Promise<unknown>): Promise<[string, string]> {
  try {
    const v = await p;
    (v as { dispose?: () => void })?.dispose?.();
    return ['ok', ''];
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    return [e.code, e.message];
  }
}

describe('hostile LLaVA-1.6 pinpoints are typed errors', () => {
  it.each(cases)('%s', async (_name, options, message) => {
    const path = await tinyLlava16MmprojFixture(options);
    for (const load of [
      () => VisionEncoder.load(path, { threads: 1 }),
      () => Projector.load(path, { threads: 1 }),
      () => inspectMmproj(path),
    ]) {
      const [code, msg] = await codeOf(load());
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
      const [code, msg] = await codeOf(VisionEncoder.load(path, { threads: 1 }));
      expect(code).toBe('MM_GGUF_INVALID');
      expect(msg).toContain('image_grid_pinpoints');
    }
  });

  it('an encoder loaded before still answers', async () => {
    using encoder = await VisionEncoder.load(await tinyLlava16MmprojFixture(), { threads: 1 });
    await codeOf(VisionEncoder.load(await tinyLlava16MmprojFixture({ pinpoints: [[48, 32]] })));
    const { features, layout } = await encoder.encodeMedia(
      Image.fromRGB(new Uint8Array(60 * 30 * 3).fill(50), 60, 30),
    );
    expect(layout).toEqual({ gridX: 2, gridY: 1, hasOverview: true });
    expect(features.map((f) => f.nTokens)).toEqual([64, 64, 64]);
    for (const f of features) f.dispose();
  });
});
