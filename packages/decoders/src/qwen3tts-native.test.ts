import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, MmError } from '@mm/errors';
import { type GgufTensorInput, type GgufWriteSpec, gv, writeGguf } from '@mm/gguf';
import {
  loadAddon,
  type NativeAddon,
  type NativeGenAudio,
  type NativeGenLoadOptions,
  type NativeOperation,
  type NativeQwen3TtsInfo,
  runNative,
} from '@mm/native';
import {
  type GenOracleOp,
  type GenOracleResult,
  maxAbsDiff,
  Prng,
  runGenOracle,
  type TinyQwen3TtsPair,
  tinyMmprojFixture,
  tinyPocketTtsFixture,
  tinyQwen3TtsMmprojSpec,
  tinyQwen3TtsPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * mm's own Qwen3-TTS graphs (code predictor, code2wav, speaker encoder) against libmtmd's
 * mtmd_gen_audio_process and speaker encoder (mm-ref-mtmd-gen) on the tiny random pair: a seeded
 * sequence of GEN_CODE calls gives the same codes (the same uniform draws from the same
 * std::mt19937, reseeded only on a new seed) and embeddings, GEN_WAV in libmtmd's 72-frame windows
 * and in odd chunkings with the state carried gives the same PCM and state, the speaker encoder the
 * same row; bad input is a typed error.
 */

const TOL = 1e-4;
const addon = loadAddon() as unknown as NativeAddon;
const SEED = 1234;

function load(path: string, opts: NativeGenLoadOptions = {}): Promise<NativeGenAudio> {
  return runNative(() => addon.loadQwen3TtsGen(path, { threads: 2, ...opts }));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
  return 'resolved';
}

function ok<T extends GenOracleResult['op']>(
  r: GenOracleResult | undefined,
  op: T,
): Extract<GenOracleResult, { op: T; ok: true }> {
  if (r === undefined || r.op !== op || !r.ok) throw new Error(`oracle ${op} op failed`);
  return r as Extract<GenOracleResult, { op: T; ok: true }>;
}

/** `n` frames of 16 codes: codebook 0 from the 2048 semantic codes, the others from 64. */
function randomFrames(n: number, seed: number): Int32Array {
  const rng = new Prng(seed);
  const f = new Int32Array(n * 16);
  for (let i = 0; i < f.length; i++) f[i] = rng.nextU32() % (i % 16 === 0 ? 2048 : 64);
  return f;
}

/** A voice-like reference at 24 kHz: a gliding tone, a partial and a little noise. */
function voicePcm(seconds: number, seed: number): Float32Array {
  const rng = new Prng(seed);
  const n = Math.round(seconds * 24000);
  const pcm = new Float32Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const hz = 140 + 60 * Math.sin((2 * Math.PI * i) / n);
    phase += (2 * Math.PI * hz) / 24000;
    pcm[i] = 0.3 * Math.sin(phase) + 0.1 * Math.sin(2.7 * phase) + 0.02 * rng.normal();
  }
  return pcm;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const f32 = (b: Uint8Array) => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

let pair: TinyQwen3TtsPair;
let gen: NativeGenAudio | undefined;

beforeAll(async () => {
  pair = await tinyQwen3TtsPair();
  gen = await load(pair.mmproj);
}, 120_000);

afterAll(() => {
  gen?.dispose();
});

describe('Qwen3-TTS native generator vs libmtmd', () => {
  it('reports the pipeline facts', () => {
    const info = (gen as NativeGenAudio).info() as NativeQwen3TtsInfo;
    expect(info).toMatchObject({
      pipeline: 'qwen3tts',
      variant: 'tiny',
      sampleRate: 24000,
      nEmbd: 64,
      nCodebooks: 16,
      latentDim: 0,
      samplesPerFrame: pair.samplesPerFrame,
      windowFrames: 72,
      hasSpeakerEncoder: true,
      speakerSampleRate: 24000,
      parts: ['code', 'wav', 'speaker'],
    });
    expect(info.stateBytes).toBeGreaterThan(0);
  });

  it('GEN_CODE: a seeded sequence gives libmtmd codes and embeddings', async () => {
    const g = gen as NativeGenAudio;
    const rng = new Prng(21);
    // defaults (top-k 50, top-p 1), then top-k 3 / top-p 0.8, then top-p alone; a seed change
    // reseeds, the same seed again does not, going back to the first seed restarts its stream
    const plan: { topK: number; topP: number; seed: number }[] = [
      ...Array.from({ length: 8 }, () => ({ topK: 50, topP: 1, seed: SEED })),
      ...Array.from({ length: 4 }, () => ({ topK: 3, topP: 0.8, seed: SEED })),
      ...Array.from({ length: 2 }, () => ({ topK: 0, topP: 0.6, seed: 7 })),
      ...Array.from({ length: 2 }, () => ({ topK: 50, topP: 1, seed: SEED })),
    ];
    const ops: GenOracleOp[] = plan.map((p, i) => ({
      op: 'code',
      hidden: rng.normals(64, i % 3 === 0 ? 2 : 1),
      code0: i === 3 ? 3071 : rng.nextU32() % 2048,
      temp: 0.9,
      ...p,
    }));
    const ref = await runGenOracle({ model: pair.model, mmproj: pair.mmproj, ops });
    let embdDiff = 0;
    let distinct = 0;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as Extract<GenOracleOp, { op: 'code' }>;
      const r = ok(ref.results[i], 'code');
      const ours = await runNative(() =>
        g.genCode(op.hidden, op.code0, {
          topK: op.topK,
          topP: op.topP,
          temp: op.temp,
          seed: op.seed,
        }),
      );
      expect(Array.from(ours.codes), `call ${i}`).toEqual(Array.from(r.codes));
      expect(ours.feats).toBeNull();
      expect(ours.isEos).toBe(false);
      embdDiff = Math.max(embdDiff, maxAbsDiff(ours.embd, r.embd));
      distinct += new Set(ours.codes.slice(1)).size;
    }
    console.log(
      `qwen3tts GEN_CODE (${ops.length} calls): codes equal, embd max |diff| ${embdDiff}`,
    );
    expect(embdDiff).toBeLessThanOrEqual(TOL);
    expect(distinct).toBeGreaterThan(ops.length * 3); // the draws are not stuck on one code
  }, 120_000);

  it('GEN_WAV: libmtmd windows and odd chunkings with the state carried give libmtmd PCM', async () => {
    const g = gen as NativeGenAudio;
    const frames = randomFrames(160, 5);
    const chunks = (sizes: number[]) => {
      const out: Int32Array[] = [];
      let at = 0;
      for (const s of sizes) {
        out.push(frames.slice(at * 16, (at + s) * 16));
        at += s;
      }
      return out;
    };
    const windows = chunks([72, 72, 16]);
    const odd = chunks([1, 50, 72, 37]);
    const ops: GenOracleOp[] = [
      ...windows.map(
        (f, i): GenOracleOp => ({
          op: 'wav',
          frames: f,
          state: i === 0 ? 'cold' : 'carry',
          seed: SEED,
        }),
      ),
      ...odd.map(
        (f, i): GenOracleOp => ({
          op: 'wav',
          frames: f,
          state: i === 0 ? 'cold' : 'carry',
          seed: SEED,
        }),
      ),
    ];
    const ref = await runGenOracle({ model: pair.model, mmproj: pair.mmproj, ops });
    const refPcm = ref.results.map((r) => ok(r, 'wav'));

    // the same windows, one call each, state carried
    let state: Uint8Array | null = null;
    let pcmDiff = 0;
    let stateDiff = 0;
    for (const [i, f] of windows.entries()) {
      const out: { pcm: Float32Array; state: Uint8Array } = await runNative(() =>
        g.genWav(f, state),
      );
      const r = refPcm[i] as { pcm: Float32Array; state: Uint8Array };
      expect(out.pcm.length).toBe((f.length / 16) * pair.samplesPerFrame);
      pcmDiff = Math.max(pcmDiff, maxAbsDiff(out.pcm, r.pcm));
      stateDiff = Math.max(stateDiff, maxAbsDiff(f32(out.state), f32(r.state)));
      state = out.state;
    }
    // all 160 frames in one call: consecutive windows inside
    const whole = await runNative(() => g.genWav(frames, null));
    const refWhole = concat(refPcm.slice(0, 3).map((r) => r.pcm));
    const wholeDiff = maxAbsDiff(whole.pcm, refWhole);
    // odd chunks (libmtmd pads each partial window with code 0 and keeps the padded state)
    state = null;
    let oddDiff = 0;
    for (const [i, f] of odd.entries()) {
      const out: { pcm: Float32Array; state: Uint8Array } = await runNative(() =>
        g.genWav(f, state),
      );
      oddDiff = Math.max(
        oddDiff,
        maxAbsDiff(out.pcm, (refPcm[3 + i] as { pcm: Float32Array }).pcm),
      );
      state = out.state;
    }
    let peak = 0;
    for (const v of refWhole) peak = Math.max(peak, Math.abs(v));
    console.log(
      `qwen3tts GEN_WAV 160 frames: windows 72+72+16 PCM max |diff| ${pcmDiff} (state ${stateDiff}), ` +
        `one call ${wholeDiff}, chunks 1+50+72+37 ${oddDiff}; peak ${peak.toFixed(3)}`,
    );
    expect(pcmDiff).toBeLessThanOrEqual(TOL);
    expect(stateDiff).toBeLessThanOrEqual(TOL);
    expect(wholeDiff).toBeLessThanOrEqual(TOL);
    expect(oddDiff).toBeLessThanOrEqual(TOL);
    expect(peak).toBeGreaterThan(0.01);
  }, 120_000);

  it('encodeSpeaker: libmtmd speaker embedding', async () => {
    const g = gen as NativeGenAudio;
    const refs = [voicePcm(1.5, 1), voicePcm(0.4, 2)];
    const ref = await runGenOracle({
      model: pair.model,
      mmproj: pair.mmproj,
      ops: refs.map((pcm): GenOracleOp => ({ op: 'speaker', pcm })),
    });
    let diff = 0;
    for (const [i, pcm] of refs.entries()) {
      const r = ok(ref.results[i], 'speaker');
      const ours = await runNative(() => g.encodeSpeaker(pcm));
      expect(ours.rows).toBe(r.rows);
      expect(ours.embd.length).toBe(64);
      diff = Math.max(diff, maxAbsDiff(ours.embd, r.embd));
    }
    console.log(`qwen3tts speaker embedding (1.5 s, 0.4 s): max |diff| ${diff}`);
    expect(diff).toBeLessThanOrEqual(TOL);
  }, 60_000);
});

