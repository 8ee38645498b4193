import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AudioEncoder } from '@mm/encoders';
import { type GgufValue, type GgufWriteSpec, ggufToBuffer, gv } from '@mm/gguf';
import { type AudioProjector, Prng, synthAudio, tinyAudioMmprojSpec } from '@mm/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';
import {
  FuzzTally,
  fuzzCase,
  mutateTensor,
  pick,
  setOrDeleteKey,
} from './mutated-mmproj.test-util.js';

/**
 * Mutation fuzzing of audio mmproj files (the Whisper tower's `a.*` tensors and `clip.audio.*`
 * keys, the ultravox and qwen2a projectors' `mm.a.*`) through AudioEncoder.load, Projector.load
 * ({ audio }) and inspectMmproj ({ audio }): every case is a typed error, or it loads and encodes
 * and projects 1 s of audio; never a crash, MM_INTERNAL or a hang. Deterministic.
 */

const N = Number(process.env['MM_AUDIO_MMPROJ_FUZZ_N'] ?? 200);
const MAX_CASE_MS = 30_000;

const FOCUS_KEYS = [
  'clip.audio.embedding_length',
  'clip.audio.feed_forward_length',
  'clip.audio.block_count',
  'clip.audio.attention.head_count',
  'clip.audio.attention.head_count_kv',
  'clip.audio.attention.head_dim',
  'clip.audio.attention.layer_norm_epsilon',
  'clip.audio.num_mel_bins',
  'clip.audio.projector.stack_factor',
  'clip.audio.projection_dim',
  'clip.has_audio_encoder',
  'clip.projector_type',
  'clip.audio.projector_type',
];
const U32 = [0, 1, 2, 3, 4, 7, 8, 16, 63, 64, 80, 81, 128, 1500, 1024, 0x7fffffff, 0xffffffff];
const DIMS = [1, 2, 3, 16, 63, 64, 80, 128, 160, 640, 1499, 1500, 1501];

function randomValue(r: Prng): GgufValue | undefined {
  switch (Math.floor(r.uniform() * 8)) {
    case 0:
      return undefined;
    case 1:
      return gv.int32(pick(r, [-1, 0, 1, 8, 0x7fffffff]));
    case 2:
      return gv.float32(pick(r, [Number.NaN, -1, 0, 1e-5, 1e30]));
    case 3:
      return gv.bool(r.uniform() < 0.5);
    case 4:
      return gv.string(pick(r, ['', 'ultravox', 'qwen2a', 'qwen2.5o', 'voxtral', 'mlp', 'x']));
    default:
      return gv.uint32(pick(r, U32));
  }
}

function mutateKey(r: Prng, s: GgufWriteSpec): string {
  const md = s.metadata as Map<string, GgufValue>;
  const key =
    r.uniform() < 0.7
      ? pick(r, FOCUS_KEYS)
      : pick(
          r,
          [...md.keys()].filter((k) => k.startsWith('clip.')),
        );
  return setOrDeleteKey(s, key, randomValue(r));
}

const dir = mkdtempSync(join(tmpdir(), 'mm-audio-mmproj-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('audio mmproj fuzz through the native loaders', () => {
  const pcm = synthAudio(1, 16000, [{ kind: 'tone', hz: 440, amplitude: 0.3 }]);

  it(`${N} mutated files: typed errors, or they load and run`, { timeout: 900_000 }, async () => {
    const r = new Prng(0x61756469);
    const tally = new FuzzTally();
    const bases: AudioProjector[] = ['ultravox', 'qwen2a', 'qwen2.5o'];
    for (let i = 0; i < N; i++) {
      const s = tinyAudioMmprojSpec({ projector: bases[i % bases.length] as AudioProjector });
      const steps: string[] = [];
      const n = 1 + (r.uniform() < 0.3 ? 1 : 0);
      for (let k = 0; k < n; k++)
        steps.push(
          r.uniform() < 0.6
            ? mutateKey(r, s)
            : mutateTensor(r, s, (name) => /^(mm\.a\.|a\.conv1d)|position/.test(name), DIMS),
        );
      let buf: Uint8Array;
      try {
        buf = ggufToBuffer(s);
      } catch {
        tally.count('writer refused');
        continue;
      }
      const path = join(dir, `case-${i}.gguf`);
      writeFileSync(path, buf);
      await fuzzCase(
        `case ${i} (${steps.join('; ')})`,
        tally,
        {
          encoder: () => AudioEncoder.load(path, { threads: 1 }),
          projector: () => Projector.load(path, { threads: 1, audio: true }),
          inspect: () => inspectMmproj(path, { audio: true }),
          run: async (enc, proj) => {
            for (const f of await enc.encode(pcm)) {
              using e = await proj.project(f);
              f.dispose();
              expect(e.nEmbd).toBe(proj.info.nEmbdOut);
              expect(e.nTokens).toBe(proj.info.nTokensOut);
            }
          },
        },
        MAX_CASE_MS,
      );
      rmSync(path);
    }
    console.log(
      `audio mmproj fuzz: ${N} cases, ${tally.loaded} loaded and ran, ${tally.failures.length} failures; ${tally.summary} (max ${tally.maxMs.toFixed(0)} ms/case)`,
    );
    expect(tally.failures.slice(0, 10)).toEqual([]);
    expect(tally.loaded).toBeGreaterThanOrEqual(Math.floor(N / 10));
    expect(tally.counts['MM_GGUF_INVALID'] ?? 0).toBeGreaterThanOrEqual(Math.floor(N / 5));
  });
});
