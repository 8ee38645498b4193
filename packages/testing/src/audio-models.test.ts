import { createHash } from 'node:crypto';
import { MmError } from '@mm/errors';
import { getString, getUint, readGgufFromBuffer } from '@mm/gguf';
import { describe, expect, it } from 'vitest';
import {
  AUDIO_MARKERS,
  AUDIO_PROJECTORS,
  type AudioProjector,
  audioGraphRowsPerChunk,
  audioTokensPerChunk,
  mtmdAudioChunks,
  REALISTIC_WHISPER_LARGE,
  resolveTinyAudioMmprojOptions,
  synthWavFixture,
  tinyAudioMmprojBuffer,
  tinyAudioMmprojFixtureName,
  tinyAudioPair,
  tinyAudioTextBuffer,
  tinyAudioTextVocab,
} from './audio-models.js';
import { syntheticPngFixture } from './fixtures.js';
import {
  compareVectors,
  type MtmdMediaChunk,
  type MtmdTextChunk,
  runMtmdAudioOracle,
  runMtmdLayout,
} from './mtmd-oracle.js';
import { mtmdCli } from './oracle.js';
import { TokenType } from './tiny-llama.js';

// The tiny audio fixtures against libmtmd itself (the oracle and llama-mtmd-cli built with
// `node native/scripts/build.mjs --oracle`): every projector type loads, cuts 1 s, 30 s and 45 s of
// synthesised audio into the chunks and tokens clip.cpp / mtmd-audio.cpp say, and prints text.

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const SECONDS = [1, 30, 45] as const;
const allFinite = (a: Float32Array) => a.every((x) => Number.isFinite(x));

describe('libmtmd audio counts', () => {
  it('chunks per signal (30 s of zero padding, 3000-frame chunks, the incomplete last one dropped)', () => {
    expect(SECONDS.map((s) => mtmdAudioChunks(s * 16000))).toEqual([1, 2, 2]);
    expect([0, 1, 479839, 479840, 959840].map(mtmdAudioChunks)).toEqual([1, 1, 1, 2, 3]);
  });

  it('tokens per chunk (clip_n_output_tokens) and the rows of the graph', () => {
    expect(AUDIO_PROJECTORS.map((p) => audioTokensPerChunk(p))).toEqual([187, 750, 187, 750]);
    // ultravox: ceil(3000 / 8) / 2; voxtral: ceil(3000 / 4) / 2 / 2; qwen: 3000 / 2 / 2
    expect(audioTokensPerChunk('ultravox', 4)).toBe(375);
    for (const E of [80, 160, 640, 1280]) {
      expect(audioGraphRowsPerChunk('ultravox', E)).toBe(187);
      expect(audioGraphRowsPerChunk('voxtral', E)).toBe(187);
    }
    // power-of-two strides round up: libmtmd would abort
    expect(audioGraphRowsPerChunk('ultravox', 64)).toBe(188);
    expect(audioGraphRowsPerChunk('qwen2a', 64)).toBe(750);
  });
});