describe('Qwen3-TTS native generator: bad input and aborts', () => {
  const hidden = new Float32Array(64).fill(0.1);
  const opts = { topK: 50, topP: 1, temp: 0.9, seed: 1 };

  it('bad GEN_CODE input is MM_INVALID_ARGUMENT', async () => {
    const g = gen as NativeGenAudio;
    const bad = (f: () => NativeOperation<unknown>) => codeOf(runNative(f));
    expect(await bad(() => g.genCode(new Float32Array(63), 0, opts))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(new Float32Array(65), 0, opts))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(hidden, -1, opts))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(hidden, 3072, opts))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(hidden, 1.5, opts))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(hidden, 0, { ...opts, topP: 0 }))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genCode(hidden, 0, { ...opts, topK: -1 }))).toBe(
      'MM_INVALID_ARGUMENT',
    );
    expect(await bad(() => g.genCode(hidden, 0, { ...opts, seed: 2 ** 32 }))).toBe(
      'MM_INVALID_ARGUMENT',
    );
  });

  it('bad GEN_WAV input is MM_INVALID_ARGUMENT', async () => {
    const g = gen as NativeGenAudio;
    const bad = (f: () => NativeOperation<unknown>) => codeOf(runNative(f));
    const good = randomFrames(4, 9);
    const withCode = (i: number, v: number) => {
      const f = good.slice();
      f[i] = v;
      return f;
    };
    expect(await bad(() => g.genWav(new Int32Array(0), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(good.slice(0, 20), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(withCode(0, 2048), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(withCode(16, -1), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(withCode(5, 64), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(new Float32Array(16), null))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.genWav(good, new Uint8Array(10)))).toBe('MM_INVALID_ARGUMENT');
    const { state } = await runNative(() => g.genWav(good, null));
    expect(await bad(() => g.genWav(good, state.slice(1)))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.encodeSpeaker(new Float32Array(0)))).toBe('MM_INVALID_ARGUMENT');
    expect(await bad(() => g.encodeSpeaker(new Float32Array(300)))).toBe('MM_INVALID_ARGUMENT');
    const nan = voicePcm(0.5, 3);
    nan[100] = Number.NaN;
    expect(await bad(() => g.encodeSpeaker(nan))).toBe('MM_INVALID_ARGUMENT');
  });

  it('files of the wrong kind are typed errors', async () => {
    const dir = tmpdir();
    const truncated = join(dir, `mm-q3tts-truncated-${process.pid}.gguf`);
    const bytes = readFileSync(pair.mmproj);
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const garbage = join(dir, `mm-q3tts-garbage-${process.pid}.gguf`);
    writeFileSync(garbage, new Uint8Array(4096).fill(7));
    try {
      const vision = await tinyMmprojFixture({ family: 'mlp' });
      const pocket = await tinyPocketTtsFixture();
      expect(await codeOf(load(vision))).toBe('MM_MODALITY_UNSUPPORTED');
      expect(await codeOf(load(pocket.mmproj))).toBe('MM_MODEL_MISMATCH');
      expect(await codeOf(load(pair.model))).toBe('MM_MODALITY_UNSUPPORTED');
      expect(await codeOf(load(truncated))).toBe('MM_GGUF_INVALID');
      expect(await codeOf(load(garbage))).toBe('MM_GGUF_INVALID');
      expect(await codeOf(load(join(dir, 'mm-no-such-file.gguf')))).toBe('MM_FILE_NOT_FOUND');
      expect(await codeOf(load(pair.mmproj, { parts: ['nope' as unknown as 'code'] }))).toBe(
        'MM_INVALID_ARGUMENT',
      );
      expect(await codeOf(load(pair.mmproj, { parts: [] }))).toBe('MM_INVALID_ARGUMENT');
    } finally {
      rmSync(truncated, { force: true });
      rmSync(garbage, { force: true });
    }
  });

  it('hostile headers are MM_GGUF_INVALID before anything is built', async () => {
    const base = tinyQwen3TtsMmprojSpec();
    const edits: [string, (s: GgufWriteSpec) => GgufWriteSpec][] = [];
    const tensors = (s: GgufWriteSpec) => (s.tensors ?? []) as GgufTensorInput[];
    const withTensors = (s: GgufWriteSpec, t: GgufTensorInput[]) => ({ ...s, tensors: t });
    const withKey = (s: GgufWriteSpec, k: string, v: ReturnType<typeof gv.uint32> | null) => {
      const m = new Map(s.metadata as Map<string, ReturnType<typeof gv.uint32>>);
      if (v === null) m.delete(k);
      else m.set(k, v);
      return { ...s, metadata: m };
    };
    const drop = (name: string) => (s: GgufWriteSpec) =>
      withTensors(
        s,
        tensors(s).filter((t) => t.name !== name),
      );
    const reshape = (name: string, shape: number[]) => (s: GgufWriteSpec) =>
      withTensors(
        s,
        tensors(s).map((t) => {
          if (t.name !== name) return t;
          const n = shape.reduce((a, b) => a * b, 1);
          return { ...t, shape, data: new Float32Array(n), type: 'F32' as const };
        }),
      );
    edits.push(['missing code head', drop('a.gen.code.head.weight')]);
    edits.push(['missing code2wav layer 7 q', drop('a.gen.wav.tfm.blk.7.attn_q.weight')]);
    edits.push(['missing DAC residual', drop('a.gen.wav.dac.blk.3.res.2.conv2.weight')]);
    edits.push(['missing Res2Net branch', drop('a.blk.2.res2.6.weight')]);
    edits.push([
      'odd code predictor head size',
      reshape('a.gen.code.blk.0.attn_q.weight', [32, 36]),
    ]);
    edits.push(['embd table of the wrong width', reshape('a.gen.code.embd.weight', [63, 64, 15])]);
    edits.push([
      'overlapping upsample kernel',
      reshape('a.gen.wav.up.blk.0.conv.weight', [3, 32, 32]),
    ]);
    edits.push(['k>1 squeeze conv', reshape('a.blk.1.se_conv1.weight', [3, 32, 8])]);
    edits.push(['4 speaker blocks', (s) => withKey(s, 'clip.audio.block_count', gv.uint32(4))]);
    edits.push([
      'huge predictor depth',
      (s) => withKey(s, 'clip.gen.audio.block_count', gv.uint32(1e9)),
    ]);
    edits.push(['int32 block count', (s) => withKey(s, 'clip.gen.audio.block_count', gv.int32(2))]);
    edits.push(['no eps', (s) => withKey(s, 'clip.gen.audio.attention.layer_norm_epsilon', null)]);
    edits.push([
      'GQA that does not divide',
      (s) => withKey(s, 'clip.gen.audio.attention.head_count_kv', gv.uint32(3)),
    ]);
    for (const [i, [what, edit]] of edits.entries()) {
      const path = join(tmpdir(), `mm-q3tts-hostile-${process.pid}-${i}.gguf`);
      try {
        await writeGguf(path, edit(base));
        expect(await codeOf(load(path)), what).toBe('MM_GGUF_INVALID');
      } finally {
        rmSync(path, { force: true });
      }
    }
  });

  it('parts load only what is asked for', async () => {
    const wavOnly = await load(pair.mmproj, { parts: ['wav'] });
    try {
      expect(wavOnly.info().parts).toEqual(['wav']);
      expect(await codeOf(runNative(() => wavOnly.genCode(hidden, 0, opts)))).toBe(
        'MM_INVALID_ARGUMENT',
      );
      expect(await codeOf(runNative(() => wavOnly.encodeSpeaker(voicePcm(0.5, 1))))).toBe(
        'MM_INVALID_ARGUMENT',
      );
      const out = await runNative(() => wavOnly.genWav(randomFrames(3, 1), null));
      expect(out.pcm.length).toBe(3 * pair.samplesPerFrame);
    } finally {
      wavOnly.dispose();
    }
  });

  it('an aborted call rejects with MM_ABORTED and the object still works', async () => {
    const g = gen as NativeGenAudio;
    const frames = randomFrames(150, 11);
    const op = g.genWav(frames, null);
    op.cancel();
    expect(await codeOf(op.promise)).toBe(ErrorCode.MM_ABORTED);
    // through an AbortSignal: the signal's reason
    const ac = new AbortController();
    const reason = new MmError(ErrorCode.MM_ABORTED, 'stop');
    const p = runNative(() => g.genWav(frames, null), ac.signal);
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    const pre = new AbortController();
    pre.abort(reason);
    await expect(runNative(() => g.genCode(hidden, 0, opts), pre.signal)).rejects.toBe(reason);
    // still works: the same result as a fresh call sequence on libmtmd
    const small = randomFrames(20, 12);
    const ref = await runGenOracle({
      model: pair.model,
      mmproj: pair.mmproj,
      ops: [{ op: 'wav', frames: small, state: 'cold', seed: SEED }],
    });
    const out = await runNative(() => g.genWav(small, null));
    expect(maxAbsDiff(out.pcm, ok(ref.results[0], 'wav').pcm)).toBeLessThanOrEqual(TOL);
  }, 60_000);

  it('use after dispose is MM_DISPOSED', async () => {
    const g = await load(pair.mmproj, { parts: ['code'] });
    g.dispose();
    expect(() => g.info()).toThrow(expect.objectContaining({ code: ErrorCode.MM_DISPOSED }));
    expect(await codeOf(runNative(() => g.genCode(hidden, 0, opts)))).toBe('MM_DISPOSED');
    expect(() => g.dispose()).toThrow(expect.objectContaining({ code: ErrorCode.MM_DISPOSED }));
  });
});
