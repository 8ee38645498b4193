import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backbone, nativeModel } from '@mm/backbone-gguf';
import {
  type GgufMetadata,
  type GgufTensorInput,
  type GgufValue,
  type GgufWriteSpec,
  ggufToBuffer,
  gv,
} from '@mm/gguf';
import { FusedMedia } from '@mm/projectors';
import {
  type AudioProjector,
  Prng,
  synthAudio,
  tinyAudioMmprojSpec,
  tinyAudioPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HostileCase, mediaRows, runHostileFused } from './hostile-fused.test-util.js';

// Hostile audio mmproj files on the fused path: libmtmd aborts the process on some malformed audio
// encoders (a key of the wrong type, a stack factor of 0, a position table shorter than a chunk, a
// width whose frame stacking gives another row count than it promised, a k bias, a conv kernel of
// another size, ...). mm validates the header first; whatever still reaches libmtmd must come back as
// a typed error. Each file is loaded (and, when it loads, given a sound) through the fused path; the
// process must survive all of them and a model loaded before still gives the same embeddings.

const dir = mkdtempSync(join(tmpdir(), 'mm-audio-hostile-'));
const ALLOWED = new Set([
  'MM_GGUF_INVALID',
  'MM_GGUF_UNSUPPORTED',
  'MM_MODEL_LOAD',
  'MM_MODEL_MISMATCH',
  'MM_UNSUPPORTED_FAMILY',
  'MM_MODALITY_UNSUPPORTED',
  'MM_INVALID_ARGUMENT',
  'MM_OUT_OF_MEMORY',
  'MM_AUDIO_DECODE',
  'MM_INTERNAL',
]);
const PROJECTORS: AudioProjector[] = ['voxtral', 'ultravox', 'qwen2a'];

type Case = HostileCase;

const meta = (s: GgufWriteSpec) => s.metadata as GgufMetadata;

function withKey(projector: AudioProjector, key: string, v: GgufValue | undefined): GgufWriteSpec {
  const s = tinyAudioMmprojSpec({ projector });
  if (v === undefined) meta(s).delete(key);
  else meta(s).set(key, v);
  return s;
}

function withTensors(
  projector: AudioProjector,
  edit: (t: GgufTensorInput[]) => GgufTensorInput[],
): GgufWriteSpec {
  const s = tinyAudioMmprojSpec({ projector });
  s.tensors = edit([...(s.tensors ?? [])]);
  return s;
}

/** The same tensor with another shape (zero-filled, F32 or F16 as it was). */
function reshaped(t: GgufTensorInput, shape: number[]): GgufTensorInput {
  const n = shape.reduce((a, b) => a * b, 1);
  return t.type === 'F16'
    ? { name: t.name, type: 'F16', shape, data: new Uint16Array(n) }
    : { name: t.name, type: 'F32', shape, data: new Float32Array(n) };
}

function retyped(v: GgufValue): GgufValue[] {
  switch (v.type) {
    case 'uint32':
      return [gv.int32(v.value as number), gv.float32(v.value as number), gv.string('7')];
    case 'float32':
      return [gv.uint32(1), gv.float64(v.value as number)];
    case 'bool':
      return [gv.uint8(1), gv.uint32(1)];
    case 'string':
      return [gv.uint32(1)];
    default:
      return [gv.string('x')];
  }
}

