import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import { projectorTypes, SUPPORTED_PROJECTOR_FAMILIES } from '@mm/projectors';
import {
  LONG_TAIL_FAMILIES,
  LONG_TAIL_TEST_IMAGE_SIZES,
  type LongTailFamily,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyLongTailMmprojSpec,
  tinyLongTailPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelComponents } from './components.js';
import {
  expectFollowUpFromCache,
  expectGreedyLikeMtmdCli,
  expectLayoutLikeMtmd,
} from './helpers.test-util.js';
import { usesMrope } from './media.js';
import { MultimodalModel } from './multimodal-model.js';

// The long tail: projector types mm has no own graph for run libmtmd's fused encoder + projector
// inside mm.node, and the backbone decodes its chunks. Against libmtmd on generated fixtures of three
// such types (pixtral: [IMG_BREAK] rows inside one chunk and an [IMG_END] marker; internvl: tiles and
// a thumbnail between <img> and </img>; qwen3vl_merger: M-RoPE spans and deepstack rows wider than
// the text model's n_embd), each on two picture sizes that lay out differently.

const dir = mkdtempSync(join(tmpdir(), 'mm-long-tail-'));

describe.each(LONG_TAIL_FAMILIES)('%s through libmtmd (fused)', (family: LongTailFamily) => {
  const sizes = LONG_TAIL_TEST_IMAGE_SIZES[family];
  let model: MultimodalModel;
  let files: TinyMmprojPair;
  beforeAll(async () => {
    files = await tinyLongTailPair({ family });
    model = await MultimodalModel.load({ model: files.llm, mmproj: files.mmproj, threads: 2 });
  }, 300_000);
  afterAll(() => model?.dispose());

  it('takes the fused path: no own encoder or projector, no markers of its own, no fixed token count', () => {
    expect(model.mediaPath).toBe('libmtmd (fused)');
    expect(model.encoder).toBeUndefined();
    expect(model.projector).toBeUndefined();
    expect(model.fused?.projectorType).toBe(family);
    expect(model.mediaPromptInfo).toEqual({
      imageBegin: '',
      imageEnd: '',
      fixedTokens: undefined,
      modalities: ['image'],
    });
    expect(model.fused?.info.mrope).toBe(family === 'qwen3vl_merger');
    // Qwen3-VL's rows carry one deepstack merger's features after the main ones
    expect(model.fused?.nEmbd).toBe(family === 'qwen3vl_merger' ? 2 * 64 : 64);
    expect(model.backbone.nEmbdInp).toBe(model.fused?.nEmbd);
  });

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${sizes.length} sizes`, {
    timeout: 300_000,
  }, async () => {
    expect(usesMrope(model.backbone)).toBe(family === 'qwen3vl_merger');
    const layouts: string[] = [];
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 3);
      const { ours, ref, media } = await expectLayoutLikeMtmd(model, files, image, {
        label: `${family} ${w}x${h}`,
      });
      expect(ours.mediaPath).toBe('libmtmd (fused)');
      for (const { ours: c } of media) {
        expect(c.chunk.rows.length).toBe(c.chunk.nTokens * ref.nEmbd);
      }
      layouts.push(media.map((m) => m.ours.chunk.nTokens).join('+'));
    }
    // the sizes lay out differently (chunk count or rows)
    expect(new Set(layouts).size).toBe(sizes.length);
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 600_000,
  }, async () => {
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 5);
      const first = await expectGreedyLikeMtmdCli(model, files, image, {
        label: `${family} ${w}x${h}`,
      });
      expect(first.stats.mediaPath).toBe('libmtmd (fused)');
      expect(first.stats.encodeMs).toBeGreaterThan(0);
      await expectFollowUpFromCache(model, image);
    }
  });

  it("an aborted embed rejects with the signal's reason, and the model answers afterwards", {
    timeout: 120_000,
  }, async () => {
    const image = await syntheticPngFixture(...(sizes[0] as [number, number]), 9);
    model.imageCache.clear();
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(
      model.embedMedia({ modality: 'image', input: image }, { signal: ac.signal }),
    ).rejects.toThrow('stop');
    const e = await model.embedMedia({ modality: 'image', input: image });
    expect(e.chunks.length).toBeGreaterThan(0);
  });
});

describe('projector types neither mm nor libmtmd runs', () => {
  it('are MM_UNSUPPORTED_FAMILY listing the own graphs and, apart, the fused types', async () => {
    const files = await tinyLongTailPair({ family: 'pixtral' });
    const spec = tinyLongTailMmprojSpec({ family: 'pixtral' });
    (spec.metadata as GgufMetadata).set('clip.projector_type', gv.string('tardis_merger'));
    const path = join(dir, 'unknown-type.gguf');
    await writeGguf(path, spec);
    const err = await ModelComponents.load({ model: files.llm, mmproj: path, threads: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(MmError.isInstance(err)).toBe(true);
    const e = err as MmError;
    expect(e.code).toBe(ErrorCode.MM_UNSUPPORTED_FAMILY);
    expect(e.message).toContain("projector type 'tardis_merger' is not supported");
    const own = /own graphs: ([^;]+);/.exec(e.message)?.[1]?.split(', ');
    const fused = /through libmtmd \(fused\): (.+)$/.exec(e.message)?.[1]?.split(', ');
    expect(own).toEqual(projectorTypes().own);
    for (const f of SUPPORTED_PROJECTOR_FAMILIES) expect(own).toContain(f);
    expect(fused).toEqual(projectorTypes().fused);
    for (const f of LONG_TAIL_FAMILIES) expect(fused).toContain(f);
  });

  it('types libmtmd lays out from the rest of the prompt are refused with the reason', async () => {
    const files = await tinyLongTailPair({ family: 'pixtral' });
    for (const [type, why] of [
      ['deepseek4v', 'pads its image'],
      ['hunyuanvl', 'XD-RoPE'],
    ] as const) {
      const spec = tinyLongTailMmprojSpec({ family: 'pixtral' });
      (spec.metadata as GgufMetadata).set('clip.projector_type', gv.string(type));
      const path = join(dir, `${type}.gguf`);
      await writeGguf(path, spec);
      await expect(
        ModelComponents.load({ model: files.llm, mmproj: path, threads: 1 }),
      ).rejects.toMatchObject({
        code: ErrorCode.MM_UNSUPPORTED_FAMILY,
        message: expect.stringContaining(why),
      });
    }
  });

  it('a text file named .gguf is refused before libmtmd sees it', async () => {
    const files = await tinyLongTailPair({ family: 'pixtral' });
    const path = join(dir, 'not-a-gguf.gguf');
    writeFileSync(path, 'hello');
    await expect(
      ModelComponents.load({ model: files.llm, mmproj: path, threads: 1 }),
    ).rejects.toMatchObject({ code: ErrorCode.MM_GGUF_INVALID });
  });
});
