import { Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { Projector } from '@mm/projectors';
import {
  encodePng,
  qwenVlGrid,
  runMtmdOracle,
  syntheticImage,
  type TinyMmprojPair,
  tinyQwenVlPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageInput } from './messages.js';
import { MultimodalModel } from './multimodal-model.js';

// Picture sizes at the edges of Qwen-VL's dynamic resolution (libmtmd's smart resize: sides rounded
// to multiples of 2 patches, 8 to 4096 merged tokens), against libmtmd; and pictures too large to
// take, refused cheaply with a typed error.

/** PNG chunk CRC. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A small PNG whose IHDR claims width x height (a decompression "bomb" stand-in). */
function pngClaiming(width: number, height: number): Uint8Array {
  const png = encodePng(syntheticImage(8, 8, 1));
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  dv.setUint32(16, width);
  dv.setUint32(20, height);
  dv.setUint32(29, crc32(png.subarray(12, 29)));
  return png;
}

function ask(image: ImageInput, text: string) {
  return [
    {
      role: 'user' as const,
      content: [
        { type: 'image' as const, image },
        { type: 'text' as const, text },
      ],
    },
  ];
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (!MmError.isInstance(e)) throw e;
    return e.code;
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

const PATCH = 8; // the tiny Qwen-VL mmproj's

describe.each(['qwen2vl_merger', 'qwen2.5vl_merger'] as const)('%s picture sizes', (family) => {
  let pair: TinyMmprojPair;
  let encoder: VisionEncoder;
  let projector: Projector;
  beforeAll(async () => {
    pair = await tinyQwenVlPair({ family });
    encoder = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    projector = await Projector.load(pair.mmproj, { threads: 2 });
  });
  afterAll(() => {
    encoder?.dispose();
    projector?.dispose();
  });

  it('extreme aspect ratios (1x4000, 4000x1, ...) give the grid and embeddings of libmtmd', {
    timeout: 120_000,
  }, async () => {
    // one side rounds to 0 and is clamped up to one alignment unit (16 px); 1x20: scaled up to
    // the 8-token minimum; 8192x1: 512 tokens in one row
    const sizes = [
      [1, 4000],
      [4000, 1],
      [3, 1000],
      [1000, 3],
      [1, 20],
      [8192, 1],
    ] as const;
    const images = sizes.map(([w, h], i) => syntheticImage(w, h, 10 + i));
    const ref = await runMtmdOracle({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      images,
      threads: 2,
    });
    for (const [i, [w, h]] of sizes.entries()) {
      const grid = qwenVlGrid(w, h, PATCH);
      const img = images[i]!;
      const chunks = await encoder.encodeChunks(Image.fromRGB(img.data, w, h));
      expect(chunks).toHaveLength(1);
      using features = chunks[0]!;
      using embd = await projector.project(features);
      const r = ref[i]!;
      console.log(
        `${family} ${w}x${h}: resized to ${grid.width}x${grid.height}, ${embd.nTokens} tokens (${embd.nx}x${embd.ny}), libmtmd ${r.nTokens}, max |diff| ${maxDiff(embd.toFloat32Array(), r.embd).toExponential(2)}`,
      );
      expect([embd.nx, embd.ny, embd.nTokens]).toEqual([grid.tokensX, grid.tokensY, r.nTokens]);
      expect([r.pixelsShape[1], r.pixelsShape[2]]).toEqual([grid.height, grid.width]);
      expect(maxDiff(embd.toFloat32Array(), r.embd)).toBeLessThanOrEqual(1e-3);
    }
  });

  it('a picture whose smart resize overshoots 4096 tokens is MM_IMAGE_TOO_LARGE, before resizing', async () => {
    // Past ~4096:1 libmtmd scales the long side down to the pixel budget, then clamps the short side
    // back up to 16 px: 1x70000 becomes 16x270912, 16932 tokens (libmtmd encodes them with
    // qwen2vl_merger; with qwen2.5vl_merger it fails to allocate the 27 GB window mask and crashes).
    expect(qwenVlGrid(1, 70000, PATCH).tokens).toBe(16932);
    expect(qwenVlGrid(70000, 1, PATCH).tokens).toBe(16932);
    // the largest 1-px-wide picture that fits: 65536 rows, exactly 4096 tokens
    expect(qwenVlGrid(1, 65536, PATCH).tokens).toBe(4096);
    for (const [w, h] of [
      [1, 70000],
      [70000, 1],
      [1, 1 << 22],
    ] as const) {
      const img = Image.fromRGB(new Uint8Array(w * h * 3).fill(90), w, h);
      const t0 = performance.now();
      const err = await encoder.encodeChunks(img).catch((e) => e);
      const ms = performance.now() - t0;
      expect(err.code, String(err)).toBe('MM_IMAGE_TOO_LARGE');
      expect(err.message).toContain('aspect ratio');
      expect(ms).toBeLessThan(1000);
    }
    // the encoder still works
    using f = (
      await encoder.encodeChunks(Image.fromRGB(syntheticImage(64, 64, 1).data, 64, 64))
    )[0]!;
    expect(f.nTokens).toBe(64);
  });
});

describe('huge pictures through MultimodalModel (qwen2.5vl_merger)', () => {
  let model: MultimodalModel;
  beforeAll(async () => {
    const pair = await tinyQwenVlPair({ family: 'qwen2.5vl_merger' });
    model = await MultimodalModel.load({ model: pair.llm, mmproj: pair.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it('a 16000x16000 header is refused from the header; the model answers afterwards', {
    timeout: 60_000,
  }, async () => {
    const t0 = performance.now();
    for (const [w, h] of [
      [16000, 16000],
      [16384, 16384],
      [1, 70000],
    ] as const) {
      const bytes = pngClaiming(w, h);
      const code = await codeOf(model.chat(ask(bytes, 'Hi?'), { maxTokens: 2 }));
      // 16000^2 is over the 50 M-pixel default (header check); 1x70000 decodes, then its resize
      // would overshoot the token limit (or the data is short: a decode error)
      expect(['MM_IMAGE_TOO_LARGE', 'MM_IMAGE_DECODE']).toContain(code);
      if (w * h > 50_000_000) expect(code).toBe('MM_IMAGE_TOO_LARGE');
    }
    expect(performance.now() - t0).toBeLessThan(5000);
    const ok = await model.chat(ask(encodePng(syntheticImage(40, 30, 2)), 'Hi?'), {
      maxTokens: 3,
    });
    expect(ok.stats.imageTokens).toBeGreaterThan(0);
  });
});
