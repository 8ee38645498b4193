import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backbone } from '@mm/backbone-gguf';
import { Image, VisionEncoder } from '@mm/encoders';
import { readGguf, readTensorData } from '@mm/gguf';
import {
  compareVectors,
  Prng,
  runMtmdOracle,
  tinyAudioPair,
  tinyLlamaFixture,
  tinyMmprojPair,
  tinyShapesPaths,
  writeTinyShapesDataset,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  layoutTrainSample,
  Projector,
  ProjectorTrainer,
  type TrainProgress,
  trainProjector,
} from './index.js';

// Projector training on ggml (trainProjector / ProjectorTrainer): the frozen LLM of the training
// graph against libllama, the gradient against finite differences, abort + resume against one
// uninterrupted run, the written mmproj against libmtmd, and bad data lines. The whole PT -> IT
// recipe on tiny-shapes, scored by llama-mtmd-cli, is train-recipe.test.ts.

const tiny = tinyShapesPaths();
let dir: string;
let pt: string;
let it_: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-train-'));
  pt = (await writeTinyShapesDataset(dir, { count: 48, seed: 11, kind: 'pt', name: 'pt' })).jsonl;
  it_ = (await writeTinyShapesDataset(dir, { count: 48, seed: 12, kind: 'it', name: 'it' })).jsonl;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A trainer on the tiny-shapes LLM with four laid-out samples of the bundled pictures. */
async function smallTrainer(nHidden: number) {
  const backbone = await Backbone.load(tiny.llm);
  using encoder = await VisionEncoder.load(tiny.mmproj, { threads: 2 });
  const images = [];
  for (let i = 0; i < 4; i++) {
    images.push(await Image.fromFile(join(tiny.dir, 'samples', `sample_00${i}.png`)));
  }
  const f = await encoder.encodeMany(images);
  const qa: [string, string][] = [
    ['Describe the image.', 'a red circle on the left.'],
    ['What color is the shape?', 'green.'],
    ['What shape is it?', 'square.'],
    ['Where is the shape?', 'at the top.'],
  ];
  const samples = qa.map(([question, answer], i) => ({
    image: i,
    ...layoutTrainSample(backbone, { turns: [{ question, answer }] }, f.nTokens),
  }));
  const trainer = await ProjectorTrainer.create({
    model: tiny.llm,
    projector: 'mlp',
    nEmbdV: f.nEmbd,
    nHidden,
    threads: 2,
  });
  trainer.setData(f.rows, 4, f.nTokens, samples);
  const r = new Prng(7);
  for (const p of trainer.params) {
    const n = p.ne.reduce((a, b) => a * b, 1);
    trainer.setParam(
      p.name,
      Float32Array.from({ length: n }, () => (r.uniform() - 0.5) * 0.5),
    );
  }
  return { trainer, backbone, samples };
}

/**
 * Worst relative error between the trainer's gradient and a central finite difference (step 1e-2),
 * over the `perTensor` largest gradient entries of each named tensor (each checked to be non-zero).
 */
async function finiteDifferenceError(
  trainer: ProjectorTrainer,
  batch: number[],
  names: readonly string[],
  perTensor: number,
): Promise<{ worst: number; checked: number }> {
  const g = await trainer.evaluate(batch, { grads: true });
  let worst = 0;
  let checked = 0;
  for (const name of names) {
    const grad = g.grads?.get(name) as Float32Array;
    const w = trainer.getParam(name);
    const top = Array.from(grad.keys())
      .sort((a, b) => Math.abs(grad[b] as number) - Math.abs(grad[a] as number))
      .slice(0, perTensor);
    for (const i of top) {
      const h = 1e-2;
      const at = async (d: number) => {
        const v = w.slice();
        v[i] = (v[i] as number) + d;
        trainer.setParam(name, v);
        return (await trainer.evaluate(batch)).loss;
      };
      const fd = ((await at(h)) - (await at(-h))) / (2 * h);
      trainer.setParam(name, w);
      const an = grad[i] as number;
      expect(Math.abs(an)).toBeGreaterThan(1e-4);
      worst = Math.max(worst, Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an)));
      checked++;
    }
  }
  return { worst, checked };
}

