import { describe, expect, it } from 'vitest';
import { TextStream } from './text-stream.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('TextStream', () => {
  it('joins a multi-byte character split across tokens', () => {
    const s = new TextStream([]);
    const euro = bytes('€'); // e2 82 ac
    expect(s.push(euro.subarray(0, 1))).toBe('');
    expect(s.push(euro.subarray(1, 2))).toBe('');
    expect(s.push(euro.subarray(2))).toBe('€');
    expect(s.push(bytes(' ok'))).toBe(' ok');
    expect(s.end()).toBe('');
    expect(s.text).toBe('€ ok');
  });

  it('flushes an incomplete sequence at the end as U+FFFD', () => {
    const s = new TextStream([]);
    s.push(bytes('a'));
    s.push(new Uint8Array([0xe2, 0x82]));
    expect(s.end()).toBe('\uFFFD');
  });

  it('holds back a possible stop prefix and cuts at the stop', () => {
    const s = new TextStream(['STOP']);
    expect(s.push(bytes('hello S'))).toBe('hello ');
    expect(s.push(bytes('T'))).toBe('');
    expect(s.push(bytes('ay'))).toBe('STay');
    expect(s.push(bytes(' ST'))).toBe(' ');
    expect(s.push(bytes('OP and more'))).toBe('');
    expect(s.done).toBe(true);
    expect(s.text).toBe('hello STay ');
    expect(s.push(bytes('x'))).toBe('');
  });

  it('releases held text at the end when no stop came', () => {
    const s = new TextStream(['</s>']);
    expect(s.push(bytes('a <'))).toBe('a ');
    expect(s.end()).toBe('<');
    expect(s.done).toBe(false);
  });

  it('finds the earliest of several stops, also inside one token', () => {
    const s = new TextStream(['bb', 'x']);
    expect(s.push(bytes('aaxbb'))).toBe('aa');
    expect(s.done).toBe(true);
  });
});
