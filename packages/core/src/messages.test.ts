import { describe, expect, it } from 'vitest';
import { EmbeddingCache, pixelKey } from './image-cache.js';
import { flattenMessages, MEDIA_MARKER, parseDataUrl } from './messages.js';

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
