import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import { type GgufMetadata, gv, writeGguf } from '@mm/gguf';
import { projectorTypes, SUPPORTED_PROJECTOR_FAMILIES, spanPositionIds } from '@mm/projectors';
import {
  compareVectors,
  LONG_TAIL_FAMILIES,
  LONG_TAIL_TEST_IMAGE_SIZES,
  type LongTailFamily,
  mtmdCli,
  runMtmdLayout,
  syntheticPngFixture,
  type TinyMmprojPair,
  tinyLongTailMmprojSpec,
  tinyLongTailPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelComponents } from './components.js';
import { ask } from './helpers.test-util.js';
import { preparePrompt, usesMrope } from './media.js';
import { flattenMessages, MEDIA_MARKER } from './messages.js';
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
    expect(model.mediaPromptInfo).toEqual({ imageBegin: '', imageEnd: '', fixedTokens: undefined });
    expect(model.fused?.info.mrope).toBe(family === 'qwen3vl_merger');
    // Qwen3-VL's rows carry one deepstack merger's features after the main ones
    expect(model.fused?.nEmbd).toBe(family === 'qwen3vl_merger' ? 2 * 64 : 64);
    expect(model.backbone.nEmbdInp).toBe(model.fused?.nEmbd);
  });

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${sizes.length} sizes`, {
    timeout: 300_000,
  }, async () => {
    const mrope = usesMrope(model.backbone);
    expect(mrope).toBe(family === 'qwen3vl_merger');
    const layouts: string[] = [];
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 3);
      const messages = ask(image, 'What is in the picture?');
      const flat = flattenMessages(messages);
      const prompt = model.backbone.applyChatTemplate(flat.messages, {
        addGenerationPrompt: true,
        jinja: model.jinja,
      });
      expect(prompt).toContain(MEDIA_MARKER);
      const ref = await runMtmdLayout({
        mmproj: files.mmproj,
        textModel: files.llm,
        prompt,
        images: [image],
        threads: 2,
      });
      model.imageCache.clear();
      const ours = await preparePrompt(model.components, messages, {
        positions: model.contextSize,
        what: 'the context',
      });
      expect(ours.mediaPath).toBe('libmtmd (fused)');
      expect(ours.chunks.map((c) => c.kind)).toEqual(
        ref.chunks.map((c) => (c.type === 'text' ? 'text' : 'media')),
      );
      let pos = 0;
      const shape: string[] = [];
      ours.chunks.forEach((c, i) => {
        const r = ref.chunks[i]!;
        expect(r.pos0).toBe(pos);
        if (c.kind === 'text' && r.type === 'text') {
          expect(Array.from(c.tokens)).toEqual(r.tokens);
          pos += c.tokens.length;
          return;
        }
        if (c.kind !== 'media' || r.type === 'text') throw new Error('chunk kinds differ');
        const { maxAbsDiff: max, cosine: cos } = compareVectors(c.chunk.rows, r.embd);
        console.log(
          `${family} ${w}x${h}: chunk ${i}: ${c.chunk.nTokens} rows x ${c.chunk.rows.length / c.chunk.nTokens} (${c.chunk.nx}x${c.chunk.ny}), ${c.nPos} positions, max |diff| ${max.toExponential(2)}, cosine ${cos.toFixed(6)}`,
        );
        expect(c.chunk.rows.length).toBe(r.embd.length);
        expect(c.chunk.rows.length).toBe(c.chunk.nTokens * ref.nEmbd);
        expect(max).toBeLessThanOrEqual(1e-3);
        expect(cos).toBeGreaterThanOrEqual(0.9999);
        expect([c.chunk.nTokens, c.nPos, c.chunk.causal]).toEqual([
          r.nTokens,
          r.nPos,
          !r.nonCausal,
        ]);
        if (mrope) expect([c.chunk.nx, c.chunk.ny]).toEqual([r.nx, r.ny]);
        const ids = spanPositionIds(c.chunk, pos, mrope);
        const n = c.chunk.nTokens;
        const mine = r.positions.map((_, k) =>
          mrope
            ? { t: ids[k], y: ids[n + k], x: ids[2 * n + k], z: ids[3 * n + k] }
            : { t: ids[k], y: ids[k], x: ids[k], z: ids[k] },
        );
        expect(mine).toEqual(r.positions);
        shape.push(`${c.chunk.nTokens}`);
        pos += c.nPos;
      });
      expect(pos).toBe(ref.nPosTotal);
      expect(ours.positions).toBe(ref.nPosTotal);
      layouts.push(shape.join('+'));
    }
    // the sizes lay out differently (chunk count or rows)
    expect(new Set(layouts).size).toBe(sizes.length);
  });

  it('greedy text equals llama-mtmd-cli; a second question reuses the cache and answers as a fresh run', {
    timeout: 600_000,
  }, async () => {
    for (const [w, h] of sizes) {
      const image = await syntheticPngFixture(w, h, 5);
      const question = 'Describe it.';
      const ref = await mtmdCli({
        model: files.llm,
        mmproj: files.mmproj,
        images: [image],
        prompt: question,
        maxTokens: 12,
        threads: 2,
      });
      await model.reset();
      model.imageCache.clear();
      const first = await model.chat(ask(image, question), { maxTokens: 12 });
      console.log(
        `${family} ${w}x${h}: ours ${JSON.stringify(first.text)} llama-mtmd-cli ${JSON.stringify(ref)}`,
      );
      expect(first.text).toBe(ref);
      expect(first.text.length).toBeGreaterThan(0);
      expect(first.stats.mediaPath).toBe('libmtmd (fused)');
      expect(first.stats.encodeMs).toBeGreaterThan(0);
      const follow = ask(image, 'Anything else?');
      const second = await model.chat(follow, { maxTokens: 12 });
      expect(second.stats.imageCacheHits).toBe(1);
      expect(second.stats.encodeMs).toBe(0);
      expect(second.stats.cachedTokens).toBeGreaterThan(0);
      await model.reset();
      model.imageCache.clear();
      const fresh = await model.chat(follow, { maxTokens: 12 });
      expect(fresh.stats.imageCacheHits).toBe(0);
      expect(second.text).toBe(fresh.text);
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
