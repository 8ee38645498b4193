import { Audio, AudioEncoder, Image, VisionEncoder } from '@mm/encoders';
import {
  type AudioProjector,
  compareVectors,
  mtmdAudioChunks,
  mtmdOracleBinary,
  runMtmdAudioOracle,
  runMtmdOracle,
  syntheticImage,
  synthWavFixture,
  tinyAudioPair,
} from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { Projector } from './index.js';

/**
 * mm's own audio graphs (the Whisper tower + ultravox / qwen2a, and the audio half of a qwen2.5o
 * file) against libmtmd's on the same files: for audio shorter than one chunk, of exactly one
 * chunk's length (which libmtmd cuts into two: the padding always adds a chunk) and of several,
 * every chunk's mel, encoder output and embeddings. The tower and projectors build libmtmd's ops
 * in libmtmd's order, so the values are expected equal to the last bit (the tolerance is the
 * issue's, 1e-3 / cosine 0.9999).
 */

const hasOracle = mtmdOracleBinary() !== undefined;
const SECONDS = [1, 30, 75] as const;
const PROJECTORS: readonly AudioProjector[] = ['ultravox', 'qwen2a', 'qwen2.5o'];

describe.skipIf(!hasOracle)('audio encoder + projector equal libmtmd', () => {
  for (const projector of PROJECTORS) {
    it(`${projector}: ${SECONDS.join(' s, ')} s, every chunk`, { timeout: 300_000 }, async () => {
      const pair = await tinyAudioPair({ projector });
      const wavs = await Promise.all(SECONDS.map((s) => synthWavFixture(s)));
      const ref = await runMtmdAudioOracle({
        mmproj: pair.mmproj,
        textModel: pair.model,
        audio: wavs,
        threads: 2,
      });
      using enc = await AudioEncoder.load(pair.mmproj, { threads: 2 });
      using proj = await Projector.load(pair.mmproj, { threads: 2, audio: true });
      expect(proj.audio).toBe(true);
      expect(proj.nEmbd).toBe(pair.nEmbd);
      const rows: string[] = [];
      for (const [k, wav] of wavs.entries()) {
        const r = ref[k]!;
        const audio = await Audio.fromFile(wav, { sampleRate: enc.sampleRate });
        expect(audio.samples.length).toBe(r.nSamples);
        const features = await enc.encode(audio);
        expect(features.length).toBe(r.chunks.length);
        expect(features.length).toBe(mtmdAudioChunks(audio.samples.length));
        for (const [i, f] of features.entries()) {
          const c = r.chunks[i]!;
          using e = await proj.project(f);
          expect(e.nTokens).toBe(c.nTokens);
          expect(e.nEmbd).toBe(c.nEmbd);
          expect(e.causal).toBe(true);
          const emb = compareVectors(e.toFloat32Array(), c.embd);
          expect(emb.maxAbsDiff).toBeLessThanOrEqual(1e-3);
          expect(emb.cosine).toBeGreaterThanOrEqual(0.9999);
          let feat = { maxAbsDiff: Number.NaN, cosine: Number.NaN };
          if (c.features) {
            feat = compareVectors(f.toFloat32Array(), c.features);
            expect(feat.maxAbsDiff).toBeLessThanOrEqual(1e-3);
          }
          rows.push(
            `${SECONDS[k]} s chunk ${i}: ${e.nTokens} x ${e.nEmbd}, features max|diff| ${feat.maxAbsDiff}, embeddings max|diff| ${emb.maxAbsDiff} cosine ${emb.cosine.toFixed(6)}`,
          );
          f.dispose();
        }
      }
      console.log(`${projector} vs libmtmd:\n  ${rows.join('\n  ')}`);
    });
  }

  it('qwen2.5o: the vision tower of the same file runs in the own Qwen2.5-VL graph, equal to libmtmd', async () => {
    const pair = await tinyAudioPair({ projector: 'qwen2.5o' });
    const images = [syntheticImage(64, 48, 11), syntheticImage(40, 72, 12)];
    const ref = await runMtmdOracle({ mmproj: pair.mmproj, images, textModel: pair.model });
    using enc = await VisionEncoder.load(pair.mmproj, { threads: 2 });
    using proj = await Projector.load(pair.mmproj, { threads: 2 });
    expect([enc.family, proj.family, proj.audio]).toEqual(['qwen2vl', 'qwen2.5vl_merger', false]);
    for (const [i, raw] of images.entries()) {
      const chunks = await enc.encodeChunks(Image.fromRGB(raw.data, raw.width, raw.height));
      expect(chunks.length).toBe(1);
      using f = chunks[0]!;
      using e = await proj.project(f);
      const { maxAbsDiff, cosine } = compareVectors(e.toFloat32Array(), ref[i]!.embd);
      console.log(
        `qwen2.5o picture ${raw.width}x${raw.height}: ${e.nTokens} tokens, max |diff| ${maxAbsDiff}, cosine ${cosine.toFixed(6)}`,
      );
      expect([e.nTokens, e.nEmbd]).toEqual([ref[i]!.nTokens, ref[i]!.nEmbd]);
      expect(maxAbsDiff).toBe(0);
    }
  });
});