describe('tiny audio mmproj generators', () => {
  it('are deterministic, and every option is in the file name', () => {
    for (const projector of AUDIO_PROJECTORS) {
      expect(sha256(tinyAudioMmprojBuffer({ projector }))).toBe(
        sha256(tinyAudioMmprojBuffer({ projector })),
      );
      expect(sha256(tinyAudioMmprojBuffer({ projector, seed: 1 }))).not.toBe(
        sha256(tinyAudioMmprojBuffer({ projector })),
      );
      expect(tinyAudioMmprojFixtureName({ projector, nLayers: 3 })).not.toBe(
        tinyAudioMmprojFixtureName({ projector }),
      );
    }
    expect(tinyAudioMmprojFixtureName({ projector: 'qwen2.5o', vision: { nLayers: 3 } })).not.toBe(
      tinyAudioMmprojFixtureName({ projector: 'qwen2.5o' }),
    );
  }, 60_000);

  it('write the keys and tensors libmtmd reads', () => {
    const m = readGgufFromBuffer(tinyAudioMmprojBuffer({ projector: 'ultravox' }));
    expect(getString(m.metadata, 'clip.projector_type')).toBe('ultravox');
    expect(getUint(m.metadata, 'clip.audio.projector.stack_factor')).toBe(8);
    expect(getUint(m.metadata, 'clip.audio.num_mel_bins')).toBe(80);
    const shape = (name: string) => m.tensors.find((t) => t.name === name)?.shape;
    expect(shape('a.conv1d.1.weight')).toEqual([3, 80, 80]);
    expect(shape('a.conv1d.2.bias')).toEqual([1, 80]);
    expect(shape('a.position_embd.weight')).toEqual([80, 1500]);
    expect(shape('a.blk.0.attn_k.bias')).toBeUndefined();
    expect(shape('mm.a.mlp.1.weight')).toEqual([640, 128]);
    expect(shape('mm.a.mlp.2.weight')).toEqual([64, 64]);

    const omni = readGgufFromBuffer(
      tinyAudioMmprojBuffer({ projector: 'qwen2.5o', projectorTypeKey: 'modality' }),
    );
    expect(getString(omni.metadata, 'clip.vision.projector_type')).toBe('qwen2.5vl_merger');
    expect(getString(omni.metadata, 'clip.audio.projector_type')).toBe('qwen2a');
    expect(omni.metadata.has('clip.projector_type')).toBe(false);
    expect(omni.tensors.some((t) => t.name === 'v.patch_embd.weight')).toBe(true);
    expect(omni.tensors.some((t) => t.name === 'mm.a.fc.weight')).toBe(true);
  });

  it('refuse shapes libmtmd cannot run, with typed errors', () => {
    const bad = [
      { projector: 'ultravox' as const, nEmbd: 64 },
      { projector: 'voxtral' as const, nEmbd: 128 },
      { projector: 'qwen2a' as const, stackFactor: 2 },
      { projector: 'qwen2a' as const, nPos: 1499 },
      { projector: 'qwen2a' as const, nMel: 300 },
      { projector: 'qwen2a' as const, nHead: 3 },
      { projector: 'ultravox' as const, vision: {} },
      { projector: 'bogus' as AudioProjector },
    ];
    for (const o of bad) expect(() => resolveTinyAudioMmprojOptions(o)).toThrow(MmError);
    expect(resolveTinyAudioMmprojOptions({ projector: 'qwen2a', nEmbd: 64, nHead: 4 }).nEmbd).toBe(
      64,
    );
    expect(
      resolveTinyAudioMmprojOptions({ projector: 'ultravox', ...REALISTIC_WHISPER_LARGE }),
    ).toMatchObject({ nEmbd: 1280, nHead: 20, nFf: 5120, nMel: 128, stackFactor: 8 });
  });

  it("pair text models hold libmtmd's audio markers as control tokens", () => {
    for (const projector of AUDIO_PROJECTORS) {
      const v = tinyAudioTextVocab(projector);
      for (const marker of AUDIO_MARKERS[projector].filter((x) => x !== '')) {
        const id = v.tokens.indexOf(marker);
        expect(id, `${projector} ${marker}`).toBeGreaterThan(0);
        expect(v.tokenTypes[id]).toBe(TokenType.CONTROL);
      }
      const m = readGgufFromBuffer(tinyAudioTextBuffer(projector, { nEmbd: 64 }));
      const arch = getString(m.metadata, 'general.architecture');
      expect(getUint(m.metadata, `${arch}.embedding_length`)).toBe(64);
    }
  });
});

