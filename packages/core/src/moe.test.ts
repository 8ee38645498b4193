import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backbone } from '@mm/backbone-gguf';
import { type GgufWriteSpec, writeGguf } from '@mm/gguf';
import {
  compareVectors,
  resolveTinyMmprojOptions,
  routeFirstToken,
  syntheticPngFixture,
  type TinyMoePair,
  tinyMmprojPair,
  tinyMoePair,
  tinyMoeSpec,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGreedyLikeMtmdCli, expectLayoutLikeMtmd } from './helpers.test-util.js';
import { MultimodalModel } from './multimodal-model.js';

// A mixture-of-experts LLM backbone (the MoE-LLaVA direction): a tiny generated llama-architecture
// MoE text model in Mixtral form (4 experts, top 2) behind the tiny `mlp` CLIP mmproj. llama.cpp
// runs the experts; these tests pin that mm feeds it exactly what libmtmd does and that the
// router really routes.

const dir = mkdtempSync(join(tmpdir(), 'mm-moe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIZES: readonly (readonly [number, number])[] = [
  [32, 32],
  [90, 50],
  [40, 120],
];

describe('MoE text model behind an mlp mmproj, against libmtmd', () => {
  let files: TinyMoePair;
  let model: MultimodalModel;
  beforeAll(async () => {
    files = await tinyMoePair();
    model = await MultimodalModel.load({ model: files.llm, mmproj: files.mmproj, threads: 2 });
  });
  afterAll(() => model?.dispose());

  it('Backbone.info reports the experts (and 0 / 0 for a dense model)', async () => {
    expect([files.nExpert, files.nExpertUsed, files.nEmbd]).toEqual([4, 2, 64]);
    const info = model.backbone.info;
    expect([info.architecture, info.nExpert, info.nExpertUsed, info.nEmbd]).toEqual([
      'llama',
      4,
      2,
      64,
    ]);
    const dense = await tinyMmprojPair({ family: 'mlp' });
    const b = await Backbone.load(dense.llm);
    try {
      expect([b.info.nExpert, b.info.nExpertUsed]).toEqual([0, 0]);
    } finally {
      b.dispose();
    }
  });

  it('llama.cpp routes a first token to the experts the router weights pick, and only to them', {
    timeout: 120_000,
  }, async () => {
    // Block 0 on a one-token sequence is exact in f64 (routeFirstToken). Zeroing the experts it
    // does not pick leaves llama.cpp's logits bit-identical; zeroing its first choice changes them.
    const spec = tinyMoeSpec({ nEmbd: files.nEmbd });
    const nEmbd = files.nEmbd;
    const zeroExperts = async (name: string, experts: number[]): Promise<string> => {
      const tensors = (spec.tensors ?? []).map((t) => {
        if (!/^blk\.0\.ffn_(gate|up|down)_exps\.weight$/.test(t.name)) return t;
        const data = new Float32Array(t.data as Float32Array);
        const per = data.length / 4;
        for (const e of experts) data.fill(0, e * per, (e + 1) * per);
        return { ...t, data };
      });
      const path = join(dir, `${name}.gguf`);
      await writeGguf(path, { ...(spec as GgufWriteSpec), tensors });
      return path;
    };
    const logitsOf = async (path: string, token: number): Promise<Float32Array> => {
      const b = await Backbone.load(path);
      try {
        const ctx = await b.createContext({ contextSize: 32, threads: 2 });
        const r = await ctx.decode({ tokens: [token], logits: 'last' });
        ctx.dispose();
        return r.logits as Float32Array;
      } finally {
        b.dispose();
      }
    };
    expect(spec.tensors?.find((t) => t.name === 'blk.0.ffn_gate_inp.weight')?.shape).toEqual([
      nEmbd,
      4,
    ]);
    // first tokens that block 0 sends to at least three different pairs of experts
    const tokens = [1, 300, 350, 380];
    const routes = tokens.map((t) => routeFirstToken(spec, t));
    const pairs = new Set(routes.map((r) => [...r].sort().join(',')));
    console.log(`block-0 routes: ${tokens.map((t, i) => `${t} → ${routes[i]}`).join(', ')}`);
    expect(pairs.size).toBeGreaterThanOrEqual(3);
    for (const [i, token] of tokens.entries()) {
      const picked = routes[i]!;
      const others = [0, 1, 2, 3].filter((e) => !picked.includes(e));
      const base = await logitsOf(files.llm, token);
      const keep = await logitsOf(await zeroExperts(`keep-${token}`, others), token);
      const drop = await logitsOf(await zeroExperts(`drop-${token}`, [picked[0]!]), token);
      const kept = compareVectors(keep, base).maxAbsDiff;
      const dropped = compareVectors(drop, base).maxAbsDiff;
      console.log(
        `token ${token}: experts ${picked}; others zeroed max |diff| ${kept}, expert ${picked[0]} zeroed max |diff| ${dropped.toFixed(3)}`,
      );
      expect(kept).toBe(0);
      expect(dropped).toBeGreaterThan(0.5);
    }
  });

  it(`every chunk's embeddings and the prompt layout equal mtmd_tokenize's, on ${SIZES.length} pictures`, {
    timeout: 120_000,
  }, async () => {
    const o = resolveTinyMmprojOptions({ family: 'mlp' });
    const nTokens = (o.imageSize / o.patchSize) ** 2;
    for (const [w, h] of SIZES) {
      const image = await syntheticPngFixture(w, h, 7);
      const { ours, ref, media } = await expectLayoutLikeMtmd(model, files, image, {
        label: `moe ${w}x${h}`,
      });
      expect(ours.chunks.map((c) => c.kind)).toEqual(['text', 'media', 'text']);
      expect(ref.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text']);
      expect(media.map((m) => m.ours.chunk.nTokens)).toEqual([nTokens]);
    }
  });

  it(`greedy text equals llama-mtmd-cli on ${SIZES.length} pictures`, {
    timeout: 300_000,
  }, async () => {
    const texts: string[] = [];
    for (const [i, [w, h]] of SIZES.entries()) {
      const image = await syntheticPngFixture(w, h, 11 + i);
      const ours = await expectGreedyLikeMtmdCli(model, files, image, {
        label: `moe ${w}x${h}`,
        question: i === 1 ? 'What is in the picture?' : 'Describe it.',
        maxTokens: 16,
      });
      expect(ours.stats.generatedTokens).toBeGreaterThan(4);
      texts.push(ours.text);
    }
    // the pictures steer the answer
    expect(new Set(texts).size).toBeGreaterThan(1);
  });
});