function cases(projector: AudioProjector): Case[] {
  const out: Case[] = [];
  const add = (name: string, s: GgufWriteSpec) => out.push({ name, bytes: ggufToBuffer(s) });
  const base = tinyAudioMmprojSpec({ projector });
  for (const [key, v] of meta(base)) {
    if (!key.startsWith('clip.')) continue;
    add(`${key} dropped`, withKey(projector, key, undefined));
    for (const w of retyped(v)) add(`${key} as ${w.type}`, withKey(projector, key, w));
  }
  const absurd: [string, GgufValue][] = [
    ['clip.audio.block_count', gv.uint32(0)],
    ['clip.audio.block_count', gv.uint32(1000)],
    ['clip.audio.block_count', gv.uint32(0x80000000)],
    ['clip.audio.embedding_length', gv.uint32(0)],
    ['clip.audio.embedding_length', gv.uint32(64)],
    ['clip.audio.embedding_length', gv.uint32(1 << 20)],
    ['clip.audio.attention.head_count', gv.uint32(0)],
    ['clip.audio.attention.head_count', gv.uint32(3)],
    ['clip.audio.attention.head_count_kv', gv.uint32(0)],
    ['clip.audio.attention.head_dim', gv.uint32(0xffffffff)],
    ['clip.audio.feed_forward_length', gv.uint32(0xffffffff)],
    ['clip.audio.projection_dim', gv.uint32(0xffffffff)],
    ['clip.audio.attention.layer_norm_epsilon', gv.float32(Number.NaN)],
    ['clip.audio.attention.layer_norm_epsilon', gv.float32(-1)],
    ['clip.audio.num_mel_bins', gv.uint32(0)],
    ['clip.audio.num_mel_bins', gv.uint32(128)],
    ['clip.audio.num_mel_bins', gv.uint32(100000)],
    ['clip.audio.projector.stack_factor', gv.uint32(0)],
    ['clip.audio.projector.stack_factor', gv.uint32(2)],
    ['clip.audio.projector.stack_factor', gv.uint32(16)],
    ['clip.audio.projector.stack_factor', gv.uint32(0xffffffff)],
    ['clip.projector_type', gv.string('qwen3tts_spkenc')],
    ['clip.projector_type', gv.string('tardis_audio')],
    ['clip.projector_type', gv.string('pixtral')],
    ['clip.has_audio_encoder', gv.bool(false)],
    ['clip.has_vision_encoder', gv.bool(true)],
    ['general.architecture', gv.string('llama')],
  ];
  for (const [key, v] of absurd) add(`${key} = ${String(v.value)}`, withKey(projector, key, v));
  for (const t of base.tensors ?? []) {
    add(
      `${t.name} dropped`,
      withTensors(projector, (ts) => ts.filter((x) => x.name !== t.name)),
    );
    const wider = [...t.shape] as number[];
    wider[0] = (wider[0] as number) + 1;
    add(
      `${t.name} [${wider.join(', ')}]`,
      withTensors(projector, (ts) => ts.map((x) => (x.name === t.name ? reshaped(x, wider) : x))),
    );
  }
  add(
    'a k bias',
    withTensors(projector, (ts) => [
      ...ts,
      { name: 'a.blk.0.attn_k.bias', type: 'F32', shape: [80], data: new Float32Array(80) },
    ]),
  );
  add(
    'a position table of 1499 rows',
    withTensors(projector, (ts) =>
      ts.map((x) => (x.name === 'a.position_embd.weight' ? reshaped(x, [80, 1499]) : x)),
    ),
  );
  add(
    'conv kernels of width 5',
    withTensors(projector, (ts) =>
      ts.map((x) =>
        x.name === 'a.conv1d.1.weight'
          ? reshaped(x, [5, 80, 80])
          : x.name === 'a.conv1d.2.weight'
            ? reshaped(x, [5, 80, 80])
            : x,
      ),
    ),
  );
  const good = ggufToBuffer(base);
  for (const n of [0, 4, 24, 100, Math.floor(good.length / 2), good.length - 1]) {
    out.push({ name: `truncated to ${n} bytes`, bytes: good.slice(0, n) });
  }
  const rng = new Prng(11);
  const headerEnd = Math.min(good.length, 4096);
  for (let i = 0; i < 30; i++) {
    const b = new Uint8Array(good);
    const at = Math.floor(rng.uniform() * headerEnd);
    b[at] = (b[at] as number) ^ (1 + Math.floor(rng.uniform() * 255));
    out.push({ name: `byte ${at} flipped`, bytes: b });
  }
  return out;
}

describe.each(PROJECTORS)('hostile %s audio mmproj files', (projector: AudioProjector) => {
  let backbone: Backbone;
  let good: FusedMedia;
  let before: Float32Array[];
  const pcm = synthAudio(2, 16000, [{ kind: 'tone', hz: 440, amplitude: 0.3 }]);
  beforeAll(async () => {
    const files = await tinyAudioPair({ projector });
    backbone = await Backbone.load(files.model);
    good = await FusedMedia.load(files.mmproj, nativeModel(backbone), { threads: 2 });
    before = mediaRows(await good.embedAudio(pcm));
  }, 120_000);
  afterAll(() => {
    good?.dispose();
    backbone?.dispose();
  });

  it('are typed errors or load and run; the process and a model loaded before survive', {
    timeout: 1_800_000,
  }, async () => {
    const all = cases(projector);
    const { tally, loaded } = await runHostileFused({
      label: projector,
      cases: all,
      dir,
      backbone,
      threads: 2,
      allowed: ALLOWED,
      run: (f) => f.embedAudio(pcm),
    });
    console.log(
      `${projector}: ${all.length} hostile audio files, ${loaded} loaded by libmtmd; outcomes ${JSON.stringify(Object.fromEntries(tally))}`,
    );
    expect(all.length).toBeGreaterThan(100);
    // mm's header checks refuse everything libmtmd would assert on
    expect([...tally.keys()].filter((k) => k.includes('assert caught'))).toEqual([]);
    const after = mediaRows(await good.embedAudio(pcm));
    expect(after).toEqual(before);
  });

  it('a projection that does not fit the text model is MM_MODEL_MISMATCH', async () => {
    const path = join(dir, `${projector}-d48.gguf`);
    writeFileSync(path, ggufToBuffer(tinyAudioMmprojSpec({ projector, projectionDim: 48 })));
    await expect(
      FusedMedia.load(path, nativeModel(backbone), { threads: 1 }),
    ).rejects.toMatchObject({ code: 'MM_MODEL_MISMATCH' });
  });
});
