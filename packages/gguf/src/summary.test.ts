import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MmGgufFormatError } from './errors.js';
import { readGguf, readGgufFromBuffer } from './reader.js';
import { summarizeGguf } from './summary.js';
import { gv } from './types.js';
import { ggufToBuffer } from './writer.js';

// The tiny-shapes model bundled in the repository (@mm/testing depends on this package, so the
// path is spelled out here).
const tinyShapes = join(import.meta.dirname, '../../../apps/demo/models/tiny-shapes');
const llmPath = join(tinyShapes, 'tiny-shapes-llm.gguf');
const mmprojPath = join(tinyShapes, 'mmproj-tiny-shapes.gguf');

describe('summarizeGguf on tiny-shapes', () => {
  it('summarizes the text model', async () => {
    const s = summarizeGguf(await readGguf(llmPath));
    expect(s).toMatchObject({
      version: 3,
      architecture: 'llama',
      name: 'tiny-shapes-llm',
      fileType: 0,
      fileTypeName: 'ALL_F32',
      parameterCount: 754_560,
      tensorCount: 30,
      tensorBytes: 754_560 * 4,
      kind: 'text',
      mmproj: null,
      types: [{ type: 'F32', tensors: 30, elements: 754_560, bytes: 754_560 * 4 }],
      text: {
        contextLength: 256,
        embeddingLength: 128,
        blockCount: 3,
        feedForwardLength: 384,
        headCount: 4,
        headCountKv: 4,
        vocabSize: 448,
        tokenizerModel: 'llama',
        hasChatTemplate: true,
      },
    });
  });

  it('summarizes the mmproj', async () => {
    const s = summarizeGguf(await readGguf(mmprojPath));
    expect(s.kind).toBe('mmproj');
    expect(s.architecture).toBe('clip');
    expect(s.text).toBeNull();
    expect(s.parameterCount).toBe(357_600 + 28_928);
    expect(s.mmproj).toEqual({
      hasVisionEncoder: true,
      hasAudioEncoder: false,
      projectorType: 'mlp',
      visionProjectorType: null,
      audioProjectorType: null,
      imageSize: 48,
      patchSize: 8,
      visionEmbeddingLength: 96,
      visionBlockCount: 3,
      visionHeadCount: 3,
      visionFeedForwardLength: 384,
      projectionDim: 128,
      audioEmbeddingLength: null,
      audioBlockCount: null,
    });
  });
});

describe('summarizeGguf', () => {
  it('infers encoders from tensor names and per-modality projector types', () => {
    const f = new Float32Array(4);
    const file = readGgufFromBuffer(
      ggufToBuffer({
        metadata: {
          'general.architecture': gv.string('clip'),
          'clip.audio.projector_type': gv.string('ultravox'),
          'clip.audio.projection_dim': gv.uint32(64),
        },
        tensors: [
          { name: 'a.conv1d.1.weight', type: 'F32', shape: [4], data: f },
          { name: 'mm.a.mlp.1.weight', type: 'F16', shape: [4], data: f },
        ],
      }),
    );
    const s = summarizeGguf(file);
    expect(s.mmproj).toMatchObject({
      hasVisionEncoder: false,
      hasAudioEncoder: true,
      projectorType: 'ultravox',
      audioProjectorType: 'ultravox',
      projectionDim: 64,
    });
    expect(s.types.map((t) => [t.type, t.tensors, t.bytes])).toEqual([
      ['F32', 1, 16],
      ['F16', 1, 8],
    ]);
  });

  it('reports per-layer head counts as their maximum and falls back to vocab_size', () => {
    const s = summarizeGguf(
      readGgufFromBuffer(
        ggufToBuffer({
          metadata: {
            'general.architecture': gv.string('openelm'),
            'openelm.block_count': gv.uint32(2),
            'openelm.attention.head_count': gv.array('int32', new Int32Array([4, 8])),
            'openelm.vocab_size': gv.uint32(99),
          },
        }),
      ),
    );
    expect(s.kind).toBe('text');
    expect(s.text).toMatchObject({
      headCount: 8,
      vocabSize: 99,
      hasChatTemplate: false,
      contextLength: null,
    });
  });

  it('throws a format error for a key of the wrong type', () => {
    const file = readGgufFromBuffer(
      ggufToBuffer({ metadata: { 'general.architecture': gv.uint32(1) } }),
    );
    expect(() => summarizeGguf(file)).toThrow(MmGgufFormatError);
  });
});