describe('the training graph', () => {
  it('lays a sample out as llama-mtmd-cli tokenizes it (MODEL.md)', async () => {
    using backbone = await Backbone.load(tiny.llm);
    const l = layoutTrainSample(
      backbone,
      { turns: [{ question: 'What color is the shape?', answer: 'red.' }] },
      36,
    );
    // MODEL.md: <s> <|im_start|> ▁user <0x0A>, 36 picture rows, ▁What ... ▁assistant <0x0A>,
    // then the generated ▁red . <|im_end|>
    expect(Array.from(l.tokens)).toEqual([
      1, 3, 365, 15, 286, 330, 274, 263, 278, 440, 4, 422, 15, 3, 372, 15, 360, 431, 4,
    ]);
    expect(l.imagePos).toBe(4);
    expect(Array.from(l.targets)).toEqual([52, 53, 54]);
    expect(l.length).toBe(55);
  });

  it("gives libllama's logits for the same input embeddings (max |diff| <= 1e-4)", async () => {
    const { trainer, backbone } = await smallTrainer(16);
    using ctx = await backbone.createContext({
      contextSize: 256,
      kvCacheType: 'f32',
      flashAttention: false,
      threads: 2,
    });
    const r = new Prng(3);
    const rows = 60;
    const embd = Float32Array.from({ length: rows * 128 }, () => (r.uniform() - 0.5) * 0.4);
    const ref = await ctx.decode({ embeddings: embd, logits: 'all' });
    const ours = await trainer.llmLogits(embd);
    const { maxAbsDiff } = compareVectors(ours, ref.logits as Float32Array);
    console.log(
      `training-graph llama logits vs libllama: ${rows} rows, max |diff| ${maxAbsDiff.toExponential(2)}`,
    );
    expect(ours.length).toBe(rows * backbone.nVocab);
    expect(maxAbsDiff).toBeLessThanOrEqual(1e-4);
    trainer.dispose();
    backbone.dispose();
    // grouped-query attention (4 heads, 2 KV heads), another width and context
    const gqa = await tinyLlamaFixture({
      seed: 9,
      nEmbd: 64,
      nHead: 4,
      nHeadKv: 2,
      nFf: 96,
      nCtx: 512,
    });
    using b2 = await Backbone.load(gqa);
    using c2 = await b2.createContext({
      contextSize: 512,
      kvCacheType: 'f32',
      flashAttention: false,
      threads: 2,
    });
    using t2 = await ProjectorTrainer.create({
      model: gqa,
      projector: 'linear',
      nEmbdV: 8,
      nHidden: 0,
    });
    const e2 = Float32Array.from({ length: 300 * 64 }, () => (r.uniform() - 0.5) * 2);
    const d2 = compareVectors(
      await t2.llmLogits(e2),
      (await c2.decode({ embeddings: e2, logits: 'all' })).logits as Float32Array,
    );
    console.log(
      `training-graph llama logits vs libllama (GQA 4/2, 300 rows): max |diff| ${d2.maxAbsDiff.toExponential(2)}`,
    );
    expect(d2.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  });

  it('computes the projector gradient a finite difference gives (relative error <= 1e-2)', async () => {
    const { trainer, backbone } = await smallTrainer(16);
    const batch = [0, 1, 2, 3];
    const g = await trainer.evaluate(batch);
    // ▁a ▁red ▁circle ▁on ▁the ▁left . <|im_end|>, ▁green . <|im_end|>, ...
    expect(g.nTargets).toBe(8 + 3 + 3 + 5);
    const { worst, checked } = await finiteDifferenceError(
      trainer,
      batch,
      trainer.params.map((p) => p.name),
      4,
    );
    console.log(
      `projector gradient vs central differences: ${checked} entries, worst relative error ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThanOrEqual(1e-2);
    // a step moves the loss down
    const before = (await trainer.evaluate(batch)).loss;
    for (let s = 0; s < 5; s++) await trainer.step(batch, { lr: 1e-2 });
    expect((await trainer.evaluate(batch)).loss).toBeLessThan(before);
    expect(trainer.steps).toBe(5);
    trainer.dispose();
    backbone.dispose();
  });

  it('computes the ldpv2 gradient (pooling, depthwise conv) a finite difference gives', async () => {
    const pair = await tinyMmprojPair({ family: 'ldpv2' });
    using backbone = await Backbone.load(pair.llm);
    using encoder = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    const images = [];
    for (let i = 0; i < 2; i++) {
      images.push(await Image.fromFile(join(tiny.dir, 'samples', `sample_00${i}.png`)));
    }
    const f = await encoder.encodeMany(images);
    expect(f.nTokens).toBe(576);
    const samples = [
      {
        image: 0,
        ...layoutTrainSample(
          backbone,
          { turns: [{ question: 'Describe the image.', answer: 'a red circle on the left.' }] },
          144,
        ),
      },
      {
        image: 1,
        ...layoutTrainSample(
          backbone,
          { turns: [{ question: 'What shape is it?', answer: 'square.' }] },
          144,
        ),
      },
    ];
    using trainer = await ProjectorTrainer.create({
      model: pair.llm,
      projector: 'ldpv2',
      nEmbdV: f.nEmbd,
      nHidden: 0,
      threads: 2,
    });
    expect(trainer.params.map((p) => [p.name, p.ne])).toEqual([
      ['mm.model.mlp.0.weight', [f.nEmbd, 64]],
      ['mm.model.mlp.0.bias', [64]],
      ['mm.model.mlp.2.weight', [64, 64]],
      ['mm.model.mlp.2.bias', [64]],
      ['mm.model.peg.0.weight', [3, 3, 1, 64]],
      ['mm.model.peg.0.bias', [64]],
    ]);
    trainer.setData(f.rows, 2, 576, samples);
    const r = new Prng(11);
    for (const p of trainer.params) {
      const n = p.ne.reduce((a, b) => a * b, 1);
      trainer.setParam(
        p.name,
        Float32Array.from({ length: n }, () => (r.uniform() - 0.5) * 0.5),
      );
    }
    const { worst } = await finiteDifferenceError(
      trainer,
      [0, 1],
      ['mm.model.mlp.0.weight', 'mm.model.peg.0.weight', 'mm.model.peg.0.bias'],
      3,
    );
    console.log(
      `ldpv2 gradient vs central differences: 9 entries, worst relative error ${worst.toExponential(2)}`,
    );
    expect(worst).toBeLessThanOrEqual(1e-2);
  });

  it('keeps its state when a step is aborted, and is typed when misused', async () => {
    const { trainer, backbone } = await smallTrainer(16);
    const before = trainer.getParam('mm.2.weight');
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(trainer.step([0, 1], { lr: 1e-2 }, { signal: ac.signal })).rejects.toThrow('stop');
    expect(trainer.getParam('mm.2.weight')).toEqual(before);
    expect(trainer.steps).toBe(0);
    await expect(trainer.step([9], { lr: 1e-2 })).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    await expect(trainer.step([], { lr: 1e-2 })).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    expect(() => trainer.setParam('mm.0.bias', new Float32Array(3))).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
    trainer.dispose();
    await expect(trainer.evaluate([0])).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    backbone.dispose();
  });

  it('refuses an LLM the graph does not implement and an mmproj without a LLaVA-graph encoder', async () => {
    await expect(
      ProjectorTrainer.create({ model: tiny.mmproj, projector: 'mlp', nEmbdV: 96, nHidden: 8 }),
    ).rejects.toMatchObject({ code: 'MM_UNSUPPORTED_FAMILY' });
    const audio = await tinyAudioPair({ projector: 'ultravox' });
    await expect(
      trainProjector({
        model: tiny.llm,
        mmproj: audio.mmproj,
        out: join(dir, 'never.gguf'),
        stages: [{ kind: 'pt', data: pt, steps: 1 }],
      }),
    ).rejects.toMatchObject({ code: 'MM_UNSUPPORTED_FAMILY' });
  });
});

describe('trainProjector', () => {
  const base = () => ({
    model: tiny.llm,
    mmproj: tiny.mmproj,
    stages: [
      { kind: 'pt' as const, data: pt, steps: 6 },
      { kind: 'it' as const, data: it_, steps: 4 },
    ],
    batchSize: 8,
    threads: 2,
    seed: 5,
  });

  it('writes an mmproj libmtmd loads: encoder tensors byte for byte, projector as trained', async () => {
    const out = join(dir, 'trained.gguf');
    const seen: TrainProgress[] = [];
    const r = await trainProjector({
      ...base(),
      out,
      saveStages: true,
      onProgress: (p) => seen.push(p),
    });
    expect(r.projector).toBe('mlp');
    expect(r.stages.map((s) => [s.kind, s.steps, s.samples, s.curve.length])).toEqual([
      ['pt', 6, 48, 6],
      ['it', 4, 32, 4],
    ]);
    expect(r.stages[0]?.out).toBe(join(dir, 'trained.pt.gguf'));
    expect(r.problems).toEqual([]);
    expect(r.pictures).toBe(96);
    expect(seen.some((p) => p.phase === 'encode' && p.done === 96)).toBe(true);
    expect(seen.filter((p) => p.phase === 'train' && p.loss !== undefined).length).toBe(10);

    const src = await readGguf(tiny.mmproj);
    const dst = await readGguf(out);
    for (const t of src.tensors.filter((x) => !x.name.startsWith('mm.'))) {
      const a = await readTensorData(tiny.mmproj, src, t);
      const b = await readTensorData(out, dst, t.name);
      expect(Buffer.compare(Buffer.from(a), Buffer.from(b)), t.name).toBe(0);
    }
    expect(
      dst.tensors.filter((x) => x.name.startsWith('mm.')).map((x) => [x.name, x.shape, x.type]),
    ).toEqual([
      ['mm.0.weight', [96, 128], 'F32'],
      ['mm.0.bias', [128], 'F32'],
      ['mm.2.weight', [128, 128], 'F32'],
      ['mm.2.bias', [128], 'F32'],
    ]);
    // the trained projector changed, and libmtmd computes what mm computes with it
    const w0 = await readTensorData(out, dst, 'mm.2.weight');
    expect(
      Buffer.compare(
        Buffer.from(w0),
        Buffer.from(await readTensorData(tiny.mmproj, src, 'mm.2.weight')),
      ),
    ).not.toBe(0);
    const image = join(tiny.dir, 'samples', 'sample_003.png');
    const [ref] = await runMtmdOracle({ mmproj: out, images: [image], textModel: tiny.llm });
    using encoder = await VisionEncoder.load(out, { threads: 2 });
    using projector = await Projector.load(out, { threads: 2 });
    using features = (await encoder.encodeChunks(await Image.fromFile(image)))[0]!;
    using embd = await projector.project(features);
    const { maxAbsDiff, cosine } = compareVectors(embd.toFloat32Array(), ref!.embd);
    expect(maxAbsDiff).toBeLessThanOrEqual(1e-3);
    expect(cosine).toBeGreaterThanOrEqual(0.9999);
  });

  it('gives the same weights when aborted and resumed as in one uninterrupted run', async () => {
    const whole = join(dir, 'whole.gguf');
    await trainProjector({ ...base(), out: whole });
    const out = join(dir, 'resumed.gguf');
    const checkpoint = join(dir, 'resumed.ckpt');
    for (const stopAt of [
      { stage: 0, step: 3 },
      { stage: 1, step: 2 },
    ]) {
      const ac = new AbortController();
      await expect(
        trainProjector({
          ...base(),
          out,
          checkpoint,
          checkpointEvery: 2,
          resume: stopAt.stage > 0,
          signal: ac.signal,
          onProgress: (p) => {
            if (
              p.phase === 'train' &&
              p.stageIndex === stopAt.stage &&
              p.step === stopAt.step &&
              !p.checkpoint
            ) {
              ac.abort(new Error('interrupted'));
            }
          },
        }),
      ).rejects.toThrow('interrupted');
    }
    const r = await trainProjector({ ...base(), out, checkpoint, resume: true });
    expect(r.resumedFrom).toBe(8);
    expect(r.stages.map((s) => s.curve.length)).toEqual([6, 4]);
    const a = await readFile(whole);
    const b = await readFile(out);
    expect(Buffer.compare(a, b)).toBe(0);
    // another run's options do not resume from it
    await expect(
      trainProjector({ ...base(), seed: 6, out, checkpoint, resume: true }),
    ).rejects.toMatchObject({ code: 'MM_INVALID_ARGUMENT' });
    await writeFile(checkpoint, 'not a checkpoint');
    await expect(
      trainProjector({ ...base(), out, checkpoint, resume: true }),
    ).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
  });

  it('reports each bad line with its number and trains on the rest', async () => {
    const line = (image: string, human: string, gpt: string) =>
      JSON.stringify({
        image,
        conversations: [
          { from: 'human', value: human },
          { from: 'gpt', value: gpt },
        ],
      });
    const bad = join(dir, 'bad.jsonl');
    const good = (await readFile(pt, 'utf8')).trim().split('\n');
    await writeFile(bad, `${good.slice(0, 20).join('\n')}\n`);
    await appendFile(
      bad,
      [
        '{not json',
        line('nowhere.png', '<image>Describe the image.', 'a red circle on the left.'),
        line('pt-00000.png', 'Describe the image.', 'x.'),
        line('pt-00000.png', '<image>Describe the image.', '  '),
        line('pt-00000.png', '<image>Describe the image.', 'red. '.repeat(200)),
      ].join('\n') + '\n',
    );
    await writeFile(join(dir, 'broken.png'), 'not a png');
    await appendFile(
      bad,
      `${line('broken.png', '<image>Describe the image.', 'a red circle on the left.')}\n`,
    );
    const r = await trainProjector({
      ...base(),
      stages: [{ kind: 'pt', data: bad, steps: 2 }],
      out: join(dir, 'bad.gguf'),
    });
    expect(r.problems.map((p) => [p.line, p.kind])).toEqual([
      [21, 'bad_json'],
      [22, 'missing_image'],
      [23, 'no_marker'],
      [24, 'empty_answer'],
      [25, 'answer_too_long'],
      [26, 'missing_image'],
    ]);
    expect(r.stages[0]?.lines).toBe(20);
  });

  it('trains linear, mlp and ldpv2 projectors that libmtmd runs as mm does (tiny-shapes, ldp and ldpv2 encoders)', async () => {
    const ldp = await tinyMmprojPair({ family: 'ldp' });
    // the ldp encoder gives 576 rows per picture (the ldp projector pools them; an mlp keeps them)
    const llm = await tinyLlamaFixture({ seed: 4, nEmbd: 64, nHead: 4, nFf: 128, nCtx: 1024 });
    const cases = [
      {
        name: 'tiny-shapes linear',
        model: tiny.llm,
        mmproj: tiny.mmproj,
        projector: 'linear' as const,
        tensors: 4,
      },
      {
        name: 'ldp encoder + mlp',
        model: llm,
        mmproj: ldp.mmproj,
        projector: 'mlp' as const,
        tensors: 4,
      },
    ];
    const ldpv2 = await tinyMmprojPair({ family: 'ldpv2' });
    cases.push({
      name: 'ldpv2 (MobileVLM V2: pooled 24x24 grid + depthwise-conv PEG)',
      model: ldpv2.llm,
      mmproj: ldpv2.mmproj,
      projector: 'ldpv2' as never,
      tensors: 6,
    });
    for (const c of cases) {
      const out = join(dir, `${c.projector}-${c.model === tiny.llm}.gguf`);
      const r = await trainProjector({
        model: c.model,
        mmproj: c.mmproj,
        out,
        projector: c.projector,
        hidden: 32,
        stages: [{ kind: 'pt', data: pt, steps: 2 }],
        batchSize: 4,
        threads: 2,
      });
      expect(r.projector).toBe(c.projector);
      expect(r.stages[0]?.curve.length).toBe(2);
      const dst = await readGguf(out);
      expect(dst.tensors.filter((x) => x.name.startsWith('mm.')).length).toBe(c.tensors);
      const image = join(tiny.dir, 'samples', 'sample_001.png');
      const [ref] = await runMtmdOracle({ mmproj: out, images: [image], textModel: c.model });
      using encoder = await VisionEncoder.load(out, { threads: 2 });
      using projector = await Projector.load(out, { threads: 2 });
      using features = (await encoder.encodeChunks(await Image.fromFile(image)))[0]!;
      using embd = await projector.project(features);
      const d = compareVectors(embd.toFloat32Array(), ref!.embd);
      console.log(
        `${c.name}: ${embd.nTokens} x ${embd.nEmbd}, mm vs libmtmd max |diff| ${d.maxAbsDiff.toExponential(2)}`,
      );
      expect(d.maxAbsDiff).toBeLessThanOrEqual(1e-3);
    }
  });
});
