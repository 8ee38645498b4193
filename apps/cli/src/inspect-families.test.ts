import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GgufValue, gv, writeGguf } from '@mm/gguf';
import { inspectMmproj } from '@mm/projectors';
import {
  tinyGemma3MmprojFixture,
  tinyGemma3MmprojSpec,
  tinyIdefics3MmprojFixture,
  tinyMinicpmvMmprojFixture,
  tinyMmprojFixture,
  tinyQwenVlMmprojFixture,
  tinyQwenVlMmprojSpec,
  tinyShapesPaths,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { VISION_FAMILIES } from './commands/families.js';
import { runMain } from './main.test-util.js';

// `mm inspect <mmproj>` says what mm makes of a file (family, fixed or dynamic resolution with its
// limits, markers, causal or not), and `mm info` lists the families.

const lines = (out: string) => out.split('\n');
const row = (out: string, key: string) =>
  lines(out)
    .find((l) => l.startsWith(`${key.padEnd(20)} `))
    ?.slice(21);

describe('mm inspect on the new families', () => {
  it('Qwen2-VL / Qwen2.5-VL: dynamic resolution with its pixel and token limits, vision markers, causal', async () => {
    for (const family of ['qwen2vl_merger', 'qwen2.5vl_merger'] as const) {
      const path = await tinyQwenVlMmprojFixture({ family });
      const r = await runMain(['inspect', path]);
      expect(r.code, r.err).toBe(0);
      expect(row(r.out, 'projector')).toBe(family);
      expect(row(r.out, 'mm')).toBe(`own graph: ${family} (encoder qwen2vl)`);
      expect(row(r.out, 'resolution')).toBe(
        'dynamic: sides multiples of 16 px, 2048-1048576 pixels (8-4096 tokens), bicubic, pad ceil',
      );
      expect(row(r.out, 'image markers')).toBe('<|vision_start|> ... <|vision_end|>');
      expect(row(r.out, 'image span')).toBe('causal');
      expect(row(r.out, 'output width')).toBe("64 (the text model's n_embd)");
      expect(row(r.out, 'attention')).toBe(
        family === 'qwen2.5vl_merger' ? '112-px windows, full every 2 blocks' : undefined,
      );
      const j = JSON.parse((await runMain(['inspect', '--json', path])).out);
      expect(j.mm).toEqual({
        path: 'own graph',
        family,
        encoderFamily: 'qwen2vl',
        dynamicResolution: true,
        align: 16,
        minPixels: 2048,
        maxPixels: 1048576,
        minTokens: 8,
        maxTokens: 4096,
        imageTokens: 400,
        resize: 'bicubic, pad ceil',
        windowPattern: family === 'qwen2.5vl_merger' ? 2 : 0,
        imageBegin: '<|vision_start|>',
        imageEnd: '<|vision_end|>',
        causal: true,
        nEmbdOut: 64,
      });
    }
  });

  it('Gemma 3: a fixed size, pooled tokens, image markers, a non-causal span', async () => {
    const path = await tinyGemma3MmprojFixture();
    const r = await runMain(['inspect', path]);
    expect(r.code, r.err).toBe(0);
    expect(row(r.out, 'mm')).toBe('own graph: gemma3 (encoder siglip)');
    expect(row(r.out, 'resolution')).toBe('fixed: 32x32, bilinear, pad ceil');
    expect(row(r.out, 'image tokens')).toBe('16');
    expect(row(r.out, 'image markers')).toBe('<start_of_image> ... <end_of_image>');
    expect(row(r.out, 'image span')).toBe('non-causal (attends both ways)');
    const j = JSON.parse((await runMain(['inspect', '--json', path])).out);
    expect(j.mm).toMatchObject({
      family: 'gemma3',
      dynamicResolution: false,
      inputSize: 32,
      imageTokens: 16,
      causal: false,
      imageBegin: '<start_of_image>',
      imageEnd: '<end_of_image>',
    });
    expect(j.mm.minPixels).toBeUndefined();
    // LLaVA-style: no markers
    const mlp = await runMain(['inspect', tinyShapesPaths().mmproj]);
    expect(row(mlp.out, 'image markers')).toBe('none');
    expect(row(mlp.out, 'resolution')).toBe('fixed: 48x48, bicubic, pad ceil');
    // a text model has no mm rows
    expect(row((await runMain(['inspect', tinyShapesPaths().llm])).out, 'mm')).toBeUndefined();
  });

  it('MiniCPM-V: slices whose sizes follow the picture, the same tokens per chunk, no markers, causal', async () => {
    const path = await tinyMinicpmvMmprojFixture({ version: 3 });
    const r = await runMain(['inspect', path]);
    expect(r.code, r.err).toBe(0);
    expect(row(r.out, 'projector')).toBe('resampler');
    expect(row(r.out, 'mm')).toBe('own graph: resampler (encoder minicpmv)');
    expect(row(r.out, 'resolution')).toBe(
      "dynamic slices: an overview and slices of about 64x64 pixels in the picture's aspect ratio (as libmtmd cuts it), bicubic, pad none",
    );
    expect(row(r.out, 'image tokens')).toBe('16 per chunk');
    expect(row(r.out, 'image markers')).toBe('none');
    expect(row(r.out, 'image span')).toBe('causal');
    expect(row(r.out, 'output width')).toBe("256 (the text model's n_embd)");
    const j = JSON.parse((await runMain(['inspect', '--json', path])).out);
    expect(j.mm).toMatchObject({
      path: 'own graph',
      family: 'resampler',
      encoderFamily: 'minicpmv',
      dynamicResolution: true,
      tiled: true,
      inputSize: 64,
      imageTokens: 16,
      causal: true,
      nEmbdOut: 256,
    });
  });

  it('a file mm does not run says why, and the header is still shown (exit 0)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-inspect-'));
    // (pixtral, once refused, now runs through libmtmd: run-long-tail.test.ts)
    const unknown = tinyGemma3MmprojSpec();
    (unknown.metadata as Map<string, GgufValue>).set('clip.projector_type', gv.string('tardis'));
    await writeGguf(join(dir, 'unknown.gguf'), unknown);
    const wa1 = tinyQwenVlMmprojSpec({ family: 'qwen2.5vl_merger' });
    (wa1.metadata as Map<string, GgufValue>).set('clip.vision.n_wa_pattern', gv.uint32(1));
    await writeGguf(join(dir, 'wa1.gguf'), wa1);
    const a = await runMain(['inspect', join(dir, 'unknown.gguf')]);
    expect(a.code).toBe(0);
    expect(row(a.out, 'projector')).toBe('tardis');
    expect(row(a.out, 'mm')).toMatch(/^not supported by mm: MM_UNSUPPORTED_FAMILY: .*'tardis'/);
    const b = await runMain(['inspect', '--json', join(dir, 'wa1.gguf')]);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.out).mm).toMatchObject({
      path: 'refused',
      error: { code: 'MM_GGUF_UNSUPPORTED' },
    });
  });
});

