import { Audio, AudioEncoder } from '@mm/encoders';
import { MmError } from '@mm/errors';
import { synthAudio, tinyAudioPair, tinyMmprojPair } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { inspectMmproj, Projector } from './index.js';

// The audio encoder and audio projector as a user calls them: the facts they report, and a typed
// error (with its code) for every misuse — a file without audio, an audio type mm runs fused, a
// wrong rate, empty input, aborted calls, use after dispose, features of the wrong encoder.

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return MmError.isInstance(e) ? e.code : `untyped ${String(e)}`;
  }
}

describe('AudioEncoder and the audio Projector', () => {
  it('report the tower and the projector as libmtmd reads them', async () => {
    const q = await tinyAudioPair({ projector: 'qwen2a' });
    using enc = await AudioEncoder.load(q.mmproj, { threads: 1 });
    using proj = await Projector.load(q.mmproj, { threads: 1, audio: true });
    expect([enc.projectorType, enc.sampleRate, enc.nMel, enc.nTokens, enc.nEmbd]).toEqual([
      'qwen2a',
      16000,
      80,
      750,
      80,
    ]);
    expect(enc.info.audio).toMatchObject({ nFrames: 3000, nFft: 400, hopLen: 160, avgPool: true });
    expect(enc.info.ffnOp).toBe('gelu_erf');
    expect([proj.family, proj.audio, proj.nEmbd, proj.info.nTokensOut]).toEqual([
      'qwen2a',
      true,
      64,
      750,
    ]);
    expect([proj.info.audioBegin, proj.info.audioEnd]).toEqual(['<|audio_bos|>', '<|audio_eos|>']);
    const u = await tinyAudioPair({ projector: 'ultravox' });
    const info = await inspectMmproj(u.mmproj, { audio: true });
    expect([info.family, info.audio?.stackFactor, info.nTokensOut, info.audioBegin]).toEqual([
      'ultravox',
      8,
      187,
      '',
    ]);
  });

  it('refuse files and types they do not run, with the code', async () => {
    const vision = await tinyMmprojPair({ family: 'mlp' });
    expect(await code(AudioEncoder.load(vision.mmproj))).toBe('MM_MODALITY_UNSUPPORTED');
    expect(await code(Projector.load(vision.mmproj, { audio: true }))).toBe(
      'MM_MODALITY_UNSUPPORTED',
    );
    // voxtral runs through libmtmd's fused path, not these graphs
    const vox = await tinyAudioPair({ projector: 'voxtral' });
    expect(await code(AudioEncoder.load(vox.mmproj))).toBe('MM_UNSUPPORTED_FAMILY');
    expect(await code(Projector.load(vox.mmproj, { audio: true }))).toBe('MM_UNSUPPORTED_FAMILY');
    expect(await code(AudioEncoder.load('/nonexistent/mmproj.gguf'))).toBe('MM_FILE_NOT_FOUND');
    expect(await code(AudioEncoder.load(''))).toBe('MM_INVALID_ARGUMENT');
    const q = await tinyAudioPair({ projector: 'qwen2a' });
    // @ts-expect-error: a bad option value
    expect(await code(AudioEncoder.load(q.mmproj, { flashAttn: 'x' }))).toBe('MM_INVALID_ARGUMENT');
    expect(await code(AudioEncoder.load(q.mmproj, { threads: 0 }))).toBe('MM_INVALID_ARGUMENT');
    // @ts-expect-error: a bad option value
    expect(await code(Projector.load(q.mmproj, { audio: 'yes' }))).toBe('MM_INVALID_ARGUMENT');
  });

  it('refuse bad input, honour aborts and dispose, and refuse features of another tower', async () => {
    const q = await tinyAudioPair({ projector: 'qwen2.5o' });
    const enc = await AudioEncoder.load(q.mmproj, { threads: 1 });
    using proj = await Projector.load(q.mmproj, { threads: 1, audio: true });
    using visionProj = await Projector.load(q.mmproj, { threads: 1 });
    const at8k = Audio.fromPCM(
      synthAudio(1, 8000, [{ kind: 'tone', hz: 440, amplitude: 0.3 }]),
      8000,
      {
        sampleRate: 8000,
      },
    );
    expect(await code(enc.encode(await at8k))).toBe('MM_INVALID_ARGUMENT');
    expect(await code(enc.encode(new Float32Array(0)))).toBe('MM_INVALID_ARGUMENT');
    // @ts-expect-error: not audio
    expect(await code(enc.encode('sound.wav'))).toBe('MM_INVALID_ARGUMENT');
    const pcm = synthAudio(1, 16000, [{ kind: 'chirp', fromHz: 200, toHz: 4000, amplitude: 0.3 }]);
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(enc.encode(pcm, { signal: ac.signal })).rejects.toThrow('stop');
    const [f] = await enc.encode(pcm);
    expect([f!.nTokens, f!.nEmbd, f!.nx, f!.ny]).toEqual([750, 80, 750, 1]);
    // audio features into the picture projector of the same file: another encoder's output
    expect(await code(visionProj.project(f!))).toBe('MM_MODEL_MISMATCH');
    using e = await proj.project(f!);
    expect([e.nTokens, e.nEmbd, e.causal]).toEqual([750, 64, true]);
    f!.dispose();
    enc.dispose();
    expect(await code(enc.encode(pcm))).toBe('MM_DISPOSED');
    expect(() => enc.dispose()).toThrow(expect.objectContaining({ code: 'MM_DISPOSED' }));
  });
});
