import { tinyLlamaFixture } from '@mm/testing';
import { describe, expect, it } from 'vitest';
import { probeModel } from '../lib/index.js';
import { tinyShapesLlm, tinyShapesMmproj } from './helpers.js';

describe('probeModel (llama.cpp loads the file)', () => {
  it('loads the tiny-shapes text model with its weights', async () => {
    const info = await probeModel(tinyShapesLlm);
    expect(info.architecture).toBe('llama');
    expect(info.nEmbd).toBe(128);
    expect(info.nLayer).toBe(3);
    expect(info.nVocab).toBe(448);
    expect(info.nCtxTrain).toBe(256);
    expect(info.nParams).toBe(754_560);
    expect(info.tokenBos).toBe(1);
    expect(info.tokenEos).toBe(4);
    expect(info.chatTemplate).toContain('<|im_start|>');
    expect(info.vocabOnly).toBe(false);
  });

  it('loads only the vocabulary when asked', async () => {
    const info = await probeModel(tinyShapesLlm, { vocabOnly: true });
    expect(info.vocabOnly).toBe(true);
    expect(info.nVocab).toBe(448);
  });

  it('a missing file is MM_FILE_NOT_FOUND', async () => {
    await expect(probeModel('/nonexistent/model.gguf')).rejects.toMatchObject({
      code: 'MM_FILE_NOT_FOUND',
    });
  });

  it('an mmproj is not a text model: MM_MODEL_LOAD naming the architecture', async () => {
    const err = await probeModel(tinyShapesMmproj).catch((e) => e);
    expect(err.code).toBe('MM_MODEL_LOAD');
    expect(err.message).toContain('clip');
  });

  it('loads the generated tiny llama (@mm/testing) in llama.cpp', async () => {
    const path = await tinyLlamaFixture({ seed: 1 });
    const info = await probeModel(path);
    expect(info.architecture).toBe('llama');
    expect(info.nEmbd).toBe(64);
    expect(info.nLayer).toBe(2);
    expect(info.nVocab).toBe(395);
    expect(info.chatTemplate).toContain('<|im_start|>');
  });
});

describe('probeModel abort cases', () => {
  it('already aborted: rejects with signal.reason before any native work', async () => {
    const reason = new Error('stop');
    await expect(probeModel(tinyShapesLlm, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
  });

  it('aborted mid-flight: rejects with signal.reason', async () => {
    const c = new AbortController();
    const p = probeModel(tinyShapesLlm, { signal: c.signal });
    c.abort(new Error('cancelled'));
    await expect(p).rejects.toThrow('cancelled');
  });

  it('never aborted: resolves', async () => {
    const c = new AbortController();
    await expect(probeModel(tinyShapesLlm, { signal: c.signal })).resolves.toMatchObject({
      nEmbd: 128,
    });
  });

  it('an invalid signal is a TypeError', async () => {
    await expect(probeModel(tinyShapesLlm, { signal: {} as AbortSignal })).rejects.toBeInstanceOf(
      TypeError,
    );
  });
});
