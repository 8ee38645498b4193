import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ggufToBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import { GEN_AUDIO_TYPE, type GenOracleOp, runGenOracle } from './gen-oracle.js';
import { refGenerate } from './oracle.js';
import {
  POCKETTTS_SAMPLES_PER_FRAME,
  pocketTtsVocab,
  tinyPocketTtsSpecs,
  writeTinyPocketTts,
} from './pockettts.js';
import { Prng } from './prng.js';

// The tiny Pocket TTS pair against libllama + libmtmd themselves (mm-ref-mtmd-gen and
// mm-ref-generate, built with `node native/scripts/build.mjs --oracle`): both files load, libmtmd
// reports a Pocket TTS generator with the pack's variant, libllama's unigram tokenizer reads text,
// and every stage runs with values in a sane range (the end-of-speech head fires on some frames and
// not on others, PCM is neither silent nor clipped).

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('tiny Pocket TTS fixture', () => {
  it('is deterministic in its options', () => {
    const a = tinyPocketTtsSpecs({ seed: 3 });
    const b = tinyPocketTtsSpecs({ seed: 3 });
    const c = tinyPocketTtsSpecs({ seed: 4 });
    expect(sha256(ggufToBuffer(a.mmproj))).toBe(sha256(ggufToBuffer(b.mmproj)));
    expect(sha256(ggufToBuffer(a.model))).toBe(sha256(ggufToBuffer(b.model)));
    expect(sha256(ggufToBuffer(a.mmproj))).not.toBe(sha256(ggufToBuffer(c.mmproj)));
    expect(sha256(ggufToBuffer(a.model))).not.toBe(sha256(ggufToBuffer(c.model)));
  });

  it('has the rows mtmd-helper-gen.cpp looks up by text, last', () => {
    const v = pocketTtsVocab(true);
    expect(v.tokens.slice(-3)).toEqual(['<|pad|>', '<|bos_before_voice|>', '<|audio_bos|>']);
    expect(v.ids.audioBos).toBe(v.ids.nVocab - 1);
    const w = pocketTtsVocab(false);
    expect(w.tokens.slice(-2)).toEqual(['<|pad|>', '<|audio_bos|>']);
    expect(w.ids.bosBeforeVoice).toBe(-1);
  });

  it('libllama and libmtmd load it; its tokenizer and every stage run in range', {
    timeout: 300_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mm-pockettts-'));
    try {
      const fx = await writeTinyPocketTts(dir);
      // libllama: arch pockettts, the UGM ("t5") tokenizer without a BOS
      const gen = await refGenerate({
        model: fx.model,
        prompt: 'the cat sat.',
        maxTokens: 1,
        threads: 1,
      });
      const v = pocketTtsVocab(true);
      expect(gen.promptTokens.map((t) => v.tokens[t])).toEqual(['▁the', '▁cat', '▁sat', '.']);

      const rng = new Prng(9);
      const L = fx.latentDim;
      const steps = 16;
      const ops: GenOracleOp[] = [{ op: 'info' }];
      for (let i = 0; i < steps; i++) {
        ops.push({
          op: 'code',
          hidden: rng.normals(fx.nEmbd, 1),
          code0: 0,
          topK: 50,
          topP: 1,
          temp: 0.3,
          seed: 5,
        });
      }
      for (let w = 0; w < 2; w++) {
        ops.push({
          op: 'wav',
          frames: rng.normals(8 * L, 1),
          state: w === 0 ? 'cold' : 'carry',
          seed: 5,
        });
      }
      const voice = new Float32Array(24000);
      for (let i = 0; i < voice.length; i++)
        voice[i] = 0.3 * Math.sin((2 * Math.PI * 220 * i) / 24000);
      ops.push({ op: 'speaker', pcm: voice });
      const run = await runGenOracle({ model: fx.model, mmproj: fx.mmproj, ops, threads: 1 });
      expect(run.nEmbd).toBe(fx.nEmbd);

      const info = run.results[0];
      expect(info?.ok && info.op === 'info' && info.info).toMatchObject({
        type: GEN_AUDIO_TYPE.pockettts,
        sampleRate: 24000,
        variant: 'english',
        audioInput: true,
        audioSampleRate: 24000,
      });

      const eos: boolean[] = [];
      for (let i = 1; i <= steps; i++) {
        const r = run.results[i];
        if (r?.op !== 'code' || !r.ok) throw new Error(`code op ${i} failed`);
        expect(r.codes.length).toBe(0);
        expect(r.feats.length).toBe(L);
        expect(r.embd.length).toBe(fx.nEmbd);
        expect([...r.feats, ...r.embd].every(Number.isFinite)).toBe(true);
        eos.push(r.isEos);
      }
      expect(eos).toContain(true);
      expect(eos).toContain(false);

      let peak = 0;
      let clipped = 0;
      for (let w = 0; w < 2; w++) {
        const r = run.results[1 + steps + w];
        if (r?.op !== 'wav' || !r.ok) throw new Error(`wav op ${w} failed`);
        expect(r.pcm.length).toBe(8 * POCKETTTS_SAMPLES_PER_FRAME);
        for (const x of r.pcm) {
          expect(Number.isFinite(x)).toBe(true);
          peak = Math.max(peak, Math.abs(x));
          if (Math.abs(x) >= 0.999) clipped++;
        }
      }
      expect(peak).toBeGreaterThan(0.05);
      expect(clipped).toBe(0);

      const spk = run.results[3 + steps];
      if (spk?.op !== 'speaker' || !spk.ok) throw new Error('speaker op failed');
      expect(spk.rows).toBe(Math.ceil(voice.length / POCKETTTS_SAMPLES_PER_FRAME));
      expect(spk.embd.length).toBe(spk.rows * fx.nEmbd);
      expect([...spk.embd].every(Number.isFinite)).toBe(true);

      // same options, same bytes
      const again = await writeTinyPocketTts(join(dir, 'again'));
      expect(sha256(readFileSync(again.mmproj))).toBe(sha256(readFileSync(fx.mmproj)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