describe('mm info lists the vision families', () => {
  it('with their encoder, resolution, markers and causality, as the files say', async () => {
    const r = await runMain(['info']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^ {2}qwen2\.5vl_merger qwen2vl +dynamic \(8-4096 tokens.*112-px windows\); markers <\|vision_start\|> \.\.\. <\|vision_end\|>; causal span$/m,
    );
    expect(r.out).toMatch(
      /^ {2}gemma3 +siglip +fixed .*; markers <start_of_image> \.\.\. <end_of_image>; non-causal span$/m,
    );
    const j = JSON.parse((await runMain(['info', '--json'])).out);
    expect(j.visionFamilies.map((f: { family: string }) => f.family)).toEqual([
      'mlp',
      'mlp_norm',
      'ldp',
      'ldpv2',
      'qwen2vl_merger',
      'qwen2.5vl_merger',
      'gemma3',
      'idefics3',
      'resampler',
    ]);
    // the table agrees with what mm reads from a file of each family
    const files: Record<string, string> = {
      mlp: await tinyMmprojFixture({ family: 'mlp' }),
      mlp_norm: await tinyMmprojFixture({ family: 'mlp_norm' }),
      ldp: await tinyMmprojFixture({ family: 'ldp' }),
      ldpv2: await tinyMmprojFixture({ family: 'ldpv2' }),
      qwen2vl_merger: await tinyQwenVlMmprojFixture({ family: 'qwen2vl_merger' }),
      'qwen2.5vl_merger': await tinyQwenVlMmprojFixture({ family: 'qwen2.5vl_merger' }),
      gemma3: await tinyGemma3MmprojFixture(),
      idefics3: await tinyIdefics3MmprojFixture(),
      resampler: await tinyMinicpmvMmprojFixture(),
    };
    for (const f of VISION_FAMILIES) {
      const info = await inspectMmproj(files[f.family] as string);
      expect(
        [info.family, info.encoderFamily, info.imageBegin, info.imageEnd, info.causal],
        f.family,
      ).toEqual([f.family, f.encoder, f.imageBegin, f.imageEnd, f.causal]);
      expect(info.dynamicResolution).toBe(f.resolution.startsWith('dynamic'));
      expect(f.resolution.includes('windows')).toBe(info.windowPattern > 0);
    }
  });
});
