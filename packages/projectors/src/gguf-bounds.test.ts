import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VisionEncoder } from '@mm/encoders';
import { type GgufMetadata, ggufToBuffer, gv, readGguf, readGgufFromBuffer } from '@mm/gguf';
import {
  growGgufString,
  keyFields,
  patchU32,
  patchU64,
  tensorFields,
  tinyMmprojSpec,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Projector } from './index.js';

/**
 * mmproj files beyond the GGUF spec's bounds (or llama.cpp's) are MM_GGUF_INVALID for the
 * native reader that VisionEncoder and Projector open them with, as for the TS reader.
 */
describe('mmproj GGUF bounds', () => {
  it('over-long keys and names, NUL in keys, absurd dimension counts and lengths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-mmproj-bounds-'));
    const spec = tinyMmprojSpec({ family: 'mlp' });
    const longKey = 'k'.repeat(65535 - 31);
    const metadata: GgufMetadata = new Map([
      [longKey, gv.uint8(1)],
      ...(spec.metadata as GgufMetadata),
    ]);
    const buf = ggufToBuffer({ ...spec, metadata });
    const file = readGgufFromBuffer(buf);
    const key = keyFields(file, longKey).length;
    const patch = tensorFields(file, 'v.patch_embd.weight');
    // 'clip.vision.image_size\0x' = 64 ahead of the real key: C-string lookups would read 64
    const shadowed = ggufToBuffer({
      ...spec,
      metadata: new Map([['clip.vision.image_sizeZx', gv.uint32(64)], ...metadata]),
    });
    const zAt = keyFields(readGgufFromBuffer(shadowed), 'clip.vision.image_sizeZx').type - 2;
    shadowed[zAt] = 0;
    const cases: [string, Uint8Array, RegExp][] = [
      [
        'a key of 65536 bytes',
        patchU64(growGgufString(buf, key, 32), key, 65536n),
        /key 0 is 65536 bytes long, more than the 65535 the GGUF spec allows/,
      ],
      ['a NUL in a key that shadows another', shadowed, /NUL byte/],
      [
        'a tensor name of 64 bytes',
        // 'v.patch_embd.weight' (19) + 45; the long key grows by 19 to keep the data aligned
        growGgufString(growGgufString(buf, key, 19), patch.name + 19, 45),
        /name is 64 bytes long|name \d+ is too long: 64 >= 64/,
      ],
      [
        'a tensor of 5 dimensions',
        patchU32(buf, patch.nDims, 5),
        /has 5 dimensions, more than 4|number of dimensions: 5 > 4/,
      ],
      [
        'an array of 2^62 floats',
        patchU64(buf, keyFields(file, 'clip.vision.image_mean').value + 4, 1n << 62n),
        /4611686018427387904 elements|failed to read key-value pairs/,
      ],
      [
        'a string of 2^63 bytes',
        patchU64(buf, keyFields(file, 'general.name').value, 1n << 63n),
        /9223372036854775808 bytes long|string length 9223372036854775808 exceeds/,
      ],
    ];
    const ok = join(dir, 'ok.gguf');
    writeFileSync(ok, buf);
    (await Projector.load(ok, { threads: 1 })).dispose();
    for (const [name, bytes, mention] of cases) {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.gguf`);
      writeFileSync(path, bytes);
      const encoder = await VisionEncoder.load(path, { threads: 1 }).catch((e) => e);
      const projector = await Projector.load(path, { threads: 1 }).catch((e) => e);
      const ts = await readGguf(path, { llamaCpp: true }).catch((e) => e);
      expect([name, encoder.code, projector.code, ts.code]).toEqual([
        name,
        'MM_GGUF_INVALID',
        'MM_GGUF_INVALID',
        'MM_GGUF_INVALID',
      ]);
      for (const m of [encoder.message, projector.message, ts.message]) {
        expect([name, m]).toEqual([name, expect.stringMatching(mention)]);
      }
    }
  });
});
