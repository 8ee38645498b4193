import { describe, expect, it } from 'vitest';
import { audioKey, EmbeddingCache, pixelKey } from './image-cache.js';
import {
  flattenMessages,
  inputAudioUrl,
  isBase64,
  MEDIA_MARKER,
  parseDataUrl,
} from './messages.js';

describe('flattenMessages', () => {
  it('joins text parts with a newline and puts the marker in with no separator', () => {
    const { messages, media } = flattenMessages([
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'image', image: 'a.png' },
          { type: 'text', text: 'What color' },
          { type: 'text', text: 'is it?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
          { type: 'text', text: 'And this?' },
        ],
      },
    ]);
    expect(messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(messages[1]?.content).toBe(`${MEDIA_MARKER}What color\nis it?${MEDIA_MARKER}And this?`);
    expect(media.map((i) => i.input)).toEqual(['a.png', 'data:image/png;base64,AAAA']);
    expect(media.map((i) => i.modality)).toEqual(['image', 'image']);
  });

  it('takes audio parts and OpenAI input_audio parts, in order with the pictures', () => {
    const wav = Buffer.from('RIFF....WAVE').toString('base64');
    const { messages, media } = flattenMessages([
      {
        role: 'user',
        content: [
          { type: 'image', image: 'a.png' },
          { type: 'audio', audio: 'b.wav' },
          { type: 'text', text: 'And' },
          { type: 'input_audio', input_audio: { data: wav, format: 'wav' } },
          { type: 'input_audio', input_audio: { data: wav, format: 'mp3' } },
          { type: 'input_audio', input_audio: { data: wav, format: 'flac' } },
        ],
      },
    ]);
    expect(messages[0]?.content).toBe(
      `${MEDIA_MARKER}${MEDIA_MARKER}And${MEDIA_MARKER}${MEDIA_MARKER}${MEDIA_MARKER}`,
    );
    expect(media.map((m) => m.modality)).toEqual(['image', 'audio', 'audio', 'audio', 'audio']);
    expect(media.slice(2).map((m) => m.input)).toEqual([
      `data:audio/wav;base64,${wav}`,
      `data:audio/mpeg;base64,${wav}`,
      `data:audio/flac;base64,${wav}`,
    ]);
  });

  it('refuses input_audio with a bad format or base64 (MM_INVALID_ARGUMENT, naming the field)', () => {
    const bad: unknown[] = [
      { data: 'AAAA', format: 'ogg' },
      { data: 'AAAA' },
      { data: 'AA', format: 'wav' },
      { data: 'A$AA', format: 'wav' },
      { data: '', format: 'wav' },
      { data: 7, format: 'wav' },
      null,
    ];
    for (const b of bad) {
      expect(() => inputAudioUrl(b, 'messages[0].content[0]')).toThrow(
        expect.objectContaining({
          code: 'MM_INVALID_ARGUMENT',
          message: expect.stringContaining('messages[0].content[0].input_audio'),
        }),
      );
    }
    // whitespace in the base64 is ignored
    expect(inputAudioUrl({ data: 'AA\nAA', format: 'wav' })).toBe('data:audio/wav;base64,AAAA');
  });

  it('rejects bad shapes and literal markers', () => {
    expect(() => flattenMessages([])).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
    expect(() =>
      flattenMessages([{ role: 'user', content: [{ type: 'video' } as never] }]),
    ).toThrow(expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }));
    expect(() => flattenMessages([{ role: 'user', content: `x${MEDIA_MARKER}` }])).toThrow(
      expect.objectContaining({ code: 'MM_INVALID_ARGUMENT' }),
    );
  });
});

const chunk = (n: number) => ({
  chunks: [{ rows: new Float32Array(n), nTokens: 1, nx: 1, ny: 1, causal: true }],
  between: [],
});

describe('isBase64', () => {
  it('takes standard padded base64 and nothing else', () => {
    for (const ok of [
      '',
      'QQ==',
      'QUI=',
      'QUJD',
      'ab+/09AZ',
      Buffer.from('any bytes ✓').toString('base64'),
    ])
      expect(isBase64(ok), ok).toBe(true);
    for (const bad of [
      'Q',
      'QQ=',
      'Q===',
      'QQ=A',
      'Q=QA',
      '=QQA',
      'QU-_',
      'QU\nJD',
      'QUJ\u0141',
      'QUJD====',
      'QU JD',
    ])
      expect(isBase64(bad), JSON.stringify(bad)).toBe(false);
  });
});

describe('parseDataUrl', () => {
  it('splits a data: URL into media type, encoding and payload; anything else is undefined', () => {
    expect(parseDataUrl('data:image/png;base64,AAAA')).toEqual({
      mediaType: 'image/png',
      base64: true,
      payload: 'AAAA',
    });
    expect(parseDataUrl('data:,hello')).toEqual({ mediaType: '', base64: false, payload: 'hello' });
    expect(parseDataUrl('data:image/png;base64,')?.payload).toBe('');
    for (const url of ['image.png', 'https://x/a.png', 'data:image/png;base64', ' data:,x']) {
      expect(parseDataUrl(url)).toBeUndefined();
    }
  });
});

describe('EmbeddingCache', () => {
  it('keys by pixels and evicts the least recently used beyond its byte bound', () => {
    const px = new Uint8Array(12).fill(7);
    expect(pixelKey(2, 2, px)).toBe(pixelKey(2, 2, Uint8Array.from(px)));
    expect(pixelKey(2, 2, px)).not.toBe(pixelKey(4, 1, px));
    const c = new EmbeddingCache(3 * 16);
    c.set('a', chunk(4));
    c.set('b', chunk(4));
    c.set('c', chunk(4));
    expect(c.get('a')).toBeDefined(); // a is now the most recent
    c.set('d', chunk(4));
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
    expect(c.bytes).toBe(48);
    expect(c.size).toBe(3);
    c.set('huge', chunk(100));
    expect(c.get('huge')).toBeUndefined();
  });
});

describe('audioKey', () => {
  it('depends on the samples and the rate, not on the array that holds them', () => {
    const a = new Float32Array([0.1, -0.2, 0.3]);
    const inBigger = new Float32Array(8);
    inBigger.set(a, 2);
    expect(audioKey(16000, inBigger.subarray(2, 5))).toBe(audioKey(16000, a));
    expect(audioKey(24000, a)).not.toBe(audioKey(16000, a));
    expect(audioKey(16000, new Float32Array([0.1, -0.2, 0.30001]))).not.toBe(audioKey(16000, a));
    // never equal to a picture's key of the same bytes
    const bytes = new Uint8Array(a.buffer);
    expect(pixelKey(1, 4, bytes)).not.toBe(audioKey(16000, a));
  });
});
