import { Backbone, nativeModel } from '@mm/backbone-gguf';
import { Audio } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { FusedMedia, inspectFused } from '@mm/projectors';
import {
  AUDIO_PROJECTORS,
  type AudioProjector,
  compareVectors,
  type MtmdMediaChunk,
  type MtmdTextChunk,
  runMtmdLayout,
  synthWavFixture,
  tinyAudioPair,
} from '@mm/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Audio through libmtmd's fused encoder + projector: the header facts inspectFused reports for each
// of @mm/testing's audio mmproj files, and embedAudio's layout and embeddings against libmtmd's own
// mtmd_tokenize + mtmd_encode_chunk of the same file (mm-ref-mtmd-embed in layout mode, which decodes
// the WAV itself with mtmd-helper).

const SAMPLE_RATE = 16000;

describe.each(AUDIO_PROJECTORS)('fused audio, %s', (projector: AudioProjector) => {
  let backbone: Backbone;
  let fused: FusedMedia;
  let pair: Awaited<ReturnType<typeof tinyAudioPair>>;
  beforeAll(async () => {
    pair = await tinyAudioPair({ projector });
    backbone = await Backbone.load(pair.model);
    fused = await FusedMedia.load(pair.mmproj, nativeModel(backbone), { threads: 2 });
  });
  afterAll(() => {
    fused?.dispose();
    backbone?.dispose();
  });

  it('inspectFused names the modalities, the audio type and its sample rate', async () => {
    const info = await inspectFused(pair.mmproj);
    const omni = projector === 'qwen2.5o';
    expect(info).toMatchObject({
      projectorType: projector,
      hasAudio: true,
      hasVision: omni,
      audioProjectorType: projector,
      visionProjectorType: omni ? 'qwen2.5o' : '',
      audioSampleRate: SAMPLE_RATE,
      nMelBins: 80,
      nEmbdAudio: 80,
      nLayerAudio: 2,
    });
    expect(fused.info.audioSampleRate).toBe(SAMPLE_RATE);
    expect(fused.info.mrope).toBe(omni);
  });

  it.each([3, 31])('a %d s sound: the layout and embeddings of libmtmd', async (seconds) => {
    const wav = await synthWavFixture(seconds);
    const audio = await Audio.fromFile(wav, { sampleRate: fused.info.audioSampleRate });
    const ours = await fused.embedAudio(audio.samples);
    const ref = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.model,
      prompt: '<__media__>',
      images: [wav],
      threads: 2,
    });
    // libmtmd's prompt starts with BOS (add_special); the fused path tokenizes the marker alone
    const refChunks = ref.chunks.map((c, i) =>
      i === 0 && c.type === 'text' && backbone.info.addBos
        ? { ...c, tokens: c.tokens.slice(1) }
        : c,
    );
    const refLayout = refChunks.filter((c) => c.type !== 'text' || c.tokens.length > 0);
    expect(ours.items.map((it) => it.kind)).toEqual(
      refLayout.map((c) => (c.type === 'text' ? 'text' : 'media')),
    );
    const chunks = ours.items.filter((it) => it.kind === 'media');
    expect(chunks.length).toBe(seconds > 30 ? 2 : 1);
    let worst = 0;
    for (const [i, it] of ours.items.entries()) {
      const r = refLayout[i];
      if (it.kind === 'text') {
        expect(Array.from(it.tokens)).toEqual((r as MtmdTextChunk).tokens);
        continue;
      }
      const m = r as MtmdMediaChunk;
      expect(m.type).toBe('audio');
      expect(it.modality).toBe('audio');
      expect(it.nTokens).toBe(pair.tokensPerChunk);
      expect([it.nTokens, it.nPos, it.nx, it.ny, it.causal]).toEqual([
        m.nTokens,
        m.nPos,
        m.nTokens,
        1,
        !m.nonCausal,
      ]);
      // libmtmd's M-RoPE audio positions are 1-D: the same in every section
      expect(m.positions.every((p, k) => p.t === m.pos0 + k && p.x === p.t && p.y === p.t)).toBe(
        true,
      );
      const { maxAbsDiff, cosine } = compareVectors(it.rows, m.embd);
      worst = Math.max(worst, maxAbsDiff);
      expect(cosine).toBeGreaterThan(0.9999);
    }
    console.log(`fused ${projector} ${seconds} s: ${chunks.length} chunk(s), max |diff| ${worst}`);
    expect(worst).toBeLessThanOrEqual(1e-3);
  });

  it('typed errors: too short, not a Float32Array, a picture for an audio-only file', async () => {
    for (const pcm of [new Float32Array(0), new Float32Array(1)]) {
      const e = await fused.embedAudio(pcm).catch((x: unknown) => x);
      expect(MmError.isInstance(e) && e.code).toBe('MM_AUDIO_DECODE');
    }
    const bad = await fused
      .embedAudio(new Float64Array(100) as unknown as Float32Array)
      .catch((x: unknown) => x);
    expect(MmError.isInstance(bad) && bad.code).toBe('MM_INVALID_ARGUMENT');
    const nan = new Float32Array(1000);
    nan[500] = Number.NaN;
    const e = await fused.embedAudio(nan).catch((x: unknown) => x);
    expect(MmError.isInstance(e) && e.code).toBe('MM_INVALID_ARGUMENT');
    if (projector !== 'qwen2.5o') {
      const img = { width: 8, height: 8, data: new Uint8Array(192) };
      const p = await fused.embed(img).catch((x: unknown) => x);
      expect(MmError.isInstance(p) && p.code).toBe('MM_MODALITY_UNSUPPORTED');
    }
  });

  it('honours an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(fused.embedAudio(new Float32Array(16000), { signal: ac.signal })).rejects.toThrow(
      'stop',
    );
  });
});

describe('fused audio, a file naming the type per modality', () => {
  it('clip.audio.projector_type alone is read as libmtmd reads it', async () => {
    const pair = await tinyAudioPair({ projector: 'voxtral', projectorTypeKey: 'modality' });
    const info = await inspectFused(pair.mmproj);
    expect(info).toMatchObject({
      projectorType: 'voxtral',
      audioProjectorType: 'voxtral',
      hasVision: false,
      hasAudio: true,
    });
  });
});