describe.each(AUDIO_PROJECTORS)('tiny %s pair in libmtmd', (projector) => {
  it('1 s, 30 s and 45 s: chunks, tokens, positions and finite embeddings', async () => {
    const pair = await tinyAudioPair({ projector });
    const o = resolveTinyAudioMmprojOptions({ projector });
    const wavs = await Promise.all(SECONDS.map((s) => synthWavFixture(s)));
    const results = await runMtmdAudioOracle({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      audio: wavs,
    });
    const rows = projector === 'ultravox' ? 1500 : 750; // encoder rows (after qwen2a/voxtral's pool)
    for (const [i, r] of results.entries()) {
      const seconds = SECONDS[i] as number;
      expect(r.sampleRate).toBe(16000);
      expect(r.nSamples).toBe(seconds * 16000);
      expect(r.chunks).toHaveLength(mtmdAudioChunks(r.nSamples));
      for (const c of r.chunks) {
        expect(c).toMatchObject({
          nTokens: pair.tokensPerChunk,
          nPos: pair.tokensPerChunk,
          nEmbd: pair.nEmbd,
          melShape: [o.nMel, 3000],
          featuresShape: [rows, o.nEmbd],
        });
        expect(c.embd).toHaveLength(pair.tokensPerChunk * pair.nEmbd);
        expect(c.mel).toHaveLength(o.nMel * 3000);
        expect(allFinite(c.embd) && allFinite(c.mel) && allFinite(c.features!)).toBe(true);
        expect(compareVectors(c.embd, new Float32Array(c.embd.length)).cosine).not.toBe(1);
      }
    }
    // the second chunk of exactly 30 s is the zero padding: the log-mel clamped at (max - 8)
    const pad = results[1]!.chunks[1]!.mel;
    const floor = pad.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    expect(pad.filter((x) => x === floor).length / pad.length).toBeGreaterThan(0.99);
  }, 120_000);

  it('in a prompt: markers, audio chunks in order, positions, the same embeddings', async () => {
    const pair = await tinyAudioPair({ projector });
    const wav = await synthWavFixture(45);
    const layout = await runMtmdLayout({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      prompt: 'Listen: <__media__> What is it?',
      images: [wav],
    });
    expect(layout.useMrope).toBe(projector === 'qwen2.5o');
    expect(layout.chunks.map((c) => c.type)).toEqual(['text', 'audio', 'audio', 'text']);
    const vocab = tinyAudioTextVocab(projector);
    const [beg, end] = pair.markers;
    const texts = layout.chunks.filter((c): c is MtmdTextChunk => c.type === 'text');
    if (beg !== '') expect(texts[0]!.tokens.at(-1)).toBe(vocab.tokens.indexOf(beg));
    if (end !== '') expect(texts[1]!.tokens[0]).toBe(vocab.tokens.indexOf(end));
    let nPast = 0;
    for (const c of layout.chunks) {
      expect(c.pos0).toBe(nPast);
      nPast += c.nPos;
    }
    expect([layout.nPast, layout.nPosTotal, layout.nTokensTotal]).toEqual([nPast, nPast, nPast]);
    const audio = layout.chunks.filter((c): c is MtmdMediaChunk => c.type === 'audio');
    const [ref] = await runMtmdAudioOracle({
      mmproj: pair.mmproj,
      textModel: pair.llm,
      audio: [wav],
    });
    for (const [i, c] of audio.entries()) {
      expect(c).toMatchObject({ nTokens: pair.tokensPerChunk, nx: null, ny: null });
      // audio rows take 1-D positions in every M-RoPE section
      expect(c.positions.every((p, k) => [p.t, p.y, p.x, p.z].every((v) => v === c.pos0 + k))).toBe(
        true,
      );
      expect(c.melShape).toEqual(ref!.chunks[i]!.melShape);
      expect(compareVectors(c.embd, ref!.chunks[i]!.embd).maxAbsDiff).toBe(0);
    }
  }, 120_000);

  it('llama-mtmd-cli --audio loads the pair and prints text', async () => {
    const pair = await tinyAudioPair({ projector });
    const text = await mtmdCli({
      model: pair.llm,
      mmproj: pair.mmproj,
      audio: [await synthWavFixture(1)],
      prompt: 'What is this sound?',
      maxTokens: 8,
    });
    expect(text.trim().length).toBeGreaterThan(0);
  }, 120_000);
});

describe('qwen2.5o: one file, vision and audio', () => {
  it.each(['common', 'modality'] as const)(
    'an image and an audio in one prompt (%s projector-type keys)',
    async (projectorTypeKey) => {
      const pair = await tinyAudioPair({ projector: 'qwen2.5o', projectorTypeKey });
      const layout = await runMtmdLayout({
        mmproj: pair.mmproj,
        textModel: pair.llm,
        prompt: 'A <__media__> B <__media__> C',
        images: [await syntheticPngFixture(64, 64), await synthWavFixture(1)],
      });
      expect(layout.chunks.map((c) => c.type)).toEqual(['text', 'image', 'text', 'audio', 'text']);
      const vocab = tinyAudioTextVocab('qwen2.5o');
      const texts = layout.chunks.filter((c): c is MtmdTextChunk => c.type === 'text');
      expect(texts[0]!.tokens.at(-1)).toBe(vocab.tokens.indexOf('<|vision_start|>'));
      expect(texts[1]!.tokens[0]).toBe(vocab.tokens.indexOf('<|vision_end|>'));
      expect(texts[1]!.tokens.at(-1)).toBe(vocab.tokens.indexOf('<|audio_bos|>'));
      expect(texts[2]!.tokens[0]).toBe(vocab.tokens.indexOf('<|audio_eos|>'));
      const [image, audio] = layout.chunks.filter((c): c is MtmdMediaChunk => c.type !== 'text');
      expect(image!.nTokens).toBe(16); // 64x64 at patch 8 through the 2x2 merger
      expect(audio!.nTokens).toBe(750);
      expect(allFinite(image!.embd) && allFinite(audio!.embd)).toBe(true);
    },
    120_000,
  );
});
