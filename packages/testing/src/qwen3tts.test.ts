import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getString, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import { GEN_AUDIO_TYPE, runGenOracle } from './gen-oracle.js';
import { Prng } from './prng.js';
import {
  QWEN3TTS_CODEC_IDS,
  qwen3ttsSamplesPerFrame,
  tinyQwen3TtsMmprojBuffer,
  tinyQwen3TtsPair,
  tinyQwen3TtsTalkerBuffer,
  tinyQwen3TtsVocab,
  writeTinyQwen3Tts,
} from './qwen3tts.js';

// The tiny Qwen3-TTS pair against libllama + libmtmd themselves (mm-ref-mtmd-gen, built with
// `node native/scripts/build.mjs --oracle`): both files load, libmtmd reports a Qwen3-TTS generator,
// every stage runs and gives finite values in a sane range.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('tiny Qwen3-TTS fixture', () => {
  it('is deterministic in its options', () => {
    expect(sha256(tinyQwen3TtsMmprojBuffer({ seed: 3 }))).toBe(
      sha256(tinyQwen3TtsMmprojBuffer({ seed: 3 })),
    );
    expect(sha256(tinyQwen3TtsMmprojBuffer({ seed: 3 }))).not.toBe(
      sha256(tinyQwen3TtsMmprojBuffer({ seed: 4 })),
    );
    const talker = readGgufFromBuffer(tinyQwen3TtsTalkerBuffer());
    expect(getString(talker.metadata, 'general.architecture')).toBe('qwen3tts');
  });

  it('has the specials mtmd-helper-gen.cpp looks up', () => {
    const v = tinyQwen3TtsVocab();
    for (const t of [
      '<|codec_0|>',
      '<|codec_bos|>',
      '<|codec_eos_token|>',
      '<|codec_pad|>',
      '<|codec_think|>',
      '<|codec_think_bos|>',
      '<|codec_think_eos|>',
      '<|codec_language_english|>',
      '<tts_pad>',
      '<tts_text_bos>',
      '<tts_text_eod>',
      '<|im_start|>',
      '<|im_end|>',
    ]) {
      expect(v.tokens.indexOf(t), t).toBeGreaterThanOrEqual(0);
    }
    expect(v.tokens[v.nText + (QWEN3TTS_CODEC_IDS['codec_bos'] as number)]).toBe('<|codec_bos|>');
  });

  // libmtmd rebuilds its gen graph on every call: seconds per call on a busy 2-core machine
  it('libllama and libmtmd load it; every stage runs in range', { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-q3tts-'));
    try {
      const pair = await writeTinyQwen3Tts(dir);
      const cached = await tinyQwen3TtsPair();
      expect(sha256(readFileSync(pair.mmproj))).toBe(sha256(readFileSync(cached.mmproj)));
      const rng = new Prng(11);
      const frames = new Int32Array(72 * 16);
      for (let i = 0; i < frames.length; i++) {
        frames[i] = rng.nextU32() % (i % 16 === 0 ? 2048 : 64);
      }
      const pcm = new Float32Array(12000);
      for (let i = 0; i < pcm.length; i++) pcm[i] = 0.3 * Math.sin(i * 0.07) + 0.05 * rng.normal();
      const run = await runGenOracle({
        model: pair.model,
        mmproj: pair.mmproj,
        ops: [
          { op: 'info' },
          {
            op: 'code',
            hidden: rng.normals(64, 1),
            code0: 5,
            topK: 50,
            topP: 1,
            temp: 0.9,
            seed: 1,
          },
          { op: 'wav', frames, state: 'cold', seed: 1 },
          { op: 'speaker', pcm },
        ],
      });
      const [info, code, wav, spk] = run.results;
      expect(info).toMatchObject({
        ok: true,
        info: {
          type: GEN_AUDIO_TYPE.qwen3tts,
          sampleRate: 24000,
          variant: 'tiny',
          audioInput: true,
        },
      });
      if (code?.op !== 'code' || !code.ok) throw new Error('gen_code failed');
      expect(code.codes.length).toBe(16);
      expect(code.codes[0]).toBe(5);
      expect(code.codes.every((c) => c >= 0 && c < 64)).toBe(true);
      expect(code.embd.every(Number.isFinite)).toBe(true);
      if (wav?.op !== 'wav' || !wav.ok) throw new Error('gen_wav failed');
      expect(wav.pcm.length).toBe(72 * qwen3ttsSamplesPerFrame());
      let peak = 0;
      let sq = 0;
      for (const v of wav.pcm) {
        peak = Math.max(peak, Math.abs(v));
        sq += v * v;
      }
      const rms = Math.sqrt(sq / wav.pcm.length);
      console.log(`tiny qwen3tts PCM: peak ${peak.toFixed(3)}, rms ${rms.toFixed(4)}`);
      expect(wav.pcm.every(Number.isFinite)).toBe(true);
      expect(peak).toBeLessThan(0.95); // not saturated (libmtmd clamps at 1)
      expect(rms).toBeGreaterThan(1e-3);
      if (spk?.op !== 'speaker' || !spk.ok) throw new Error('speaker encode failed');
      expect(spk.rows).toBe(1);
      expect(spk.embd.length).toBe(64);
      expect(spk.embd.every(Number.isFinite)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
