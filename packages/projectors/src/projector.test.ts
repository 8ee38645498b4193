import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Features, Image, VisionEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { gv, writeGguf } from '@mm/gguf';
import {
  MtmdOracleError,
  repoRoot,
  runMtmdOracle,
  syntheticImage,
  tinyLlamaFixture,
  tinyMmprojFixture,
  tinyMmprojPair,
  tinyMmprojSpec,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPair, inspectMmproj, Projector, SUPPORTED_PROJECTOR_FAMILIES } from './index.js';

const tinyShapesDir = join(repoRoot(), 'apps', 'demo', 'models', 'tiny-shapes');
const tinyShapesMmproj = join(tinyShapesDir, 'mmproj-tiny-shapes.gguf');
const tinyShapesLlm = join(tinyShapesDir, 'tiny-shapes-llm.gguf');
const sample = join(tinyShapesDir, 'samples', 'sample_000.png');

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return MmError.isInstance(e) ? e.code : `untyped ${String(e)}`;
  }
}

describe('Projector', () => {
  let encoder: VisionEncoder;
  let projector: Projector;
  beforeAll(async () => {
    encoder = await VisionEncoder.load(tinyShapesMmproj, { threads: 2 });
    projector = await Projector.load(tinyShapesMmproj, { threads: 2 });
  });
  afterAll(() => {
    encoder.dispose();
    projector.dispose();
  });

  it('reads the projector and inspects the file without weights', async () => {
    expect(projector.info).toMatchObject({
      family: 'mlp',
      encoderFamily: 'clip',
      nEmbdIn: 96,
      nTokensIn: 36,
      nEmbdOut: 128,
      nTokensOut: 36,
      backend: 'CPU',
    });
    const info = await inspectMmproj(tinyShapesMmproj);
    expect(info).toMatchObject({ family: 'mlp', nEmbdOut: 128, nTokensOut: 36, imageSize: 48 });
    expect(info).toMatchObject({ causal: true, dynamicResolution: false, nMerge: 1 });
    expect(SUPPORTED_PROJECTOR_FAMILIES).toEqual([
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
  });

  it('Embeddings copy out, dispose once, and are typed after dispose', async () => {
    using features = (await encoder.encodeChunks(await Image.fromFile(sample)))[0]!;
    const embd = await projector.project(features);
    expect([embd.nTokens, embd.nEmbd, embd.nx, embd.ny, embd.causal]).toEqual([
      36,
      128,
      36,
      1,
      true,
    ]);
    // not a grid: linear positions, and the same under M-RoPE as libmtmd lays a 36 x 1 span out
    expect(embd.nPos(false)).toBe(36);
    expect(embd.nPos(true)).toBe(36);
    expect(Array.from(embd.positions(5, false).subarray(0, 3))).toEqual([5, 6, 7]);
    const m = embd.positions(5, true);
    expect([m[0], m[36], m[72], m[108], m[35], m[36 + 35], m[72 + 35]]).toEqual([
      5, 5, 5, 0, 5, 5, 40,
    ]);
    const a = embd.toFloat32Array();
    expect(a.length).toBe(36 * 128);
    expect(embd.toFloat32Array()).toEqual(a);
    embd.dispose();
    expect(() => embd.toFloat32Array()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => embd.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => embd[Symbol.dispose]()).not.toThrow();
    // projecting disposed features is MM_DISPOSED
    const f = (await encoder.encodeChunks(await Image.fromFile(sample)))[0]!;
    f.dispose();
    await expect(projector.project(f)).rejects.toMatchObject({ code: 'MM_DISPOSED' });
  });

  it('features from another encoder are MM_MODEL_MISMATCH', async () => {
    using other = Features.fromFloat32Array(new Float32Array(16 * 64), 16, 64);
    await expect(projector.project(other)).rejects.toMatchObject({ code: 'MM_MODEL_MISMATCH' });
    await expect(projector.project({} as Features)).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
  });

  it('four abort cases: already aborted, mid-flight, never aborted, invalid signal', async () => {
    const pair = await tinyMmprojPair({ family: 'ldp' });
    using enc = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    using proj = await Projector.load(pair.mmproj, { threads: 2 });
    using features = (
      await enc.encodeChunks(Image.fromRGB(syntheticImage(48, 48, 1).data, 48, 48))
    )[0]!;
    const reason = new Error('already');
    await expect(proj.project(features, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
    const c = new AbortController();
    const p = proj.project(features, { signal: c.signal });
    c.abort(new Error('mid-flight'));
    await expect(p).rejects.toThrow('mid-flight');
    using ok = await proj.project(features, { signal: new AbortController().signal });
    expect(ok.nTokens).toBe(144);
    await expect(proj.project(features, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
    await expect(Projector.load(pair.mmproj, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
  });

  it('encodeAndProject gives encodeMedia + project, bit for bit, in one call', async () => {
    const image = await Image.fromFile(sample);
    const { features, layout } = await encoder.encodeMedia(image);
    using f = features[0]!;
    using two = await projector.project(f);
    const one = await projector.encodeAndProject(encoder, image);
    expect(one.embeddings).toHaveLength(1);
    using e = one.embeddings[0]!;
    expect(e.nTokens).toBe(36);
    expect(e.nEmbd).toBe(128);
    expect([e.nx, e.ny, e.causal]).toEqual([two.nx, two.ny, two.causal]);
    expect(Buffer.from(e.toFloat32Array().buffer)).toEqual(
      Buffer.from(two.toFloat32Array().buffer),
    );
    expect(one.layout).toEqual(layout);
    expect(one.timings.encodeMs).toBeGreaterThan(0);
    expect(one.timings.projectMs).toBeGreaterThan(0);

    // another mmproj's encoder (ldp: 144 x 64 features) is refused as project() refuses them
    const pair = await tinyMmprojPair({ family: 'ldp' });
    const other = await VisionEncoder.load(pair.mmproj, { threads: 1 });
    await expect(projector.encodeAndProject(other, image)).rejects.toMatchObject({
      code: 'MM_MODEL_MISMATCH',
      message: expect.stringContaining('another vision encoder'),
    });
    other.dispose();
    await expect(projector.encodeAndProject(other, image)).rejects.toMatchObject({
      code: 'MM_DISPOSED',
    });
    await expect(projector.encodeAndProject({} as VisionEncoder, image)).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    await expect(projector.encodeAndProject(encoder, {} as Image)).rejects.toMatchObject({
      code: 'MM_INVALID_ARGUMENT',
    });
    const reason = new Error('already');
    await expect(
      projector.encodeAndProject(encoder, image, { signal: AbortSignal.abort(reason) }),
    ).rejects.toBe(reason);
    const c = new AbortController();
    const p = projector.encodeAndProject(encoder, image, { signal: c.signal });
    c.abort(new Error('mid-flight'));
    await expect(p).rejects.toThrow('mid-flight');
  });

  it('use after dispose and double dispose are MM_DISPOSED; projections called before finish', async () => {
    const p = await Projector.load(tinyShapesMmproj, { threads: 1 });
    using features = (await encoder.encodeChunks(await Image.fromFile(sample)))[0]!;
    const running = p.project(features);
    p.dispose();
    using done = await running;
    expect(done.nTokens).toBe(36);
    await expect(p.project(features)).rejects.toMatchObject({ code: 'MM_DISPOSED' });
    expect(() => p.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
    expect(() => p[Symbol.dispose]()).not.toThrow();
  });
});

describe('pairing an mmproj with a text model', () => {
  it('matching widths pass; a different n_embd is MM_MODEL_MISMATCH (libmtmd refuses it too)', async () => {
    await expect(checkPair(tinyShapesMmproj, 128)).resolves.toMatchObject({ nEmbdOut: 128 });
    const err = await checkPair(tinyShapesMmproj, 64).catch((e) => e);
    expect(err.code).toBe('MM_MODEL_MISMATCH');
    expect(err.message).toContain('128');
    expect(err.details).toMatchObject({ projectionWidth: 128, nEmbdText: 64 });
    using p = await Projector.load(tinyShapesMmproj, { threads: 1 });
    expect(() => p.checkPair(128)).not.toThrow();
    expect(() => p.checkPair(4096)).toThrow(expect.objectContaining({ code: 'MM_MODEL_MISMATCH' }));
    expect(() => p.checkPair(0)).toThrow(expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }));
    // libmtmd itself, with the tiny-shapes mmproj (128) and a 64-wide text model
    const wrong = await tinyLlamaFixture({ nEmbd: 64 });
    const ref = await runMtmdOracle({
      mmproj: tinyShapesMmproj,
      images: [sample],
      textModel: wrong,
    }).catch((e) => e);
    expect(ref).toBeInstanceOf(MtmdOracleError);
    expect((ref as MtmdOracleError).exitCode).toBe(3);
    expect((ref as MtmdOracleError).stderr).toContain('mismatch');
    // and the real pair loads
    await expect(
      runMtmdOracle({ mmproj: tinyShapesMmproj, images: [sample], textModel: tinyShapesLlm }),
    ).resolves.toHaveLength(1);
  });
});

describe('unsupported and hostile projectors are typed errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mm-bad-proj-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  async function variant(
    family: 'mlp' | 'mlp_norm' | 'ldp' | 'ldpv2',
    edit: (s: ReturnType<typeof tinyMmprojSpec>) => void,
  ) {
    const spec = tinyMmprojSpec({ family });
    edit(spec);
    const path = join(dir, `bad-${n++}.gguf`);
    await writeGguf(path, spec);
    return path;
  }
  const meta = (s: ReturnType<typeof tinyMmprojSpec>) =>
    s.metadata as Map<string, ReturnType<typeof gv.string>>;
  const tensor = (s: ReturnType<typeof tinyMmprojSpec>, name: string) =>
    s.tensors!.find((t) => t.name === name)!;

  it('an unknown family lists the supported ones', async () => {
    for (const type of ['pixtral', 'llama4', '']) {
      const path = await variant('mlp', (s) => meta(s).set('clip.projector_type', gv.string(type)));
      const err = await Projector.load(path).catch((e) => e);
      if (type === '') {
        expect(err.code).toBe('MM_GGUF_INVALID');
        continue;
      }
      expect(err.code).toBe('MM_UNSUPPORTED_FAMILY');
      expect(err.message).toContain(`'${type}'`);
      expect(err.message).toContain(
        'supported: mlp, mlp_norm, ldp, ldpv2, gemma3, idefics3, qwen2vl_merger, qwen2.5vl_merger',
      );
      await expect(inspectMmproj(path)).rejects.toMatchObject({ code: 'MM_UNSUPPORTED_FAMILY' });
    }
    // a LLaVA file relabelled as a newer family lacks that family's tensors and keys
    for (const type of ['qwen2vl_merger', 'qwen2.5vl_merger', 'gemma3', 'resampler']) {
      const path = await variant('mlp', (s) => meta(s).set('clip.projector_type', gv.string(type)));
      await expect(Projector.load(path)).rejects.toMatchObject({ code: 'MM_GGUF_INVALID' });
    }
  });

  it('mlp without mm.2, f32 depthwise kernels, a wrong grid, wrong widths: MM_GGUF_INVALID', async () => {
    const cases = [
      await variant('mlp', (s) => {
        s.tensors = s.tensors!.filter((t) => !t.name.startsWith('mm.2'));
      }),
      await variant('ldp', (s) =>
        Object.assign(tensor(s, 'mm.model.mb_block.1.block.0.0.weight'), { type: 'F32' }),
      ),
      await variant('ldpv2', (s) =>
        Object.assign(tensor(s, 'mm.model.peg.0.weight'), { type: 'F32' }),
      ),
      await variant('ldp', (s) => meta(s).set('clip.vision.image_size', gv.uint32(46) as never)),
      await variant('mlp', (s) =>
        Object.assign(tensor(s, 'mm.0.weight'), {
          shape: [48, 48],
          type: 'F32',
          data: new Float32Array(48 * 48),
        }),
      ),
      await variant('mlp_norm', (s) =>
        Object.assign(tensor(s, 'mm.4.bias'), { shape: [63], data: new Float32Array(63) }),
      ),
      await variant('ldp', (s) =>
        Object.assign(tensor(s, 'mm.model.mb_block.2.block.2.0.weight'), {
          shape: [64, 32],
          type: 'F32',
          data: new Float32Array(64 * 32),
        }),
      ),
    ];
    for (const path of cases) {
      expect([path, await codeOf(Projector.load(path))]).toEqual([path, 'MM_GGUF_INVALID']);
      expect([path, await codeOf(inspectMmproj(path))]).toEqual([path, 'MM_GGUF_INVALID']);
    }
  });

  it('a file libmtmd calls mlp with mm.3.weight is mlp_norm', async () => {
    const info = await inspectMmproj(await tinyMmprojFixture({ family: 'mlp_norm' }));
    expect(info.projectorType).toBe('mlp');
    expect(info.family).toBe('mlp_norm');
  });
});
